/**
 * The control store: what the coordinator keeps across a restart (Ray's GCS storage). One interface, three backends —
 * memory (tests, throwaway clusters), an embedded LMDB database in a directory (the default), Redis (high
 * availability) — and one contract suite (store.contract.ts) that every backend passes.
 *
 * It holds what Ray's GCS persists — nodes, jobs, actors and named actors, functions, leases, config — never per-task
 * hot state (that lives with owners). Values are anything msgpackr encodes; each put stores a copy.
 */

import { Packr } from 'msgpackr'

/**
 * How every backend encodes values: msgpackr in structured-clone mode (Maps, Sets, typed arrays, Dates and cycles
 * round-trip), each value self-describing (no shared structures to lose between processes).
 */
const codec = new Packr({ structuredClone: true })
export const pack = (value: unknown): Uint8Array => codec.pack(value)
export const unpack = (bytes: Uint8Array): unknown => codec.unpack(bytes)

/** The tables. A key is unique within its table. */
export const TABLES = ['nodes', 'jobs', 'actors', 'named-actors', 'functions', 'leases', 'config'] as const
export type Table = (typeof TABLES)[number]

export interface ControlStore {
  /** Where it keeps things, for the start-up line ("LMDB in /srv/.shoal", "redis://10.0.0.2:6379/0", "memory"). */
  readonly description: string
  /** Stores a copy of `value` under `key`. Writes of one store complete in the order they were made. */
  put(table: Table, key: string, value: unknown): Promise<void>
  get<T = unknown>(table: Table, key: string): Promise<T | undefined>
  /** Every row of a table (what a restarted coordinator loads). */
  getAll<T = unknown>(table: Table): Promise<Map<string, T>>
  /** Deletes the key, if there. */
  delete(table: Table, key: string): Promise<void>
  /** The next number of a counter that never repeats, across restarts too (job numbers). Starts at 1. */
  increment(counter: string): Promise<number>
  /** Waits for pending writes, then lets go of the backend. */
  close(): Promise<void>
}

/** Whether `t` names a table (a backend refuses others: a typo is not a new table). */
export function checkTable(t: string): asserts t is Table {
  if (!(TABLES as readonly string[]).includes(t)) throw new Error(`no control-store table '${t}' (tables: ${TABLES.join(', ')})`)
}
