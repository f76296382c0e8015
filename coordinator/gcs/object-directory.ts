import { ObjectLostError, type WireError } from '../../sdk/errors.ts'
import type { ObjectId } from '../../sdk/ids.ts'
import type { ObjectUpdate } from '../../sdk/protocol.ts'
import type { ObjectRow } from '../../sdk/state.ts'

/** Someone who receives an object when it becomes ready (a driver's session). */
export interface ObjectSink {
  pushObject(update: ObjectUpdate): void
}

interface ObjectEntry {
  data?: Uint8Array
  error?: WireError
  jobId: string
  owner: ObjectSink | undefined
  /** The owner still holds a ref. Cleared by `release` (the driver's FinalizationRegistry) or job end. */
  ownerHeld: boolean
  /** Pending tasks that take it as an argument, plus objects that contain it. */
  pins: number
  nested?: ObjectId[]
  subscribers?: Set<ObjectSink>
  waiters?: (() => void)[]
}

/**
 * The object directory and in-memory store for inline objects (Ray's owner memory store, kept by the coordinator).
 * An object lives while its owner holds a ref or something pins it; then it is deleted.
 */
export class ObjectDirectory {
  private objects = new Map<ObjectId, ObjectEntry>()

  /** A future object: the return of a submitted task. */
  create(id: ObjectId, jobId: string, owner: ObjectSink | undefined): void {
    if (!this.objects.has(id)) this.objects.set(id, { jobId, owner, ownerHeld: true, pins: 0 })
  }

  has(id: string): boolean {
    return this.objects.has(id as ObjectId)
  }

  isReady(id: ObjectId): boolean {
    const e = this.objects.get(id)
    return !!(e && (e.data || e.error))
  }

  read(id: ObjectId): { data?: Uint8Array; error?: WireError } | undefined {
    return this.objects.get(id)
  }

  /** Stores a value or error and tells the owner and every subscriber. A second resolve is ignored (no duplicates). */
  resolve(id: ObjectId, result: { data: Uint8Array; nested?: ObjectId[] } | { error: WireError }): void {
    const e = this.objects.get(id)
    if (!e || e.data || e.error) return
    if ('error' in result) e.error = result.error
    else {
      e.data = result.data
      if (result.nested?.length) {
        e.nested = result.nested
        for (const n of result.nested) this.pin(n)
      }
    }
    const update: ObjectUpdate = e.error ? { objectId: id, error: e.error } : { objectId: id, data: e.data }
    if (e.ownerHeld) e.owner?.pushObject(update)
    if (e.subscribers) for (const s of e.subscribers) if (s !== e.owner) s.pushObject(update)
    e.subscribers = undefined
    const waiters = e.waiters
    e.waiters = undefined
    if (waiters) for (const w of waiters) w()
    this.collect(id, e)
  }

  /** Sends the object to `sink` now if ready, else when it is. Unknown ids get ObjectLostError at once. */
  subscribe(id: ObjectId, sink: ObjectSink): void {
    const e = this.objects.get(id)
    if (!e) {
      const reason = 'this coordinator does not know it (it was freed, the id is forged, or the ref comes from another cluster)'
      sink.pushObject({ objectId: id, error: new ObjectLostError(id, reason).toWire() })
      return
    }
    if (e.data) sink.pushObject({ objectId: id, data: e.data })
    else if (e.error) sink.pushObject({ objectId: id, error: e.error })
    else (e.subscribers ??= new Set()).add(sink)
  }

  /** Runs `cb` once the object is ready. Returns false if the object is unknown. */
  onReady(id: ObjectId, cb: () => void): boolean {
    const e = this.objects.get(id)
    if (!e) return false
    if (e.data || e.error) cb()
    else (e.waiters ??= []).push(cb)
    return true
  }

  pin(id: ObjectId): void {
    const e = this.objects.get(id)
    if (e) e.pins++
  }

  unpin(id: ObjectId): void {
    const e = this.objects.get(id)
    if (!e) return
    e.pins--
    this.collect(id, e)
  }

  /** The owner dropped its last ref. */
  release(id: ObjectId): void {
    const e = this.objects.get(id)
    if (!e) return
    e.ownerHeld = false
    this.collect(id, e)
  }

  /** The job ended: its driver holds nothing any more. */
  releaseJob(jobId: string): void {
    for (const [id, e] of this.objects) {
      if (e.jobId !== jobId) continue
      e.ownerHeld = false
      this.collect(id, e)
    }
  }

  /** Adds a value that already exists (a driver's `put`). */
  put(id: ObjectId, jobId: string, owner: ObjectSink, data: Uint8Array, nested?: ObjectId[]): void {
    this.create(id, jobId, owner)
    const e = this.objects.get(id)
    if (e) e.ownerHeld = false // the put reply is the owner's copy; nothing to push
    this.resolve(id, { data, nested })
    if (e) e.ownerHeld = true
  }

  get size(): number {
    return this.objects.size
  }

  rows(): ObjectRow[] {
    const out: ObjectRow[] = []
    for (const [id, e] of this.objects) {
      out.push({
        objectId: id,
        size: e.data?.byteLength ?? 0,
        locations: [],
        refCount: (e.ownerHeld ? 1 : 0) + e.pins,
        spilled: false,
      })
    }
    return out
  }

  private collect(id: ObjectId, e: ObjectEntry): void {
    // A pending object is never collected: its task will resolve it and someone may subscribe meanwhile.
    if (e.ownerHeld || e.pins > 0 || !(e.data || e.error)) return
    this.objects.delete(id)
    if (e.nested) for (const n of e.nested) this.unpin(n)
  }
}
