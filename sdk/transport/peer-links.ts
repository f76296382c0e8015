import { decodeFrames, encodeFrames } from '../codec.ts'
import { type PeerMessage, sizeOfPeerMessage } from '../protocol/index.ts'
import { TurnBatch } from '../turn-batch.ts'
import type { PeerMesh } from './peer-mesh.ts'

/** How a peer message travels: over a direct data channel, or through the coordinator. */
export type Route = 'direct' | 'relay'

/** A peer that no link could open to is reached through the relay for this long before a link is tried again. */
const UNREACHABLE_MS = 30_000
/** A frame of peer messages is cut under this (a data channel message is 256 KiB; bigger frames go in fragments). */
const PEER_FRAME_BYTES = 1024 * 1024

/**
 * The peer wire's router: sends peer messages to an address directly (the peer mesh's data channels) or through the
 * coordinator (`peer-send`), and hands what arrives either way to `onMessage`. Messages to one peer in one turn go
 * as one frame. A peer no link opens to (no route, no TURN) is reached through the relay: slower, never broken.
 *
 * Addresses with a `/` (a task's connection on a node) are reached through the relay, which knows the node that
 * carries them.
 */
export class PeerLinks {
  private readonly batches = new Map<string, TurnBatch<PeerMessage>>()
  private readonly unreachable = new Map<string, number>()
  /** A peer message arrived (not yet validated: the caller parses it). */
  onMessage: (from: string, raw: unknown, route: Route) => void = () => {}
  /** The direct link to a peer closed. */
  onLinkDown: (peer: string) => void = () => {}
  /** Messages sent each way (diagnostics). */
  readonly stats = { direct: 0, relay: 0 }
  private closed = false

  constructor(
    /** This participant's own address. */
    readonly address: string,
    private direct: PeerMesh | undefined,
    private readonly relay: (to: string, msgs: PeerMessage[]) => void,
    /** Send everything through the coordinator (tests of the relay path; a network that never lets links open). */
    private readonly relayOnly = false,
    /** Most bytes of peer messages in one relayed message (a share of the coordinator's frame limit). */
    private readonly relayBudget: () => number = () => Number.POSITIVE_INFINITY,
    /** When a batch to one peer goes: at the end of this turn, or after the event-loop tasks already queued. */
    private readonly until: 'turn' | 'queued-tasks' = 'turn',
  ) {
    if (direct) this.attach(direct)
  }

  /** Direct links from now on (a node page joins the peer mesh after it registered). */
  attach(direct: PeerMesh): void {
    this.direct = direct
    direct.onFrame = (from, frame) => {
      let msgs: unknown[]
      try {
        msgs = decodeFrames(frame)
      } catch {
        return // not a frame of ours: dropped
      }
      for (const m of msgs) this.onMessage(from, m, 'direct')
    }
    direct.onLinkDown = (peer) => this.onLinkDown(peer)
  }

  /** Which way a message to `to` goes now. */
  routeTo(to: string): Route {
    if (!this.direct || this.relayOnly || to.includes('/')) return 'relay'
    const until = this.unreachable.get(to)
    if (until !== undefined) {
      if (until > Date.now()) return 'relay'
      this.unreachable.delete(to)
    }
    return 'direct'
  }

  /** Queues a message for `to`, sent at the end of this turn with the others for it (`route` forces a way). */
  send(to: string, msg: PeerMessage, route: Route = this.routeTo(to)): void {
    if (this.closed) return
    const key = `${route === 'relay' ? 'r' : 'd'}${to}`
    let batch = this.batches.get(key)
    if (!batch) {
      // Through the coordinator, a turn's messages go in parts under its frame limit (a node's many results, a
      // thousand pushes); directly, the peer mesh fragments big frames itself.
      const budget =
        route === 'relay' ? { maxBytes: this.relayBudget, sizeOf: sizeOfPeerMessage, until: this.until } : { until: this.until }
      batch = new TurnBatch<PeerMessage>((msgs) => {
        if (this.batches.get(key) === batch) this.batches.delete(key)
        this.deliver(to, route, msgs)
      }, budget)
      this.batches.set(key, batch)
    }
    batch.push(msg)
  }

  /** Messages relayed to us by the coordinator. */
  receiveRelayed(from: string, msgs: readonly unknown[]): void {
    for (const m of msgs) this.onMessage(from, m, 'relay')
  }

  /** Sends what this turn queued now. */
  flush(): void {
    for (const b of [...this.batches.values()]) b.flush()
  }

  /** The connection is gone: what was queued is dropped, and nothing more is sent (a late fallback included). */
  close(): void {
    this.closed = true
    for (const b of this.batches.values()) b.clear()
    this.batches.clear()
  }

  private deliver(to: string, route: Route, msgs: PeerMessage[]): void {
    if (this.closed) return
    if (route === 'relay' || !this.direct) {
      this.stats.relay += msgs.length
      return this.relay(to, msgs)
    }
    const direct = this.direct
    encodeFrames(
      msgs,
      (frame, carried) => {
        // sendFrame copies nothing until the link is open: the frame's bytes must outlive the encoder's buffer.
        const own = direct.isOpen(to) ? frame : frame.slice()
        direct.sendFrame(to, own).then(
          () => {
            this.stats.direct += carried.length
          },
          () => {
            // No link could open: this peer is reached through the coordinator from now on (nothing was sent).
            this.unreachable.set(to, Date.now() + UNREACHABLE_MS)
            for (const m of carried) this.send(to, m, 'relay')
          },
        )
      },
      PEER_FRAME_BYTES,
      (m) => this.send(to, m, 'relay'),
    )
  }
}
