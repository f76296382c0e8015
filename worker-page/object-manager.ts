import { Assembly, sendInChunks } from '../sdk/chunks.ts'
import { ObjectLostError, type WireError } from '../sdk/errors.ts'
import { type ClientMessage, type LargeArg, OBJECT_CHUNK_BYTES, type ObjectUpdate } from '../sdk/protocol/index.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import type { NodeObjects } from './node.ts'
import type { PlasmaStore } from './object-store/plasma-store.ts'

/**
 * The node's object manager: before a task runs, every large argument is made local (pulled from a peer over
 * WebRTC, else through the coordinator), restored if spilled, and pinned. Concurrent pulls of one object share one
 * transfer. It also serves uploads the coordinator asks for and stores objects the coordinator places here.
 */
export class ObjectManager implements NodeObjects {
  private pulls = new Map<string, Promise<void>>()
  private assemblies = new Map<string, Assembly>()
  private fetches = new Map<string, { resolve(b: Uint8Array): void; reject(e: Error): void }>()

  constructor(
    private readonly store: PlasmaStore,
    private readonly selfId: string,
    private readonly peers: () => PeerMesh | undefined,
    private readonly send: (msg: ClientMessage) => void,
    private readonly socketBuffered: () => number,
  ) {}

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
    const reasons: string[] = []
    const peers = this.peers()
    for (const from of a.locations) {
      if (from === this.selfId || !peers) continue
      try {
        const bytes = await peers.fetch(from, a.ref)
        await this.keep(a.ref, bytes)
        return
      } catch (e) {
        reasons.push((e as Error).message)
      }
    }
    // No peer could send it (or only the coordinator holds it): the coordinator relays it.
    try {
      const bytes = await new Promise<Uint8Array>((resolve, reject) => {
        this.fetches.set(a.ref, { resolve, reject })
        this.send({ type: 'fetch-objects', objectIds: [a.ref] })
      })
      await this.keep(a.ref, bytes)
    } catch (e) {
      reasons.push((e as Error).message)
      // The reasons may be ObjectLostErrors' own messages: say the object's name once.
      const why = reasons.map((r) => r.replace(/^Object [0-9a-f]+ is lost: /, '')).join('; ')
      throw new ObjectLostError(a.ref, why)
    }
  }

  private async keep(id: string, bytes: Uint8Array): Promise<void> {
    await this.store.put(id, bytes)
    this.send({ type: 'objects-stored', objects: [{ objectId: id as never, size: bytes.byteLength }] })
  }

  /** A chunk from the coordinator: an object it places here, or one this node asked for. */
  onChunk(id: string, offset: number, total: number, data: Uint8Array): void {
    let a = this.assemblies.get(id)
    // A chunk at offset 0 starts the object over (the relay failed over to another holder).
    if (!a || offset === 0) this.assemblies.set(id, (a = new Assembly(total)))
    if (!a.add(offset, data, total)) return
    this.assemblies.delete(id)
    const waiting = this.fetches.get(id)
    this.fetches.delete(id)
    if (waiting) waiting.resolve(a.bytes)
    else void this.keep(id, a.bytes).catch((e: Error) => console.warn(`[shoal node] cannot store ${id}: ${e.message}`))
  }

  /** The coordinator answered a fetch with an error (the object is lost). */
  onObjects(updates: ObjectUpdate[]): void {
    for (const u of updates) {
      const waiting = this.fetches.get(u.objectId)
      if (!waiting || !u.error) continue
      this.fetches.delete(u.objectId)
      waiting.reject(new Error((u.error as WireError).message))
    }
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
