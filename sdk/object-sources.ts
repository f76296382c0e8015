import { Assembly } from './chunks.ts'
import { ObjectLostError } from './errors.ts'
import type { ClientMessage } from './protocol/index.ts'
import type { PeerMesh } from './transport/peer-mesh.ts'

/**
 * Where the bytes of a large object can come from when they are not here (Ray's object manager pulls): a holder over
 * a WebRTC data channel, or the coordinator's relay. Both keep one contract, tested once against each
 * (object-sources.test.ts): the whole bytes of the object asked for, or a rejection that says why — never a hang
 * (a holder that dies mid-way fails the pull, unless what it had already queued still arrives whole), never another
 * object's bytes.
 */
export interface ObjectSource {
  readonly kind: 'peer' | 'relay'
  /** The bytes of `objectId` from `holder` (a peer source needs one; the relay picks holders itself). */
  pull(objectId: string, holder?: string): Promise<Uint8Array>
}

/** Straight from a holder, over the peer mesh's data channel to it. */
export class PeerSource implements ObjectSource {
  readonly kind = 'peer'
  constructor(private readonly peers: PeerMesh) {}

  pull(objectId: string, holder?: string): Promise<Uint8Array> {
    if (!holder) return Promise.reject(new Error(`a pull of ${objectId} from a peer needs a holder`))
    return this.peers.fetch(holder, objectId)
  }
}

interface RelayPull {
  assembly: Assembly | undefined
  done: Promise<Uint8Array>
  resolve(bytes: Uint8Array): void
  reject(e: Error): void
}

/**
 * Through the coordinator (`fetch-objects`): it has a holder upload the object and passes the chunks on; when that
 * holder fails it starts over from another one at offset 0. Concurrent pulls of one object share one transfer. The
 * connection hands this source the chunks (`onChunk`) and refusals (`onFailed`) it receives.
 */
export class RelaySource implements ObjectSource {
  readonly kind = 'relay'
  private readonly pulls = new Map<string, RelayPull>()

  constructor(private readonly send: (msg: ClientMessage) => void) {}

  pull(objectId: string): Promise<Uint8Array> {
    const pending = this.pulls.get(objectId)
    if (pending) return pending.done
    let resolve!: (bytes: Uint8Array) => void
    let reject!: (e: Error) => void
    const done = new Promise<Uint8Array>((res, rej) => {
      resolve = res
      reject = rej
    })
    this.pulls.set(objectId, { assembly: undefined, done, resolve, reject })
    try {
      this.send({ type: 'fetch-objects', objectIds: [objectId as never] })
    } catch (e) {
      this.settle(objectId, e as Error)
    }
    return done
  }

  /** A chunk the coordinator relayed: false if this source is not pulling that object (the caller's, then). */
  onChunk(objectId: string, offset: number, total: number, data: Uint8Array): boolean {
    const p = this.pulls.get(objectId)
    if (!p) return false
    // A chunk at offset 0 starts the object over (the relay failed over to another holder).
    if (!p.assembly || offset === 0 || p.assembly.total !== total) p.assembly = new Assembly(total)
    try {
      if (p.assembly.add(offset, data, total)) this.settle(objectId, p.assembly.bytes)
    } catch (e) {
      this.settle(objectId, e as Error)
    }
    return true
  }

  /** The coordinator could not relay the object (no holder could send it): its pull fails with `why`. */
  onFailed(objectId: string, why: string): void {
    if (this.pulls.has(objectId)) this.settle(objectId, new Error(why))
  }

  /** The connection is gone: every pull fails. */
  close(why: string): void {
    for (const id of [...this.pulls.keys()]) this.settle(id, new Error(why))
  }

  private settle(objectId: string, outcome: Uint8Array | Error): void {
    const p = this.pulls.get(objectId)
    if (!p) return
    this.pulls.delete(objectId)
    if (outcome instanceof Error) p.reject(outcome)
    else p.resolve(outcome)
  }
}

/**
 * Pulls an object from the first way that can send it: from each holder over `peer` (where there is a peer mesh;
 * `self` is skipped), then through `relay`. Fails with ObjectLostError giving every reason if none could.
 */
export async function pullFromAny(
  objectId: string,
  holders: readonly string[],
  ways: { peer?: ObjectSource | undefined; relay: ObjectSource; self?: string },
): Promise<{ bytes: Uint8Array; via: ObjectSource['kind'] }> {
  const reasons: string[] = []
  for (const holder of ways.peer ? holders : []) {
    if (holder === ways.self) continue
    try {
      return { bytes: await (ways.peer as ObjectSource).pull(objectId, holder), via: 'peer' }
    } catch (e) {
      reasons.push((e as Error).message)
    }
  }
  try {
    return { bytes: await ways.relay.pull(objectId), via: 'relay' }
  } catch (e) {
    reasons.push((e as Error).message)
  }
  // The reasons may be ObjectLostErrors' own messages: say the object's name once.
  const why = reasons.map((r) => r.replace(/^Object [0-9a-f]+ is lost: /, '')).join('; ')
  throw new ObjectLostError(objectId, why)
}
