import { ConnectionError } from '../../sdk/errors.ts'
import { type JobId, jobIdFromNumber, randomHex } from '../../sdk/ids.ts'
import type { JobRow } from '../../sdk/state-api.ts'
import type { ControlStore } from '../store/control-store.ts'

/** Job numbers are reserved from the control store this many at a time: a job starts without waiting for a write. */
export const JOB_NUMBER_BLOCK = 100

/**
 * The job table: one job per driver `connect()`. Job ids count up from 1 like Ray's (`01000000`). With a control
 * store, jobs are kept there and numbers never repeat across restarts (objects and actors on nodes carry their job's
 * id): they are reserved in blocks, the next block fetched while half of this one is left.
 */
export class JobTable {
  private jobs = new Map<JobId, JobRow>()
  private next = 1
  /** The first number past this block (without a store: no end). */
  private blockEnd = Number.POSITIVE_INFINITY
  private nextBlock: [number, number] | undefined
  private reserving = false

  constructor(
    private readonly store?: ControlStore,
    /** A write to the store failed (the coordinator logs it; the table in memory stays right). */
    private readonly storeFailed: (e: unknown) => void = () => {},
  ) {}

  /**
   * Loads the jobs a previous run kept, and reserves this run's first job numbers. A job that was running when the
   * coordinator went away has lost its driver's connection: it is marked FAILED (its end time is this start).
   */
  async restore(): Promise<void> {
    if (!this.store) return
    for (const [id, row] of await this.store.getAll<JobRow>('jobs')) {
      if (row.state === 'RUNNING') {
        row.state = 'FAILED'
        row.endTime = Date.now()
        this.persist(row)
      }
      this.jobs.set(id as JobId, row)
    }
    ;[this.next, this.blockEnd] = await this.reserveBlock()
  }

  private async reserveBlock(): Promise<[number, number]> {
    const b = await (this.store as ControlStore).increment('job-number-block')
    return [(b - 1) * JOB_NUMBER_BLOCK + 1, b * JOB_NUMBER_BLOCK + 1]
  }

  private takeNumber(): number {
    if (this.next >= this.blockEnd) {
      if (!this.nextBlock) throw new ConnectionError('the coordinator is reserving job ids in its control store: connect again in a moment')
      ;[this.next, this.blockEnd] = this.nextBlock
      this.nextBlock = undefined
    }
    const n = this.next++
    if (this.store && !this.nextBlock && !this.reserving && this.blockEnd - this.next < JOB_NUMBER_BLOCK / 2) {
      this.reserving = true
      this.reserveBlock()
        .then((b) => {
          this.nextBlock = b
        }, this.storeFailed)
        .finally(() => {
          this.reserving = false
        })
    }
    return n
  }

  /** A job in `namespace`, or, if none is given, in an anonymous namespace of its own (as Ray does). */
  create(namespace: string | undefined, tenant: string): JobRow {
    const row: JobRow = {
      jobId: jobIdFromNumber(this.takeNumber()),
      tenant,
      state: 'RUNNING',
      startTime: Date.now(),
      endTime: null,
      namespace: namespace ?? `anonymous-${randomHex(16)}`,
    }
    this.jobs.set(row.jobId as JobId, row)
    this.persist(row)
    return row
  }

  get(id: string): JobRow | undefined {
    return this.jobs.get(id as JobId)
  }

  /** The tenant of a job (of an id's job: tasks, objects and actors end with it); undefined for no such job. */
  tenantOf(jobId: string): string | undefined {
    return this.jobs.get(jobId as JobId)?.tenant
  }

  finish(id: string, state: 'FINISHED' | 'FAILED' = 'FINISHED'): void {
    const row = this.jobs.get(id as JobId)
    if (row?.state !== 'RUNNING') return
    row.state = state
    row.endTime = Date.now()
    this.persist(row)
  }

  list(): JobRow[] {
    return [...this.jobs.values()]
  }

  private persist(row: JobRow): void {
    this.store?.put('jobs', row.jobId, row).catch(this.storeFailed)
  }
}
