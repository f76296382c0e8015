/** Looks up an element that index.html must contain; a missing one is a page bug, so fail loudly at startup. */
export function byId<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id)
  if (!(el instanceof type)) throw new Error(`dashboard: #${id} is missing or not a ${type.name}`)
  return el
}

/** The parts every section of the page has: a table, a count in its heading, an empty note and an error line. */
export interface SectionParts {
  section: HTMLElement
  table: HTMLTableElement
  count: HTMLElement
  empty: HTMLElement
  error: HTMLElement
}

/** Finds `#{name}-section`, `#{name}-table`, `#{name}-count`, `#{name}-empty` and `#{name}-error`. */
export function sectionParts(name: string): SectionParts {
  return {
    section: byId(`${name}-section`, HTMLElement),
    table: byId(`${name}-table`, HTMLTableElement),
    count: byId(`${name}-count`, HTMLElement),
    empty: byId(`${name}-empty`, HTMLElement),
    error: byId(`${name}-error`, HTMLElement),
  }
}

/** Shows a section's request error, or clears it when `message` is null. */
export function showError(parts: SectionParts, message: string | null): void {
  parts.error.hidden = message === null
  parts.error.textContent = message ?? ''
}

/** Updates the heading count and the empty note after the rows changed. */
export function showCount(parts: SectionParts, shown: number, label?: string): void {
  parts.count.textContent = label ?? String(shown)
  parts.empty.hidden = shown > 0
}
