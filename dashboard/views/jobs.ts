import type { JobRow } from '../../sdk/state-api.ts'
import { type SectionParts, sectionParts, showCount, showError } from './dom.ts'
import { formatDuration, formatTime } from './format.ts'
import { type Column, KeyedTable } from './table.ts'

export class JobsView {
  private readonly parts: SectionParts
  private readonly table: KeyedTable<JobRow>
  private now = Date.now()

  constructor() {
    this.parts = sectionParts('jobs')
    const columns: Column<JobRow>[] = [
      { id: 'job', header: 'Job', className: 'mono', cell: (j) => ({ text: j.jobId }) },
      { id: 'state', header: 'State', cell: (j) => ({ text: j.state, badge: true }) },
      { id: 'namespace', header: 'Namespace', cell: (j) => ({ text: j.namespace }) },
      { id: 'start', header: 'Started', cell: (j) => ({ text: formatTime(j.startTime) }) },
      { id: 'end', header: 'Ended', cell: (j) => ({ text: formatTime(j.endTime), muted: j.endTime == null }) },
      {
        id: 'duration',
        header: 'Duration',
        className: 'num',
        cell: (j) => ({ text: formatDuration((j.endTime ?? this.now) - j.startTime) }),
      },
    ]
    this.table = new KeyedTable(this.parts.table, columns, (j) => j.jobId, 'data-job-id')
  }

  render(rows: readonly JobRow[]): void {
    this.now = Date.now()
    const running = rows.filter((j) => j.state === 'RUNNING').length
    const newestFirst = [...rows].sort((a, b) => b.startTime - a.startTime)
    this.table.update(newestFirst)
    showCount(this.parts, rows.length, running ? `${running} running of ${rows.length}` : String(rows.length))
    showError(this.parts, null)
  }

  fail(message: string): void {
    showError(this.parts, message)
  }
}
