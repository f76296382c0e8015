import * as Comlink from 'comlink'
import type { IDBPDatabase } from 'idb'
import { ObjectStoreFullError } from '../../sdk/errors.ts'
import type { SpillApi } from '../../sdk/protocol/index.ts'
import { clearPlasma, deleteNodeStorage, deleteObject, openPlasma, readObject, writeObject } from './plasma-db.ts'

/** Ray spills once the store is this full… */
const SPILL_AT = 0.8
/** …down to this, so one put does not spill again at once. */
const SPILL_TO = 0.6
const MiB = 1024 * 1024

interface Entry {
  size: number
  lastUsed: number
  /** Tasks running now that read it: never spilled or deleted under them. */
  pins: number
  spilled: boolean
}

/**
 * The node's plasma store (page side): IndexedDB holds the objects, this index holds their sizes, use and pins.
 * Past 80% of capacity the least recently used unpinned objects spill to OPFS (through the spill worker) and are
 * restored when read. Workers write task results straight into IndexedDB and tell the index (`noteStored`).
 */
export class PlasmaStore {
  private index = new Map<string, Entry>()
  private spiller: Comlink.Remote<SpillApi>
  private readonly spillWorker: Worker
  private spilling: Promise<void> | undefined
  /** Restores in progress: concurrent readers of one spilled object share one restore. */
  private restoring = new Map<string, Promise<void>>()
  /**
   * Hot objects' bytes kept in page memory (least recently used first), within the store's capacity: reads and
   * spills of them skip IndexedDB (IndexedDB is the store every worker of the node shares; the page's memory is
   * the fast copy).
   */
  private hot = new Map<string, Uint8Array>()
  private hotBytes = 0
  used = 0
  spilledBytes = 0
  onSpilled: (ids: string[], spilled: boolean, line?: string) => void = () => {}

  private constructor(
    private readonly db: IDBPDatabase,
    readonly nodeId: string,
    readonly capacity: number,
  ) {
    const worker = new Worker(new URL('./spill.worker.ts', import.meta.url), { type: 'module', name: 'shoal-spill' })
    this.spillWorker = worker
    this.spiller = Comlink.wrap<SpillApi>(worker)
    void this.spiller.init(nodeId)
  }

  static async open(nodeId: string, capacity: number): Promise<PlasmaStore> {
    const db = await openPlasma(nodeId)
    await clearPlasma(db)
    return new PlasmaStore(db, nodeId, capacity)
  }

  /**
   * Deletes everything this store holds in this browser (IndexedDB and OPFS) and stops its spill worker, whose sync
   * access handles would keep the OPFS files. Only for a node that left: the store cannot be used after.
   */
  async destroy(): Promise<void> {
    this.spillWorker.terminate()
    this.index.clear()
    this.hot.clear()
    this.hotBytes = 0
    this.used = 0
    this.spilledBytes = 0
    await deleteNodeStorage(this.nodeId)
  }

  has(id: string): boolean {
    return this.index.has(id)
  }

  get objectCount(): number {
    return this.index.size
  }

  /** Stores bytes that arrived on the page (a peer pull, a placement by the coordinator). */
  async put(id: string, bytes: Uint8Array): Promise<void> {
    if (this.index.has(id)) return
    await this.reserve(bytes.byteLength)
    await writeObject(this.db, id, bytes)
    this.noteStored(id, bytes.byteLength, bytes)
  }

  /**
   * Makes room for `size` bytes (spilling if needed) and counts them as used before anyone writes, so the store
   * never holds more than its capacity, even with several workers writing results at once.
   */
  async reserve(size: number): Promise<void> {
    this.admit(size)
    await this.makeRoom(size)
    this.used += size
  }

  /** An object whose room was reserved is now written (by the page or by a worker, straight into IndexedDB). */
  noteStored(id: string, size: number, bytes?: Uint8Array): void {
    if (this.index.has(id)) {
      this.used -= size // stored twice: give the second reservation back
      return
    }
    this.index.set(id, { size, lastUsed: performance.now(), pins: 0, spilled: false })
    if (bytes) this.remember(id, bytes)
  }

  private remember(id: string, bytes: Uint8Array): void {
    const prev = this.hot.get(id)
    if (prev) {
      this.hot.delete(id)
      this.hotBytes -= prev.byteLength
    }
    this.hot.set(id, bytes)
    this.hotBytes += bytes.byteLength
    for (const [old, b] of this.hot) {
      if (this.hotBytes <= this.capacity * SPILL_AT) break
      this.hot.delete(old)
      this.hotBytes -= b.byteLength
    }
  }

  private forget(id: string): void {
    const b = this.hot.get(id)
    if (!b) return
    this.hot.delete(id)
    this.hotBytes -= b.byteLength
  }

  /** Throws ObjectStoreFullError for an object that could never fit, however much is spilled. */
  admit(size: number): void {
    if (size > this.capacity)
      throw new ObjectStoreFullError(
        `an object of ${(size / MiB).toFixed(1)} MiB does not fit in this node's ${(this.capacity / MiB).toFixed(0)} MiB object store (?objectStoreMemory=)`,
      )
  }

  /** Makes sure the object is in IndexedDB (restoring it from OPFS if spilled) and pins it for a running task. */
  async pin(id: string): Promise<void> {
    const e = this.index.get(id)
    if (!e) throw new Error(`object ${id} is not in this node's store`)
    e.pins++
    e.lastUsed = performance.now()
    // A spill under way may be taking this very object out of IndexedDB: let it finish, then bring it back.
    await this.settled()
    if (e.spilled) await this.restore(id, e)
  }

  /** Waits until no spill is running. */
  private async settled(): Promise<void> {
    while (this.spilling) await this.spilling.catch(() => {})
  }

  unpin(id: string): void {
    const e = this.index.get(id)
    if (e && e.pins > 0) e.pins--
  }

  async read(id: string): Promise<Uint8Array | undefined> {
    const e = this.index.get(id)
    if (!e) return undefined
    e.lastUsed = performance.now()
    const hot = this.hot.get(id)
    if (hot) {
      this.remember(id, hot)
      return hot
    }
    await this.settled()
    if (e.spilled) await this.restore(id, e)
    const bytes = await readObject(this.db, id)
    if (bytes) this.remember(id, bytes)
    return bytes
  }

  async delete(id: string): Promise<void> {
    // Let a restore or spill of it finish first, so the bytes and the counts end up in one place.
    await this.restoring.get(id)?.catch(() => {})
    await this.settled()
    const e = this.index.get(id)
    if (!e) return
    this.index.delete(id)
    this.forget(id)
    if (e.spilled) {
      this.spilledBytes -= e.size
      await this.spiller.remove([id])
    } else {
      this.used -= e.size
      await deleteObject(this.db, id)
    }
  }

  private async restore(id: string, e: Entry): Promise<void> {
    let r = this.restoring.get(id)
    if (!r) {
      r = (async () => {
        await this.reserve(e.size)
        await this.spiller.restore(id)
        e.spilled = false
        this.spilledBytes -= e.size
        this.onSpilled([id], false)
      })().finally(() => this.restoring.delete(id))
      this.restoring.set(id, r)
    }
    await r
  }

  private async makeRoom(incoming: number): Promise<void> {
    if (this.used + incoming > this.capacity * SPILL_AT) await this.spillLru(Math.max(0, this.capacity * SPILL_TO - incoming))
  }

  /** Spills least recently used unpinned objects until `used` ≤ target. One spill runs at a time. */
  private async spillLru(target: number): Promise<void> {
    while (this.spilling) await this.spilling
    if (this.used <= target) return
    const victims: string[] = []
    let freed = 0
    const lru = [...this.index.entries()].filter(([, e]) => !e.spilled && e.pins === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed)
    for (const [id, e] of lru) {
      if (this.used - freed <= target) break
      victims.push(id)
      freed += e.size
    }
    if (!victims.length) return
    this.spilling = (async () => {
      let r: Awaited<ReturnType<SpillApi['spill']>>
      try {
        r = await this.spiller.spill(victims.map((id) => ({ id, bytes: this.hot.get(id) })))
      } catch (e) {
        throw new ObjectStoreFullError(`spilling to OPFS failed: ${(e as Error).message}`)
      }
      const gone: string[] = []
      for (const id of r.spilled) {
        this.forget(id)
        const e = this.index.get(id)
        if (!e) {
          gone.push(id) // deleted while it was being spilled: its file must not stay behind
          continue
        }
        e.spilled = true
        this.used -= e.size
        this.spilledBytes += e.size
      }
      if (gone.length) await this.spiller.remove(gone)
      const line = `Spilled ${Math.round(r.bytes / MiB)} MiB, ${r.spilled.length} objects, write throughput ${Math.round(r.bytes / MiB / (r.ms / 1000))} MiB/s`
      this.onSpilled(r.spilled, true, line)
    })()
    try {
      await this.spilling
    } finally {
      this.spilling = undefined
    }
  }

  /** Lets go of the in-memory copies (they stay in IndexedDB): the next reads are cold. */
  dropHot(): void {
    this.hot.clear()
    this.hotBytes = 0
  }

  /** Spills these objects now (the spill benchmark); returns bytes written and the time it took. */
  async spillNow(ids: string[]): Promise<{ bytes: number; ms: number }> {
    const r = await this.spiller.spill(ids.map((id) => ({ id, bytes: this.hot.get(id) })))
    for (const id of r.spilled) {
      this.forget(id)
      const e = this.index.get(id)
      if (!e || e.spilled) continue
      e.spilled = true
      this.used -= e.size
      this.spilledBytes += e.size
    }
    return { bytes: r.bytes, ms: r.ms }
  }

  /** Second baseline for the spill benchmark: bare IndexedDB read + OPFS write of these objects (no bookkeeping). */
  bareReadWriteMs(ids: string[]): Promise<number> {
    return this.spiller.bareReadWrite(ids)
  }

  /** Baseline for the spill benchmark: a bare OPFS write of the same size from the same worker. */
  bareOpfsWriteMs(count: number, size: number): Promise<number> {
    return this.spiller.bareWrite(count, size)
  }
}
