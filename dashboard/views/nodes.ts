import type { NodeRow } from '../../sdk/state-api.ts'
import { type SectionParts, sectionParts, showCount, showError } from './dom.ts'
import { formatBytes, formatDuration, formatNumber, formatResources, shortId } from './format.ts'
import { type Column, KeyedTable } from './table.ts'

export class NodesView {
  private readonly parts: SectionParts
  private readonly table: KeyedTable<NodeRow>
  private now = Date.now()

  constructor() {
    this.parts = sectionParts('nodes')
    const columns: Column<NodeRow>[] = [
      {
        id: 'node',
        header: 'Node',
        className: 'mono',
        cell: (n) => ({ text: n.name ? `${shortId(n.nodeId)} ${n.name}` : shortId(n.nodeId), title: n.nodeId }),
      },
      // A donor's pause or leave (the /node page) keeps the node ALIVE: said beside its state.
      {
        id: 'state',
        header: 'State',
        cell: (n) =>
          n.state === 'ALIVE' && (n.draining || n.paused)
            ? {
                text: `ALIVE · ${n.draining ? 'leaving' : 'paused'}`,
                badge: 'yellow' as const,
                title: n.draining
                  ? 'its donor is leaving: no new work; it goes once its work and objects are handed over'
                  : 'paused by its donor: what runs there finishes, no new work is placed there',
              }
            : { text: n.state, badge: true },
      },
      // A quarantined node returned a minority result for a verified task: it stays listed, and gets no more work.
      {
        id: 'trust',
        header: 'Trust',
        cell: (n) =>
          n.quarantined
            ? { text: 'quarantined', badge: 'red', title: `${n.trust} node, quarantined: it ${n.quarantined}` }
            : { text: n.trust, ...(n.trust === 'volunteer' && { badge: 'yellow' as const }) },
      },
      {
        id: 'cpu',
        header: 'CPU used / total',
        cell: (n) => {
          const total = n.resources.CPU ?? 0
          const used = total - (n.availableResources.CPU ?? total)
          return {
            text: `${formatNumber(used)} / ${formatNumber(total)}`,
            bar: total > 0 ? used / total : 0,
            title: `total ${formatResources(n.resources)}\navailable ${formatResources(n.availableResources)}`,
          }
        },
      },
      { id: 'running', header: 'Running tasks', className: 'num', cell: (n) => ({ text: String(n.runningTasks) }) },
      { id: 'workers', header: 'Workers', className: 'num', cell: (n) => ({ text: String(n.workers) }) },
      {
        id: 'store',
        header: 'Object store used / total',
        cell: (n) => ({
          text: `${formatBytes(n.objectStoreUsed)} / ${formatBytes(n.objectStoreMemory)}`,
          bar: n.objectStoreMemory > 0 ? n.objectStoreUsed / n.objectStoreMemory : 0,
        }),
      },
      { id: 'uptime', header: 'Uptime / death reason', cell: (n) => this.lifeCell(n) },
    ]
    this.table = new KeyedTable(this.parts.table, columns, (n) => n.nodeId, 'data-node-id')
  }

  render(rows: readonly NodeRow[]): void {
    this.now = Date.now()
    // Alive nodes first, oldest first within each group: the list stays put while nodes come and go.
    const sorted = [...rows].sort((a, b) => (a.state === b.state ? a.startTime - b.startTime : a.state === 'ALIVE' ? -1 : 1))
    this.table.update(sorted)
    const alive = rows.filter((n) => n.state === 'ALIVE').length
    showCount(this.parts, rows.length, rows.length === alive ? String(alive) : `${alive} alive, ${rows.length - alive} dead`)
    showError(this.parts, null)
  }

  fail(message: string): void {
    showError(this.parts, message)
  }

  private lifeCell(n: NodeRow) {
    if (n.state === 'ALIVE') return { text: `up ${formatDuration(this.now - n.startTime)}` }
    const lived = n.endTime != null ? ` after ${formatDuration(n.endTime - n.startTime)}` : ''
    const reason = n.deathReason ?? 'unknown reason'
    return { text: `${reason}${lived}`, title: reason, muted: true }
  }
}
