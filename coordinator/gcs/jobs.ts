import { type JobId, jobIdFromNumber, randomHex } from '../../sdk/ids.ts'
import type { JobRow } from '../../sdk/state.ts'

/** The job table: one job per driver `connect()`. Job ids count up from 1 like Ray's (`01000000`). */
export class JobTable {
  private jobs = new Map<JobId, JobRow>()
  private next = 1

  /** A job in `namespace`, or, if none is given, in an anonymous namespace of its own (as Ray does). */
  create(namespace: string | undefined): JobRow {
    const row: JobRow = {
      jobId: jobIdFromNumber(this.next++),
      state: 'RUNNING',
      startTime: Date.now(),
      endTime: null,
      namespace: namespace ?? `anonymous-${randomHex(16)}`,
    }
    this.jobs.set(row.jobId as JobId, row)
    return row
  }

  get(id: string): JobRow | undefined {
    return this.jobs.get(id as JobId)
  }

  finish(id: string, state: 'FINISHED' | 'FAILED' = 'FINISHED'): void {
    const row = this.jobs.get(id as JobId)
    if (row?.state !== 'RUNNING') return
    row.state = state
    row.endTime = Date.now()
  }

  list(): JobRow[] {
    return [...this.jobs.values()]
  }
}
