import { Assembly, chunksOf } from '../sdk/chunks.ts'
import { ObjectLostError, ValidationError } from '../sdk/errors.ts'
import { jobIdOfObject, type ObjectId } from '../sdk/ids.ts'
import { type ClientMessageOf, OBJECT_CHUNK_BYTES } from '../sdk/protocol/index.ts'
import type { NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { Session } from './session.ts'

interface Upload {
  assembly: Assembly
  owner: Session
  reqId?: number
  nested?: ObjectId[]
}

/**
 * Large objects crossing the control plane: what a Node driver (which has no WebRTC) puts and gets, relayed in
 * chunks. A driver's put is assembled here, then placed in the plasma store of the node with the most room; a
 * fetch is served from the coordinator's copy if it still has one, else streamed from a node that holds the object.
 */
export class ObjectTransfers {
  private uploads = new Map<ObjectId, Upload>()
  /** Who waits for the bytes of an object a node is uploading to us, and from which node. */
  private relays = new Map<
    ObjectId,
    { from: string; fromSession: Session; to: Set<Session>; tried: Set<string>; started: boolean; later: Set<Session> }
  >()
  /** Bytes of objects relayed from a holder to others that had no data channel to it (diagnostics, /metrics). */
  relayedBytes = 0
  /** Where each buffered object is being placed, so a second placement is not started. */
  private placing = new Map<ObjectId, string>()

  constructor(
    private readonly deps: {
      nodes: NodeTable
      objects: ObjectDirectory
      nodeSession(nodeId: string): Session | undefined
      /** Who serves a location's copy: a node, or a browser driver serving its own put (by its peer id). */
      holderSession(location: string): Session | undefined
      log(line: string): void
    },
  ) {}

  /** What every put must satisfy: the id is this job's and new, and refs inside the value are known. */
  private checkPut(s: Session, id: ObjectId, nested: readonly string[] | undefined): void {
    const objects = this.deps.objects
    if (jobIdOfObject(id) !== s.jobId) throw new ValidationError('put: the object id does not belong to this job')
    if (objects.has(id)) throw new ValidationError(`put: object ${id} already exists`)
    for (const n of nested ?? [])
      if (!objects.has(n)) throw new ValidationError(`put: the value holds ObjectRef(${n}), which this coordinator does not know`)
  }

  /** A small put (≤ 100 KiB): the value travels inline and the coordinator keeps it. */
  onPut(s: Session, m: ClientMessageOf<'put'>): void {
    const id = m.objectId as ObjectId
    this.checkPut(s, id, m.nestedRefs)
    this.deps.objects.put(id, s.jobId as string, s, { data: m.data, ...(m.nestedRefs && { nested: m.nestedRefs as ObjectId[] }) })
    s.send({ type: 'reply', reqId: m.reqId, ok: true, value: null })
  }

  /** A chunk from a driver (its put) or from a node (answering upload-object). */
  onChunk(s: Session, m: ClientMessageOf<'object-chunk'>): void {
    // A chunk of an upload this coordinator asked for (from a node, or a browser driver serving its put)…
    if (this.relays.get(m.objectId as ObjectId)?.fromSession === s) return this.relayChunk(m)
    if (s.role === 'node') return // …or a late one from an upload that was given up: dropped
    // …else a driver's own put.
    const id = m.objectId as ObjectId
    const objects = this.deps.objects
    let up = this.uploads.get(id)
    if (!up) {
      if (m.offset !== 0) throw new ValidationError(`put of ${id}: the first chunk must start at offset 0`)
      this.checkPut(s, id, m.nestedRefs)
      up = { assembly: new Assembly(m.total), owner: s, ...(m.nestedRefs && { nested: m.nestedRefs as ObjectId[] }) }
      this.uploads.set(id, up)
      // Created now, before the last chunk, so tasks submitted right after the put wait for it (PENDING_ARGS_AVAIL).
      objects.create(id, s.jobId as string, s)
    }
    const a = up.assembly
    if (m.offset !== a.receivedBytes || m.total !== a.total || m.offset + m.data.byteLength > a.total)
      throw new ValidationError(`put of ${id}: chunk at ${m.offset} does not follow ${a.receivedBytes} of ${a.total} bytes`)
    const complete = a.add(m.offset, m.data)
    if (m.reqId !== undefined) up.reqId = m.reqId
    if (!complete) return
    this.uploads.delete(id)
    objects.resolveBuffered(id, a.bytes, up.nested)
    if (up.reqId !== undefined) up.owner.send({ type: 'reply', reqId: up.reqId, ok: true, value: null })
    this.place(id)
  }

  /** A browser driver put a large object and serves it itself over WebRTC: it is the object's first location. */
  onPutRemote(s: Session, m: ClientMessageOf<'put-remote'>): void {
    const id = m.objectId as ObjectId
    this.checkPut(s, id, m.nestedRefs)
    this.deps.objects.put(id, s.jobId as string, s, {
      size: m.size,
      location: m.peerId,
      ...(m.nestedRefs && { nested: m.nestedRefs as ObjectId[] }),
    })
    s.send({ type: 'reply', reqId: m.reqId, ok: true, value: null })
  }

  /** The driver went away: its half-put objects are dropped, and what it served itself is no longer there. */
  dropUploads(s: Session): void {
    for (const [id, up] of this.uploads) {
      if (up.owner !== s) continue
      this.uploads.delete(id)
      // Whatever waits on it (tasks, other connections) fails instead of waiting forever.
      this.deps.objects.resolve(id, { error: new ObjectLostError(id, 'its driver disconnected before the upload finished').toWire() })
    }
    if (s.peerId) this.deps.objects.removeNode(s.peerId)
  }

  /** Puts the coordinator's copy of an object into the plasma store of the node with the most free room. */
  place(id: ObjectId): void {
    const entry = this.deps.objects.read(id)
    if (!entry?.buffer || this.placing.has(id)) return
    const node = this.deps.nodes
      .alive()
      .filter((n) => !n.draining && this.deps.nodeSession(n.nodeId))
      .sort((a, b) => b.objectStoreMemory - b.objectStoreUsed - (a.objectStoreMemory - a.objectStoreUsed))[0]
    if (!node) return // kept here until a node joins
    this.placing.set(id, node.nodeId)
    this.stream(entry.buffer, id, this.deps.nodeSession(node.nodeId) as Session)
  }

  /** A node reports objects now in its plasma store (placed, pulled from a peer, or fetched). */
  onStored(s: Session, stored: { objectId: string; size: number }[]): void {
    for (const o of stored) {
      const id = o.objectId as ObjectId
      if (!this.deps.objects.addLocation(id, s.nodeId as string)) {
        // Nothing refers to it any more (or it is inline): the node must not keep it.
        s.send({ type: 'delete-objects', objectIds: [id] })
        continue
      }
      if (this.placing.get(id) === s.nodeId) {
        this.placing.delete(id)
        this.deps.objects.dropBuffer(id)
      }
    }
  }

  /** Sends the bytes of large objects to `s` (a driver's get, or a node with no peer to pull from). */
  fetch(s: Session, ids: ObjectId[]): void {
    for (const id of ids) {
      const e = this.deps.objects.read(id)
      // An object that failed is answered with its own error (wrapped, it read "Object X is lost: Object X is lost: …").
      if (e?.error) {
        s.pushObject({ objectId: id, error: e.error })
        continue
      }
      if (!e || e.data) {
        const reason = e ? 'it is small: it travels inline' : 'this coordinator does not know it'
        s.pushObject({ objectId: id, error: new ObjectLostError(id, reason).toWire() })
        continue
      }
      if (e.buffer) {
        this.stream(e.buffer, id, s)
        continue
      }
      const relay = this.relays.get(id)
      // Joining a stream already under way would miss its first chunks: wait for the next upload instead.
      if (relay) (relay.started ? relay.later : relay.to).add(s)
      else this.requestUpload(id, new Set([s]), new Set())
    }
  }

  private requestUpload(id: ObjectId, to: Set<Session>, tried: Set<string>): void {
    const e = this.deps.objects.read(id)
    const from = [...(e?.locations ?? [])].find((n) => !tried.has(n) && this.deps.holderSession(n))
    const fromSession = from ? this.deps.holderSession(from) : undefined
    if (!from || !fromSession) {
      const error = new ObjectLostError(id, 'no node or driver that holds it could send it').toWire()
      for (const s of to) s.pushObject({ objectId: id, error })
      this.relays.delete(id)
      return
    }
    tried.add(from)
    this.relays.set(id, { from, fromSession, to, tried, started: false, later: new Set() })
    fromSession.send({ type: 'upload-object', objectId: id })
  }

  private relayChunk(m: ClientMessageOf<'object-chunk'>): void {
    const id = m.objectId as ObjectId
    const relay = this.relays.get(id)
    if (!relay) return
    relay.started = true
    this.relayedBytes += m.data.byteLength * relay.to.size
    for (const s of relay.to) s.send({ type: 'object-chunk', objectId: id, offset: m.offset, total: m.total, data: m.data })
    if (m.offset + m.data.byteLength < m.total) return
    this.relays.delete(id)
    if (relay.later.size) this.requestUpload(id, relay.later, new Set())
  }

  /** A holder could not send an object (evicted, disk error): try another holder. */
  onUploadFailed(s: Session, id: ObjectId, reason: string): void {
    const relay = this.relays.get(id)
    if (relay?.fromSession !== s) return
    this.deps.log(`[coordinator] ${relay.from.slice(0, 8)} could not send ${id.slice(0, 12)}: ${reason}`)
    this.requestUpload(id, new Set([...relay.to, ...relay.later]), relay.tried)
  }

  /** A browser driver that served its puts went away: relays from it move to another holder, or fail. */
  onHolderGone(location: string): void {
    this.onNodeDead(location)
  }

  /** A node died: relays from it move to another holder; placements on it start over. */
  onNodeDead(nodeId: string): void {
    // Receivers restart from offset 0 (they reset on a chunk at 0), late joiners included.
    for (const [id, relay] of this.relays)
      if (relay.from === nodeId) this.requestUpload(id, new Set([...relay.to, ...relay.later]), relay.tried)
    for (const [id, target] of this.placing) {
      if (target !== nodeId) continue
      this.placing.delete(id)
      this.place(id)
    }
  }

  /** A node joined: objects only the coordinator holds go to it. */
  onNodeJoined(): void {
    for (const id of this.deps.objects.buffered()) this.place(id)
  }

  private stream(buffer: Uint8Array, id: ObjectId, to: Session): void {
    const total = buffer.byteLength
    for (const { offset, data } of chunksOf(buffer, OBJECT_CHUNK_BYTES))
      to.send({ type: 'object-chunk', objectId: id, offset, total, data })
  }
}
