import type { ActorRow } from '../../sdk/state-api.ts'
import { type SectionParts, sectionParts, showCount, showError } from './dom.ts'
import { shortId, truncate } from './format.ts'
import { type Column, KeyedTable } from './table.ts'

/** Actors, in the coordinator's order; the whole section stays hidden until the cluster has one. */
export class ActorsView {
  private readonly parts: SectionParts
  private readonly table: KeyedTable<ActorRow>

  constructor() {
    this.parts = sectionParts('actors')
    const columns: Column<ActorRow>[] = [
      { id: 'actor', header: 'Actor', className: 'mono', cell: (a) => ({ text: shortId(a.actorId), title: a.actorId }) },
      { id: 'class', header: 'Class', cell: (a) => ({ text: a.className }) },
      { id: 'name', header: 'Name', cell: (a) => ({ text: a.name ?? '—', muted: !a.name }) },
      { id: 'namespace', header: 'Namespace', cell: (a) => ({ text: a.namespace }) },
      { id: 'state', header: 'State', cell: (a) => ({ text: a.state, badge: true }) },
      { id: 'node', header: 'Node', className: 'mono', cell: (a) => ({ text: shortId(a.nodeId), title: a.nodeId ?? '' }) },
      { id: 'job', header: 'Job', className: 'mono', cell: (a) => ({ text: a.jobId }) },
      { id: 'restarts', header: 'Restarts', className: 'num', cell: (a) => ({ text: String(a.restarts) }) },
      { id: 'detached', header: 'Detached', cell: (a) => ({ text: a.detached ? 'yes' : 'no', muted: !a.detached }) },
      {
        id: 'death',
        header: 'Death cause',
        cell: (a) => (a.deathCause ? { text: truncate(a.deathCause, 80), title: a.deathCause } : { text: '' }),
      },
    ]
    this.table = new KeyedTable(this.parts.table, columns, (a) => a.actorId, 'data-actor-id')
  }

  render(rows: readonly ActorRow[]): void {
    this.table.update(rows)
    this.parts.section.hidden = rows.length === 0
    const alive = rows.filter((a) => a.state === 'ALIVE').length
    showCount(this.parts, rows.length, `${alive} alive of ${rows.length}`)
    showError(this.parts, null)
  }

  fail(message: string): void {
    // An error is worth showing even when there were no actors to show.
    this.parts.section.hidden = false
    showError(this.parts, message)
  }
}
