import { chunksOf, sendInChunks } from './chunks.ts'
import { ObjectLostError } from './errors.ts'
import type { ObjectId } from './ids.ts'
import { PeerSource, pullFromAny, RelaySource } from './object-sources.ts'
import type { ObjectTable } from './object-table.ts'
import { type ClientMessage, OBJECT_CHUNK_BYTES, type RequestMessage } from './protocol/index.ts'
import type { PeerMesh } from './transport/peer-mesh.ts'

/** What moving large objects needs from the connection. */
export interface TransferChannel {
  send(msg: ClientMessage): void
  request(msg: RequestMessage): Promise<unknown>
}

/**
 * Large objects to and from this driver (Ray's object manager, driver side). A browser driver serves its own large
 * puts to nodes over WebRTC and pulls results from them; a Node driver (no WebRTC) sends and receives them in chunks
 * through the coordinator. Either way a pull that fails tries the next way before giving up with ObjectLostError.
 */
export class ObjectTransfer {
  /** Bytes of a browser driver's large puts: kept until the coordinator says nothing needs them any more. */
  private served = new Map<ObjectId, Uint8Array>()
  /** Bytes of large objects moved peer to peer and through the coordinator's relay (diagnostics). */
  readonly stats = { peerBytes: 0, relayBytes: 0 }
  private readonly peerSource: PeerSource | undefined
  private readonly relay: RelaySource

  constructor(
    private readonly objects: ObjectTable,
    private readonly channel: TransferChannel,
    private readonly peers: PeerMesh | undefined,
    /** Large puts stay here and are served over `peers` (a page); else they go to the coordinator in chunks. */
    private readonly servePuts = !!peers,
  ) {
    if (peers) peers.source = async (id) => this.served.get(id as ObjectId) ?? this.objects.read(id as ObjectId)?.data
    this.peerSource = peers && new PeerSource(peers)
    this.relay = new RelaySource((m) => this.channel.send(m))
  }

  /**
   * Sends a large encoded value to where it will live and returns when the coordinator has it (`confirm`), or at
   * once. The messages are queued now, so tasks submitted right after it see the object (they wait for it).
   */
  putLarge(id: ObjectId, data: Uint8Array, nested: ObjectId[], confirm: boolean): Promise<unknown> {
    const nestedRefs = nested.length ? { nestedRefs: nested } : {}
    if (this.peers && this.servePuts) {
      // A browser driver keeps the object and serves it to the nodes that need it over WebRTC.
      this.served.set(id, data)
      const done = this.channel.request({
        type: 'put-remote',
        reqId: 0,
        objectId: id,
        size: data.byteLength,
        peerId: this.peers.peerId,
        ...nestedRefs,
      })
      if (!confirm) done.catch((e: Error) => console.error(`[shoal] put of ${id} failed: ${e.message}`))
      return done
    }
    this.stats.relayBytes += data.byteLength
    const total = data.byteLength
    let done: Promise<unknown> = Promise.resolve()
    for (const { offset, data: part } of chunksOf(data, OBJECT_CHUNK_BYTES)) {
      const msg = { type: 'object-chunk' as const, objectId: id, offset, total, data: part, ...(offset === 0 && nestedRefs) }
      if (offset + part.byteLength >= total && confirm) done = this.channel.request({ ...msg, reqId: 0 })
      else this.channel.send(msg)
    }
    return done
  }

  /** The coordinator deleted these objects: this driver stops serving them. */
  dropServed(ids: readonly string[]): void {
    for (const id of ids) this.served.delete(id as ObjectId)
  }

  /** Starts bringing the bytes of ready large objects here; `ObjectTable` tells who waits when they arrive. */
  fetch(ids: readonly ObjectId[]): void {
    for (const id of ids) {
      if (!this.objects.needsFetch(id)) continue
      this.objects.startFetch(id)
      void this.pull(id)
    }
  }

  /** Pulls a large object from a node over WebRTC when this driver can; else through the coordinator's relay. */
  private async pull(id: ObjectId): Promise<void> {
    try {
      const { bytes, via } = await pullFromAny(id, this.objects.locationsOf(id), { peer: this.peerSource, relay: this.relay })
      this.stats[via === 'peer' ? 'peerBytes' : 'relayBytes'] += bytes.byteLength
      this.objects.setData(id, bytes)
    } catch (e) {
      // Released meanwhile, or already failed by the coordinator's word: nothing to do.
      const entry = this.objects.peek(id)
      if (!entry || entry.data || entry.error) return
      this.objects.fail(id, (e instanceof ObjectLostError ? e : new ObjectLostError(id, String(e))).toWire())
    }
  }

  /**
   * The coordinator asks for the bytes of a put this driver serves (a task, which has no WebRTC, wants it): they go up
   * in chunks, pausing while the socket's buffer is full.
   */
  async upload(id: ObjectId, buffered: () => number): Promise<void> {
    const bytes = this.served.get(id)
    if (!bytes) return this.channel.send({ type: 'upload-failed', objectId: id, reason: 'this driver no longer serves it' })
    const total = bytes.byteLength
    await sendInChunks(
      bytes,
      OBJECT_CHUNK_BYTES,
      (offset, data) => this.channel.send({ type: 'object-chunk', objectId: id, offset, total, data }),
      buffered,
    )
  }

  /** A chunk relayed by the coordinator. */
  onChunk(id: ObjectId, offset: number, total: number, data: Uint8Array): void {
    this.relay.onChunk(id, offset, total, data)
  }

  /** The coordinator could not relay an object (no holder could send it). */
  onRelayFailed(id: ObjectId, why: string): void {
    this.relay.onFailed(id, why)
  }

  /** The connection is gone: pulls under way fail. */
  close(why: string): void {
    this.relay.close(why)
  }
}
