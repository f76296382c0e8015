import { ObjectLostError, type WireError } from '../../sdk/errors.ts'
import type { ObjectId } from '../../sdk/ids.ts'
import type { ObjectUpdate } from '../../sdk/protocol.ts'
import type { ObjectRow } from '../../sdk/state.ts'

/** Someone who receives an object when it becomes ready (a driver's session). */
export interface ObjectSink {
  pushObject(update: ObjectUpdate): void
}

interface ObjectEntry {
  /** Small objects: the value itself, kept here (Ray's owner memory store). */
  data?: Uint8Array
  error?: WireError
  /** Large objects: their size, and the nodes whose plasma store holds a copy. */
  size?: number
  locations?: Set<string>
  spilledOn?: Set<string>
  /** A large object the coordinator holds itself: a driver's put not yet placed on a node (or no node alive). */
  buffer?: Uint8Array
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

export type ObjectResult =
  | { data: Uint8Array; nested?: ObjectId[] }
  | { size: number; location: string; nested?: ObjectId[] }
  | { error: WireError }

/**
 * The object directory (Ray's owner table + object directory, kept by the coordinator): small objects with their
 * bytes, large ones with their size and locations. An object lives while its owner holds a ref or something pins it;
 * then it is deleted here and on every node that holds it (`onDelete`).
 */
export class ObjectDirectory {
  private objects = new Map<ObjectId, ObjectEntry>()
  /** Called when a large object is deleted, with the nodes that must drop their copies. */
  onDelete: (id: ObjectId, nodes: string[]) => void = () => {}

  /** A future object: the return of a submitted task, or a driver's put still uploading. */
  create(id: ObjectId, jobId: string, owner: ObjectSink | undefined): void {
    if (!this.objects.has(id)) this.objects.set(id, { jobId, owner, ownerHeld: true, pins: 0 })
  }

  has(id: string): boolean {
    return this.objects.has(id as ObjectId)
  }

  isReady(id: ObjectId): boolean {
    const e = this.objects.get(id)
    return !!e && ready(e)
  }

  read(id: ObjectId): Readonly<ObjectEntry> | undefined {
    return this.objects.get(id)
  }

  /** Stores a value, a location or an error and tells the owner and every subscriber. A second resolve is ignored. */
  resolve(id: ObjectId, result: ObjectResult): void {
    const e = this.objects.get(id)
    if (!e || ready(e)) return
    if ('error' in result) e.error = result.error
    else {
      if ('data' in result) e.data = result.data
      else {
        e.size = result.size
        e.locations = new Set([result.location])
      }
      if (result.nested?.length) {
        e.nested = result.nested
        for (const n of result.nested) this.pin(n)
      }
    }
    this.announce(id, e)
  }

  /** A driver's large put finished uploading: the coordinator holds it until a node stores it. */
  resolveBuffered(id: ObjectId, buffer: Uint8Array, nested?: ObjectId[]): void {
    const e = this.objects.get(id)
    if (!e || ready(e)) return
    e.buffer = buffer
    e.size = buffer.byteLength
    e.locations = new Set()
    if (nested?.length) {
      e.nested = nested
      for (const n of nested) this.pin(n)
    }
    this.announce(id, e)
  }

  private announce(id: ObjectId, e: ObjectEntry): void {
    const update = updateOf(id, e)
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
    if (ready(e)) sink.pushObject(updateOf(id, e))
    else (e.subscribers ??= new Set()).add(sink)
  }

  /** Runs `cb` once the object is ready. Returns false if the object is unknown. */
  onReady(id: ObjectId, cb: () => void): boolean {
    const e = this.objects.get(id)
    if (!e) return false
    if (ready(e)) cb()
    else (e.waiters ??= []).push(cb)
    return true
  }

  addLocation(id: ObjectId, nodeId: string): boolean {
    const e = this.objects.get(id)
    if (!e || e.error || e.data) return false
    e.locations ??= new Set()
    e.locations.add(nodeId)
    return true
  }

  /** The coordinator's own copy is no longer needed once a node stores the object. */
  dropBuffer(id: ObjectId): void {
    const e = this.objects.get(id)
    if (e?.buffer && e.locations?.size) e.buffer = undefined
  }

  setSpilled(id: ObjectId, nodeId: string, spilled: boolean): void {
    const e = this.objects.get(id)
    if (!e?.locations?.has(nodeId)) return
    e.spilledOn ??= new Set()
    if (spilled) e.spilledOn.add(nodeId)
    else e.spilledOn.delete(nodeId)
  }

  /** A node died: its copies are gone. Objects with no copy left are lost (their readers get ObjectLostError). */
  removeNode(nodeId: string): ObjectId[] {
    const lost: ObjectId[] = []
    for (const [id, e] of this.objects) {
      if (!e.locations?.delete(nodeId)) continue
      e.spilledOn?.delete(nodeId)
      if (e.locations.size === 0 && !e.buffer) {
        e.error = new ObjectLostError(id, `its only copy was on node ${nodeId}, which died`).toWire()
        e.locations = undefined
        lost.push(id)
      }
    }
    return lost
  }

  /** Large objects waiting only in the coordinator's memory (to place on a node when one is alive). */
  buffered(): ObjectId[] {
    const out: ObjectId[] = []
    for (const [id, e] of this.objects) if (e.buffer && !e.locations?.size) out.push(id)
    return out
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

  /** Adds an object its owner already has (a driver's `put`: inline bytes, or a large value it serves itself). */
  put(id: ObjectId, jobId: string, owner: ObjectSink, result: ObjectResult): void {
    // Created without its owner's sink: the owner already has the value, so nothing is pushed back to it.
    this.create(id, jobId, undefined)
    this.resolve(id, result)
    const e = this.objects.get(id)
    if (e) e.owner = owner
  }

  get size(): number {
    return this.objects.size
  }

  rows(): ObjectRow[] {
    const out: ObjectRow[] = []
    for (const [id, e] of this.objects) {
      out.push({
        objectId: id,
        size: e.data?.byteLength ?? e.size ?? 0,
        locations: e.locations ? [...e.locations] : [],
        refCount: (e.ownerHeld ? 1 : 0) + e.pins,
        spilled: !!e.spilledOn?.size,
      })
    }
    return out
  }

  private collect(id: ObjectId, e: ObjectEntry): void {
    // A pending object is never collected: its task will resolve it and someone may subscribe meanwhile.
    if (e.ownerHeld || e.pins > 0 || !ready(e)) return
    this.objects.delete(id)
    if (e.locations?.size) this.onDelete(id, [...e.locations])
    if (e.nested) for (const n of e.nested) this.unpin(n)
  }
}

function ready(e: ObjectEntry): boolean {
  return !!(e.data || e.error || e.size !== undefined)
}

function updateOf(id: ObjectId, e: ObjectEntry): ObjectUpdate {
  if (e.error) return { objectId: id, error: e.error }
  if (e.data) return { objectId: id, data: e.data }
  return { objectId: id, size: e.size ?? 0, locations: e.locations ? [...e.locations] : [] }
}
