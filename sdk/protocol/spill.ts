/**
 * The node page ↔ its spill worker (comlink calls): objects moved from IndexedDB to OPFS files and back. OPFS sync
 * access handles exist only in workers. The worker (`worker-page/object-store/spill.worker.ts`) implements
 * `SpillApi` (checked with `satisfies`); the plasma store on the page calls it.
 */
export interface SpillApi {
  /** Set-up, once: whose store (the node id names the IndexedDB database and the OPFS directory). */
  init(nodeId: string): void
  /**
   * Writes each object to its own file, then drops it from IndexedDB. Hot objects come with their bytes (from the
   * page's memory); cold ones are read from IndexedDB. Returns what was spilled, the bytes written and the time taken.
   */
  spill(items: { id: string; bytes?: Uint8Array | undefined }[]): Promise<{ spilled: string[]; bytes: number; ms: number }>
  /** Brings a spilled object back into IndexedDB; its size. */
  restore(id: string): Promise<number>
  /** Deletes spilled objects' files. */
  remove(ids: string[]): Promise<void>
  /** Bench baseline: bare IndexedDB read + OPFS write of these objects, no bookkeeping (ms). */
  bareReadWrite(ids: string[]): Promise<number>
  /** Bench baseline: `count` × `size` bytes already in memory written to OPFS files (ms). */
  bareWrite(count: number, size: number): Promise<number>
}
