import { ownBytes } from '../../sdk/byte-slab.ts'
import { ObjectFreedError, ObjectLostError, OwnerDiedError, type WireError } from '../../sdk/errors.ts'
import type { ObjectId } from '../../sdk/ids.ts'
import type { ObjectUpdate } from '../../sdk/protocol/index.ts'
import type { ObjectRow } from '../../sdk/state-api.ts'

/** Someone who receives an object when it becomes ready (a driver's session). */
export interface ObjectSink {
  pushObject(update: ObjectUpdate): void
}

interface ObjectEntry {
  /** Small objects: the value itself, kept here (Ray's owner memory store). */
  data?: Uint8Array
  error?: WireError
  /** Large objects: their size, and the nodes (or browser drivers' peer ids) whose store holds a copy. */
  size?: number
  locations?: Set<string>
  spilledOn?: Set<string>
  /** A large object the coordinator holds itself: a driver's put not yet placed on a node (or no node alive). */
  buffer?: Uint8Array
  jobId: string
  owner: ObjectSink | undefined
  /** The owner still holds a ref. Cleared when the owner lets go (its refs collected, its scope or channel ended). */
  ownerHeld: boolean
  /** Pending tasks that take it as an argument, borrowers (other connections holding a ref), containing objects. */
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
 * The object directory (Ray's owner table + object directory, kept by the coordinator on the owners' behalf): small
 * objects with their bytes, large ones with their size and locations. An object lives while its owner holds a ref,
 * a borrower holds one, a pending task needs it or a live object contains it (Ray's reference counting); then it is
 * deleted here and on every node that holds it (`onDelete`).
 */
export class ObjectDirectory {
  private objects = new Map<ObjectId, ObjectEntry>()
  /** What each owner owns, so an owner that goes away lets go of all of it at once. */
  private byOwner = new Map<ObjectSink, Set<ObjectId>>()
  /** What each node holds, so a node's death touches only its objects. */
  private byLocation = new Map<string, Set<ObjectId>>()
  /** Called when a large object is deleted, with the nodes (or peers) that must drop their copies. */
  onDelete: (id: ObjectId, locations: string[]) => void = () => {}
  /** Called when an object is gone from the directory (for the actor table: an actor's handles are counted this way). */
  onCollected: (id: ObjectId) => void = () => {}
  /** Called when an object not made yet loses its last ref (an actor whose creation is pending, and no handle left). */
  onUnreferencedPending: (id: ObjectId) => void = () => {}
  /** Called when an owner's last object is collected (its worker may go, if its job has ended). */
  onOwnerEmpty: (owner: ObjectSink) => void = () => {}
  /** Bytes of the objects listed here, per tenant (values kept here and large objects' sizes): for the quota. */
  private stored = new Map<string, number>()

  constructor(private readonly tenantOf: (jobId: string) => string = () => '') {}

  /** The bytes a tenant's objects take now (kept as they change: a quota check never walks the directory). */
  storedBy(tenant: string): number {
    return this.stored.get(tenant) ?? 0
  }

  /**
   * Adds (`sign` 1) or takes away (-1) an entry's bytes in its tenant's tally: added when its value or size arrives,
   * taken away before it is lost and when it is deleted. Nothing is kept per entry (a directory may list millions).
   */
  private tally(e: ObjectEntry, sign: 1 | -1): void {
    const bytes = e.data?.byteLength ?? e.size ?? 0
    if (!bytes) return
    const tenant = this.tenantOf(e.jobId)
    const total = (this.stored.get(tenant) ?? 0) + sign * bytes
    if (total) this.stored.set(tenant, total)
    else this.stored.delete(tenant)
  }

  /** Whether this owner still owns anything (a worker that does must not be stopped gracefully, as in Ray). */
  owns(owner: ObjectSink): boolean {
    return !!this.byOwner.get(owner)?.size
  }

  /** A future object: the return of a submitted task, or a driver's put still uploading. */
  create(id: ObjectId, jobId: string, owner: ObjectSink | undefined): void {
    if (this.objects.has(id)) return
    this.objects.set(id, { jobId, owner, ownerHeld: true, pins: 0 })
    if (owner) this.index(this.byOwner, owner, id)
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
  resolve(id: ObjectId, result: ObjectResult, tellOwner = true): void {
    const e = this.objects.get(id)
    if (!e || ready(e)) return
    if ('error' in result) e.error = result.error
    else {
      // A value decoded from a frame is a view of that frame: kept as is, a 10-byte object would hold its whole frame
      // (up to the frame limit) for as long as it lives. Copied, it holds its bytes.
      if ('data' in result) e.data = ownBytes(result.data)
      else {
        e.size = result.size
        e.locations = new Set([result.location])
        this.index(this.byLocation, result.location, id)
      }
      this.contain(e, result.nested)
      this.tally(e, 1)
    }
    this.announce(id, e, tellOwner)
  }

  /** A driver's large put finished uploading: the coordinator holds it until a node stores it. */
  resolveBuffered(id: ObjectId, buffer: Uint8Array, nested?: ObjectId[]): void {
    const e = this.objects.get(id)
    if (!e || ready(e)) return
    e.buffer = buffer
    e.size = buffer.byteLength
    e.locations = new Set()
    this.contain(e, nested)
    this.tally(e, 1)
    this.announce(id, e)
  }

  /** Objects whose refs are inside this one live while it does. */
  private contain(e: ObjectEntry, nested: ObjectId[] | undefined): void {
    if (!nested?.length) return
    e.nested = nested
    for (const n of nested) this.pin(n)
  }

  private announce(id: ObjectId, e: ObjectEntry, tellOwner = true): void {
    const update = updateOf(id, e)
    if (e.ownerHeld && tellOwner) e.owner?.pushObject(update)
    if (e.subscribers) for (const s of e.subscribers) if (s !== e.owner) s.pushObject(update)
    e.subscribers = undefined
    const waiters = e.waiters
    e.waiters = undefined
    if (waiters) for (const w of waiters) w()
    this.collect(id, e)
  }

  /** Sends the object to `sink` now if ready, else when it is. Unknown ids get ObjectLostError at once. */
  /** `unknown`: answer as if the object did not exist (another tenant's, whose existence is not ours to tell). */
  subscribe(id: ObjectId, sink: ObjectSink, unknown = false): void {
    const e = unknown ? undefined : this.objects.get(id)
    if (!e) {
      const reason = 'it is unknown to this coordinator (it was freed, the id is forged, or the ref comes from another cluster)'
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
    this.index(this.byLocation, nodeId, id)
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
    const held = this.byLocation.get(nodeId)
    this.byLocation.delete(nodeId)
    for (const id of held ?? []) {
      const e = this.objects.get(id)
      if (!e?.locations?.delete(nodeId)) continue
      e.spilledOn?.delete(nodeId)
      if (e.locations.size === 0 && !e.buffer) {
        e.error = new ObjectLostError(id, `its only copy was on node ${nodeId}, which died`).toWire()
        e.locations = undefined
        lost.push(id)
      }
    }
    return lost
  }

  /**
   * Large objects whose only copy is on `nodeId` (and not in the coordinator's memory either): what a leaving node
   * must hand over. Every object listed here is still needed by someone (an unneeded one is collected at once).
   */
  onlyOn(nodeId: string): { objectId: ObjectId; size: number }[] {
    const out: { objectId: ObjectId; size: number }[] = []
    for (const id of this.byLocation.get(nodeId) ?? []) {
      const e = this.objects.get(id)
      if (e && !e.error && !e.buffer && e.locations?.size === 1 && e.locations.has(nodeId)) out.push({ objectId: id, size: e.size ?? 0 })
    }
    return out
  }

  /** Large objects waiting only in the coordinator's memory (to place on a node when one is alive). */
  buffered(): ObjectId[] {
    const out: ObjectId[] = []
    for (const id of this.byLocation.get(BUFFERED) ?? []) {
      const e = this.objects.get(id)
      if (e?.buffer && !e.locations?.size) out.push(id)
    }
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

  /** The owner let go of its ref. Only the owner's word counts: a release from anyone else changes nothing. */
  release(id: ObjectId, by: ObjectSink): void {
    const e = this.objects.get(id)
    if (!e || e.owner !== by || !e.ownerHeld) return
    e.ownerHeld = false
    this.collect(id, e)
  }

  /**
   * An owner died (a worker's channel closed, a driver left). As in Ray, its objects share its fate: one that others
   * still refer to is lost for them (OwnerDiedError, every copy deleted); the rest are simply collected.
   */
  ownerDied(owner: ObjectSink, who?: string): void {
    const ids = this.byOwner.get(owner)
    this.byOwner.delete(owner)
    for (const id of ids ?? []) {
      const e = this.objects.get(id)
      if (!e || e.owner !== owner) continue
      e.ownerHeld = false
      // One still pending can never get its value now (its owner was to publish it): it is lost, and collected.
      if ((e.pins > 0 && !e.error) || !ready(e)) this.lose(id, e, new OwnerDiedError(id, who).toWire())
      else this.collect(id, e)
    }
  }

  /**
   * Ray's `internal_api.free`: the object's value and every copy are deleted now, whatever still refers to it; its
   * readers get ObjectFreedError from now on. The entry stays (as that error) until nothing refers to it.
   */
  free(id: ObjectId): void {
    const e = this.objects.get(id)
    if (e) this.lose(id, e, new ObjectFreedError(id).toWire())
  }

  /**
   * Deletes an object's value and every copy now, leaving `error` for whoever reads it from now on. Those already
   * told its value are not told again (a value reaches each holder once); those still waiting get the error.
   */
  private lose(id: ObjectId, e: ObjectEntry, error: WireError): void {
    const wasReady = ready(e)
    const locations = e.locations ? [...e.locations] : []
    for (const n of locations) this.byLocation.get(n)?.delete(id)
    const nested = e.nested
    this.tally(e, -1)
    e.data = undefined
    e.buffer = undefined
    e.size = undefined
    e.locations = undefined
    e.spilledOn = undefined
    e.nested = undefined
    e.error = error
    if (locations.length) this.onDelete(id, locations)
    if (wasReady) this.collect(id, e)
    else this.announce(id, e)
    for (const n of nested ?? []) this.unpin(n)
  }

  /** Adds an object its owner already has (a driver's `put`: inline bytes, or a large value it serves itself). */
  put(id: ObjectId, jobId: string, owner: ObjectSink, result: ObjectResult): void {
    // Resolved before its owner is set: the owner already has the value, so nothing is pushed back to it.
    this.create(id, jobId, undefined)
    this.resolve(id, result)
    const e = this.objects.get(id)
    if (!e) return
    e.owner = owner
    this.index(this.byOwner, owner, id)
  }

  /** A driver's large put is held by the coordinator until placed: indexed so `buffered()` finds it without a scan. */
  markBuffered(id: ObjectId): void {
    this.index(this.byLocation, BUFFERED, id)
  }

  get size(): number {
    return this.objects.size
  }

  /** Every object's id. */
  ids(): IterableIterator<ObjectId> {
    return this.objects.keys()
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

  private index<K>(map: Map<K, Set<ObjectId>>, key: K, id: ObjectId): void {
    let set = map.get(key)
    if (!set) map.set(key, (set = new Set()))
    set.add(id)
  }

  private collect(id: ObjectId, e: ObjectEntry): void {
    if (e.ownerHeld || e.pins > 0) return
    // A pending object is never collected: its task will resolve it and someone may subscribe meanwhile.
    if (!ready(e)) return this.onUnreferencedPending(id)
    this.objects.delete(id)
    this.tally(e, -1)
    const owned = e.owner ? this.byOwner.get(e.owner) : undefined
    if (owned?.delete(id) && !owned.size) {
      this.byOwner.delete(e.owner as ObjectSink)
      this.onOwnerEmpty(e.owner as ObjectSink)
    }
    this.byLocation.get(BUFFERED)?.delete(id)
    if (e.locations?.size) {
      for (const n of e.locations) this.byLocation.get(n)?.delete(id)
      this.onDelete(id, [...e.locations])
    }
    if (e.nested) for (const n of e.nested) this.unpin(n)
    this.onCollected(id)
  }
}

/** The location key of objects only the coordinator holds. */
const BUFFERED = '\u0000coordinator'

function ready(e: ObjectEntry): boolean {
  return !!(e.data || e.error || e.size !== undefined)
}

function updateOf(id: ObjectId, e: ObjectEntry): ObjectUpdate {
  if (e.error) return { objectId: id, error: e.error }
  if (e.data) return { objectId: id, data: e.data }
  return { objectId: id, size: e.size ?? 0, locations: e.locations ? [...e.locations] : [] }
}
