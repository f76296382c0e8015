import { type ControlStore, checkTable, pack, type Table, unpack } from './control-store.ts'

/**
 * The control store in this process's memory: for tests and throwaway clusters (`--store memory`). Values are kept
 * encoded, as the other backends keep them, so a caller's later change to an object never changes what was stored.
 */
export class MemoryStore implements ControlStore {
  readonly description = 'memory (nothing survives a restart)'
  private tables = new Map<Table, Map<string, Uint8Array>>()
  private counters = new Map<string, number>()

  private closed = false

  private table(t: Table): Map<string, Uint8Array> {
    if (this.closed) throw new Error('the control store (memory) is closed')
    checkTable(t)
    let m = this.tables.get(t)
    if (!m) this.tables.set(t, (m = new Map()))
    return m
  }

  async put(table: Table, key: string, value: unknown): Promise<void> {
    this.table(table).set(key, pack(value))
  }

  async get<T>(table: Table, key: string): Promise<T | undefined> {
    const b = this.table(table).get(key)
    return b === undefined ? undefined : (unpack(b) as T)
  }

  async getAll<T>(table: Table): Promise<Map<string, T>> {
    return new Map([...this.table(table)].map(([k, b]) => [k, unpack(b) as T]))
  }

  async delete(table: Table, key: string): Promise<void> {
    this.table(table).delete(key)
  }

  async increment(counter: string): Promise<number> {
    if (this.closed) throw new Error('the control store (memory) is closed')
    const n = (this.counters.get(counter) ?? 0) + 1
    this.counters.set(counter, n)
    return n
  }

  async close(): Promise<void> {
    this.closed = true
  }
}
