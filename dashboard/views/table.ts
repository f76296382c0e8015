import { type BadgeColor, stateColor } from './states.ts'

/** What one table cell shows. Every string ends up in `textContent` or an attribute, never in markup. */
export interface Cell {
  text: string
  /** Full text on hover, for truncated cells. */
  title?: string
  /** Renders `text` as a coloured state badge. */
  badge?: BadgeColor | true
  /** Draws a usage bar filled to this fraction (0..1) in front of `text`. */
  bar?: number
  muted?: boolean
}

export interface Column<T> {
  id: string
  header: string
  cell: (row: T) => Cell
  /** Extra class on the column's cells: `mono` for ids, `num` for right-aligned numbers. */
  className?: string
}

interface RowEntry {
  tr: HTMLTableRowElement
  /** Last rendered signature per column, so unchanged cells are not touched. */
  sigs: string[]
}

/**
 * A table updated in place, keyed by row id: polling every second must not rebuild hundreds of rows
 * (that would reset text selection and hover titles under the user's cursor).
 */
export class KeyedTable<T> {
  private readonly tbody: HTMLTableSectionElement
  private readonly rows = new Map<string, RowEntry>()

  constructor(
    table: HTMLTableElement,
    private readonly columns: readonly Column<T>[],
    private readonly key: (row: T) => string,
    private readonly rowAttr?: string,
  ) {
    table.replaceChildren()
    const thead = table.createTHead()
    const headRow = thead.insertRow()
    for (const col of columns) {
      const th = document.createElement('th')
      th.textContent = col.header
      th.dataset.col = col.id
      if (col.className) th.className = col.className
      headRow.append(th)
    }
    this.tbody = table.createTBody()
  }

  /** Shows exactly `data`, in its order. */
  update(data: readonly T[]): void {
    const seen = new Set<string>()
    data.forEach((row, index) => {
      const id = this.key(row)
      seen.add(id)
      let entry = this.rows.get(id)
      if (!entry) {
        entry = this.createRow(id)
        this.rows.set(id, entry)
      }
      this.fill(entry, row)
      const at = this.tbody.children[index]
      if (at !== entry.tr) this.tbody.insertBefore(entry.tr, at ?? null)
    })
    for (const [id, entry] of this.rows) {
      if (!seen.has(id)) {
        entry.tr.remove()
        this.rows.delete(id)
      }
    }
  }

  private createRow(id: string): RowEntry {
    const tr = document.createElement('tr')
    if (this.rowAttr) tr.setAttribute(this.rowAttr, id)
    for (const col of this.columns) {
      const td = document.createElement('td')
      td.dataset.col = col.id
      if (col.className) td.className = col.className
      tr.append(td)
    }
    return { tr, sigs: this.columns.map(() => '') }
  }

  private fill(entry: RowEntry, row: T): void {
    this.columns.forEach((col, i) => {
      const cell = col.cell(row)
      const sig = `${cell.text}\u0000${cell.title ?? ''}\u0000${cell.badge ?? ''}\u0000${cell.bar ?? ''}\u0000${cell.muted ?? ''}`
      const td = entry.tr.cells[i]
      if (!td || entry.sigs[i] === sig) return
      entry.sigs[i] = sig
      renderCell(td, cell)
    })
  }
}

function renderCell(td: HTMLTableCellElement, cell: Cell): void {
  if (cell.title) td.title = cell.title
  else td.removeAttribute('title')
  td.classList.toggle('muted', cell.muted === true)
  if (cell.badge) {
    const span = document.createElement('span')
    const color = cell.badge === true ? stateColor(cell.text) : cell.badge
    span.className = `badge badge-${color}`
    span.textContent = cell.text
    td.replaceChildren(span)
  } else if (cell.bar !== undefined) {
    const bar = document.createElement('span')
    bar.className = 'bar'
    const fill = document.createElement('span')
    fill.className = 'bar-fill'
    const fraction = Math.min(1, Math.max(0, Number.isFinite(cell.bar) ? cell.bar : 0))
    fill.style.width = `${(fraction * 100).toFixed(1)}%`
    if (fraction >= 0.9) fill.classList.add('bar-high')
    bar.append(fill)
    const label = document.createElement('span')
    label.className = 'bar-label'
    label.textContent = cell.text
    td.replaceChildren(bar, label)
  } else {
    td.textContent = cell.text
  }
}
