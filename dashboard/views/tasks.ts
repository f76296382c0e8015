import type { TaskRow } from '../../sdk/state-api.ts'
import { byId, type SectionParts, sectionParts, showCount, showError } from './dom.ts'
import { formatDuration, formatResources, shortId, truncate } from './format.ts'
import { TASK_STATES } from './states.ts'
import { type Cell, type Column, KeyedTable } from './table.ts'

export const TASK_LIMIT = 200

/** The newest tasks (the server's order), filtered by state on the server and by name here. */
export class TasksView {
  private readonly parts: SectionParts
  private readonly table: KeyedTable<TaskRow>
  private readonly nameInput: HTMLInputElement
  private readonly stateSelect: HTMLSelectElement
  private rows: readonly TaskRow[] = []
  private now = Date.now()

  constructor(onQueryChange: () => void) {
    this.parts = sectionParts('tasks')
    this.nameInput = byId('task-name-filter', HTMLInputElement)
    this.stateSelect = byId('task-state-filter', HTMLSelectElement)
    for (const state of TASK_STATES) this.stateSelect.add(new Option(state, state))

    const columns: Column<TaskRow>[] = [
      { id: 'name', header: 'Name', cell: (t) => ({ text: t.name, title: `${t.funcOrClassName} · ${t.type}\n${t.taskId}` }) },
      { id: 'state', header: 'State', cell: stateCell },
      { id: 'node', header: 'Node', className: 'mono', cell: (t) => ({ text: shortId(t.nodeId), title: t.nodeId ?? '' }) },
      { id: 'worker', header: 'Worker', className: 'mono', cell: (t) => ({ text: shortId(t.workerId), title: t.workerId ?? '' }) },
      { id: 'job', header: 'Job', className: 'mono', cell: (t) => ({ text: t.jobId }) },
      { id: 'attempt', header: 'Attempt', className: 'num', cell: (t) => ({ text: String(t.attempt), muted: t.attempt === 0 }) },
      { id: 'duration', header: 'Duration', className: 'num', cell: (t) => this.durationCell(t) },
      { id: 'error', header: 'Error', className: 'error-col', cell: errorCell },
    ]
    this.table = new KeyedTable(this.parts.table, columns, (t) => t.taskId, 'data-task-id')

    this.nameInput.addEventListener('input', () => this.show())
    this.stateSelect.addEventListener('change', onQueryChange)
  }

  /** The request for the current state filter; `render` drops answers to an older one. */
  url(): string {
    const q = new URLSearchParams({ limit: String(TASK_LIMIT) })
    if (this.stateSelect.value) q.append('filter', `state=${this.stateSelect.value}`)
    return `/api/tasks?${q}`
  }

  render(url: string, rows: readonly TaskRow[]): void {
    if (url !== this.url()) return
    this.rows = rows
    this.show()
    showError(this.parts, null)
  }

  fail(message: string): void {
    showError(this.parts, message)
  }

  private show(): void {
    this.now = Date.now()
    const needle = this.nameInput.value.trim().toLowerCase()
    const shown = needle ? this.rows.filter((t) => t.name.toLowerCase().includes(needle)) : this.rows
    this.table.update(shown)
    const more = this.rows.length >= TASK_LIMIT ? ` (newest ${TASK_LIMIT})` : ''
    showCount(this.parts, shown.length, needle ? `${shown.length} of ${this.rows.length}${more}` : `${shown.length}${more}`)
    this.parts.empty.textContent = needle || this.stateSelect.value ? 'No tasks match the filter.' : 'No tasks yet.'
  }

  private durationCell(t: TaskRow): Cell {
    if (t.startTime == null) return { text: '—', muted: true }
    if (t.endTime != null) return { text: formatDuration(t.endTime - t.startTime) }
    return { text: formatDuration(this.now - t.startTime), title: 'still running' }
  }
}

function stateCell(t: TaskRow): Cell {
  const title = t.infeasible ? `infeasible: no node can ever fit ${formatResources(t.requiredResources)}` : undefined
  return title ? { text: t.state, badge: true, title } : { text: t.state, badge: true }
}

function errorCell(t: TaskRow): Cell {
  if (!t.errorType && !t.errorMessage) return { text: '' }
  const full = [t.errorType, t.errorMessage].filter(Boolean).join(': ')
  return { text: truncate(full, 90), title: full }
}
