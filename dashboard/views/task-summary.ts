import type { TaskSummary } from '../../sdk/state-api.ts'
import { byId, type SectionParts, sectionParts, showCount, showError } from './dom.ts'
import { formatResources, shortId } from './format.ts'
import { TASK_STATES } from './states.ts'
import { type Column, KeyedTable } from './table.ts'

type SummaryRow = TaskSummary['summary'][string]

const total = (r: SummaryRow) => Object.values(r.stateCounts).reduce<number>((sum, n) => sum + (n ?? 0), 0)

/** One row per function or actor class with how many of its tasks are in each state, and the infeasible ones. */
export class TaskSummaryView {
  private readonly parts: SectionParts
  private readonly table: KeyedTable<SummaryRow>
  private readonly warning: HTMLElement
  private readonly warningList: HTMLUListElement
  private warningSig = ''

  constructor() {
    this.parts = sectionParts('summary')
    this.warning = byId('infeasible', HTMLElement)
    this.warningList = byId('infeasible-list', HTMLUListElement)
    const stateColumns = TASK_STATES.map(
      (state): Column<SummaryRow> => ({
        id: state,
        header: state.replaceAll('_', ' ').toLowerCase(),
        className: 'num',
        cell: (r) => {
          const n = r.stateCounts[state] ?? 0
          return { text: String(n), muted: n === 0 }
        },
      }),
    )
    const columns: Column<SummaryRow>[] = [
      { id: 'name', header: 'Function / class', cell: (r) => ({ text: r.funcOrClassName }) },
      { id: 'type', header: 'Type', className: 'muted-col', cell: (r) => ({ text: r.type }) },
      ...stateColumns,
      { id: 'total', header: 'total', className: 'num strong', cell: (r) => ({ text: String(total(r)) }) },
    ]
    this.table = new KeyedTable(this.parts.table, columns, (r) => r.funcOrClassName, 'data-func')
  }

  render(data: TaskSummary): void {
    const rows = Object.values(data.summary).sort((a, b) => a.funcOrClassName.localeCompare(b.funcOrClassName))
    this.table.update(rows)
    // Bounded as in Ray: rows past the coordinator's limit, and events past an owner's or node's buffer.
    const dropped = [
      data.droppedRows ? `${data.droppedRows} rows dropped past the limit` : '',
      data.droppedEvents ? `${data.droppedEvents} events dropped before they were sent` : '',
    ].filter(Boolean)
    showCount(this.parts, rows.length, `${data.totalTasks} tasks${dropped.length ? ` (${dropped.join(' · ')})` : ''}`)
    this.renderInfeasible(data.infeasible)
    showError(this.parts, null)
  }

  fail(message: string): void {
    showError(this.parts, message)
  }

  private renderInfeasible(list: TaskSummary['infeasible']): void {
    const sig = list.map((t) => t.taskId).join()
    if (sig === this.warningSig) return
    this.warningSig = sig
    this.warning.hidden = list.length === 0
    this.warningList.replaceChildren(
      ...list.map((t) => {
        const li = document.createElement('li')
        const name = document.createElement('strong')
        name.textContent = t.name
        const id = document.createElement('span')
        id.className = 'mono muted'
        id.textContent = ` ${shortId(t.taskId)} `
        li.append(name, id, `waiting: no node can ever fit ${formatResources(t.requiredResources)}`)
        li.title = t.taskId
        return li
      }),
    )
  }
}
