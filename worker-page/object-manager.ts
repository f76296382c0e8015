import { Assembly, sendInChunks } from '../sdk/chunks.ts'
import type { WireError } from '../sdk/errors.ts'
import { PeerSource, pullFromAny, RelaySource } from '../sdk/object-sources.ts'
import { type ClientMessage, type LargeArg, OBJECT_CHUNK_BYTES, type ObjectUpdate } from '../sdk/protocol/index.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import type { NodeObjects } from './node/ports.ts'
import type { PlasmaStore } from './object-store/plasma-store.ts'

/**
 * The node's object manager: before a task runs, every large argument is made local (pulled from a peer over
 * WebRTC, else through the coordinator), restored if spilled, and pinned. Concurrent pulls of one object share one
 * transfer. It also serves uploads the coordinator asks for and stores objects the coordinator places here.
 */
export class ObjectManager implements NodeObjects {
  private pulls = new Map<string, Promise<void>>()
  /** Objects the coordinator places here, arriving in chunks. */
  private placements = new Map<string, Assembly>()
  private readonly relay: RelaySource
  /** Bytes of large arguments pulled from peers over WebRTC and through the coordinator's relay (diagnostics). */
  readonly transferStats = { peerBytes: 0, relayBytes: 0 }

  constructor(
    private readonly store: PlasmaStore,
    private readonly selfId: string,
    private readonly peers: () => PeerMesh | undefined,
    private readonly send: (msg: ClientMessage) => void,
    private readonly socketBuffered: () => number,
  ) {
    this.relay = new RelaySource(send)
  }

  get used(): number {
    return this.store.used
  }

  get spilledBytes(): number {
    return this.store.spilledBytes
  }

  stored(id: string, size: number, bytes?: Uint8Array): void {
    this.store.noteStored(id, size, bytes)
  }

  /** Makes every large argument local and pinned. Throws ObjectLostError when no copy can be had. */
  async acquire(args: LargeArg[]): Promise<void> {
    await Promise.all(args.map((a) => this.ensureLocal(a)))
    for (const a of args) await this.store.pin(a.ref)
  }

  release(args: LargeArg[]): void {
    for (const a of args) this.store.unpin(a.ref)
  }

  private ensureLocal(a: LargeArg): Promise<void> {
    if (this.store.has(a.ref)) return Promise.resolve()
    let p = this.pulls.get(a.ref)
    if (!p) {
      p = this.pull(a).finally(() => this.pulls.delete(a.ref))
      this.pulls.set(a.ref, p)
    }
    return p
  }

  private async pull(a: LargeArg): Promise<void> {
    this.store.admit(a.size)
    const peers = this.peers()
    const peer = peers && new PeerSource(peers)
    const { bytes, via } = await pullFromAny(a.ref, a.locations, { peer, relay: this.relay, self: this.selfId })
    this.transferStats[via === 'peer' ? 'peerBytes' : 'relayBytes'] += bytes.byteLength
    await this.keep(a.ref, bytes)
  }

  private async keep(id: string, bytes: Uint8Array): Promise<void> {
    await this.store.put(id, bytes)
    this.send({ type: 'objects-stored', objects: [{ objectId: id as never, size: bytes.byteLength }] })
  }

  /** A chunk from the coordinator: of one this node asked for, or of an object it places here. */
  onChunk(id: string, offset: number, total: number, data: Uint8Array): void {
    if (this.relay.onChunk(id, offset, total, data)) return
    let a = this.placements.get(id)
    if (!a || offset === 0) this.placements.set(id, (a = new Assembly(total)))
    try {
      if (!a.add(offset, data, total)) return
    } catch (e) {
      this.placements.delete(id)
      return console.warn(`[shoal node] a chunk of ${id} was refused: ${(e as Error).message}`)
    }
    this.placements.delete(id)
    void this.keep(id, a.bytes).catch((e: Error) => console.warn(`[shoal node] cannot store ${id}: ${e.message}`))
  }

  /** The coordinator answered a fetch with an error (the object is lost). */
  onObjects(updates: ObjectUpdate[]): void {
    for (const u of updates) if (u.error) this.relay.onFailed(u.objectId, (u.error as WireError).message)
  }

  /** Pulls these objects here and reports them stored (a leaving node's, whose holder the coordinator replaces). */
  copyHere(objects: LargeArg[]): void {
    for (const a of objects) {
      if (this.store.has(a.ref)) {
        this.send({ type: 'objects-stored', objects: [{ objectId: a.ref as never, size: a.size }] })
        continue
      }
      void this.ensureLocal(a).catch((e: Error) => console.warn(`[shoal node] could not copy ${a.ref.slice(0, 12)} here: ${e.message}`))
    }
  }

  /** The node left the cluster: pulls under way fail. */
  close(why: string): void {
    this.relay.close(why)
  }

  /** Sends an object's bytes to the coordinator in chunks, pausing while the socket's buffer is full. */
  async upload(id: string): Promise<void> {
    let bytes: Uint8Array | undefined
    try {
      bytes = await this.store.read(id)
    } catch (e) {
      return this.send({ type: 'upload-failed', objectId: id as never, reason: (e as Error).message })
    }
    if (!bytes) return this.send({ type: 'upload-failed', objectId: id as never, reason: 'not in this node\u2019s store' })
    const total = bytes.byteLength
    await sendInChunks(
      bytes,
      OBJECT_CHUNK_BYTES,
      (offset, data) => this.send({ type: 'object-chunk', objectId: id as never, offset, total, data }),
      this.socketBuffered,
    )
  }

  async delete(ids: string[]): Promise<void> {
    for (const id of ids) await this.store.delete(id)
  }
}
