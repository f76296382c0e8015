import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { type Database, open, type RootDatabase } from 'lmdb'
import { type ControlStore, checkTable, pack, type Table, unpack } from './control-store.ts'

/**
 * The control store in a directory, on LMDB (through `lmdb`, from msgpackr's author; its binary comes from the npm
 * registry): the default (`shoal start --store DIR`, `.shoal/` unless told). Crash-safe — a write acknowledged is on
 * disk; `kill -9` loses nothing acknowledged — and one process at a time (a second coordinator on the same
 * directory would share it unsafely: use Redis for a standby).
 */
export class LmdbStore implements ControlStore {
  readonly description: string
  private readonly root: RootDatabase<Uint8Array, string>
  private readonly tables = new Map<Table, Database<Uint8Array, string>>()
  private readonly counters: Database<number, string>

  constructor(dir: string) {
    const path = resolve(dir)
    mkdirSync(path, { recursive: true })
    this.description = `LMDB in ${path}`
    // Binary values (encoded by the store's one codec, as the other backends); keys are strings.
    this.root = open<Uint8Array, string>({ path, encoding: 'binary', maxDbs: 16 })
    this.counters = this.root.openDB<number, string>({ name: 'counters', encoding: 'ordered-binary' })
  }

  private table(t: Table): Database<Uint8Array, string> {
    checkTable(t)
    let db = this.tables.get(t)
    if (!db) this.tables.set(t, (db = this.root.openDB<Uint8Array, string>({ name: t, encoding: 'binary' })))
    return db
  }

  async put(table: Table, key: string, value: unknown): Promise<void> {
    const db = this.writable(table)
    await db.put(key, pack(value))
  }

  /**
   * A table to write to. After close() began, none: lmdb would queue the write and fail it on a closed environment
   * outside any promise (an uncaught exception that ends the process).
   */
  private writable(t: Table): Database<Uint8Array, string> {
    if (this.closing) throw new Error(`the control store (${this.description}) is closed`)
    return this.table(t)
  }

  async get<T>(table: Table, key: string): Promise<T | undefined> {
    const b = this.table(table).get(key)
    return b === undefined ? undefined : (unpack(b) as T)
  }

  async getAll<T>(table: Table): Promise<Map<string, T>> {
    const out = new Map<string, T>()
    for (const { key, value } of this.table(table).getRange()) out.set(key, unpack(value) as T)
    return out
  }

  async delete(table: Table, key: string): Promise<void> {
    const db = this.writable(table)
    await db.remove(key)
  }

  async increment(counter: string): Promise<number> {
    if (this.closing) throw new Error(`the control store (${this.description}) is closed`)
    // A write transaction runs alone: read, add, write cannot interleave with another increment.
    return this.counters.transaction(() => {
      const n = (this.counters.get(counter) ?? 0) + 1
      void this.counters.put(counter, n)
      return n
    })
  }

  private closing: Promise<void> | undefined

  /** Waits for pending writes, then closes (once: a second close waits for the first). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.root.flushed
      await this.root.close()
    })()
    return this.closing
  }
}
