import { decodeFrames, encodeFrames } from '../codec.ts'
import {
  FRAME_HEADER_BYTES,
  type PeerMessage,
  type PeerWireMessage,
  parseResent,
  readFrameHeader,
  sizeOfPeerMessage,
  writeFrameHeader,
} from '../protocol/index.ts'
import { TurnBatch } from '../turn-batch.ts'
import { Inbound, Outbound } from './peer-streams.ts'

/** How a peer message travels: over a direct data channel, or through the coordinator. */
export type Route = 'direct' | 'relay'

/** A peer that no link could open to is reached through the relay for this long before a link is tried again. */
const UNREACHABLE_MS = 30_000
/** A frame of peer messages is cut under this (a data channel message is 256 KiB; bigger frames go in fragments). */
const PEER_FRAME_BYTES = 1024 * 1024
/** A receiver with nothing to send back acknowledges what it got after this long (else it rides on its next frame). */
const ACK_DELAY_MS = 20
/**
 * A message unacknowledged this long is sent again through the coordinator, as if its link had closed: a link whose
 * other end went silent without closing (its browser froze) is not waited on until ICE gives up on it.
 */
const RESEND_AFTER_MS = 5000
const EMPTY = new Uint8Array(0)

/** What PeerLinks needs of the data plane: the PeerJS mesh (peer-mesh.ts), or a fake in tests. */
export interface DirectLinks {
  /** A frame arrived from `from` (the other end of an open link). */
  onFrame: (from: string, frame: Uint8Array) => void
  /** The link to `peer` closed: what was sent on it may not have arrived. */
  onLinkDown: (peer: string) => void
  isOpen(peer: string): boolean
  /** Sends `header` then `body` as one frame, opening the link if needed; rejects if none can open. */
  sendFrame(peer: string, header: Uint8Array, body: Uint8Array): Promise<void>
}

/**
 * The peer wire's router: sends peer messages to an address directly (the peer mesh's data channels) or through the
 * coordinator (`peer-send`), and hands what arrives either way to `onMessage`. Messages to one peer in one turn go
 * as one frame. A peer no link opens to (no route, no TURN) is reached through the relay: slower, never broken.
 *
 * Addresses with a `/` (a task's connection on a node) are reached through the relay, which knows the node that
 * carries them.
 *
 * Nothing is lost when a link closes with messages in flight (an evicted link, a channel error): each direct message
 * is kept until acknowledged, then sent again through the relay, and the receiver drops what it already had (see
 * FrameHeader). Handlers see every message once.
 */
export class PeerLinks {
  private readonly batches = new Map<string, TurnBatch<PeerWireMessage>>()
  private readonly unreachable = new Map<string, number>()
  private readonly outbound = new Outbound<PeerMessage>()
  private readonly inbound = new Inbound()
  private ackTimer: ReturnType<typeof setTimeout> | undefined
  private resendTimer: ReturnType<typeof setTimeout> | undefined
  /** A peer message arrived (not yet validated: the caller parses it). */
  onMessage: (from: string, raw: unknown, route: Route) => void = () => {}
  /** Messages sent each way, and how many of the direct ones were sent again through the relay (diagnostics). */
  readonly stats = { direct: 0, relay: 0, resent: 0 }
  private closed = false

  constructor(
    /** This participant's own address. */
    readonly address: string,
    private direct: DirectLinks | undefined,
    private readonly relay: (to: string, msgs: PeerWireMessage[]) => void,
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
  attach(direct: DirectLinks): void {
    this.direct = direct
    direct.onFrame = (from, frame) => this.receiveDirect(from, frame)
    direct.onLinkDown = (peer) => this.resend(peer)
  }

  private receiveDirect(from: string, frame: Uint8Array): void {
    const h = readFrameHeader(frame)
    if (!h) return // not a frame of ours: dropped
    if (h.ack) this.outbound.acked(from, h.ackStream, h.ack)
    if (frame.byteLength === FRAME_HEADER_BYTES) return
    let msgs: unknown[]
    try {
      msgs = decodeFrames(frame.subarray(FRAME_HEADER_BYTES))
    } catch {
      return
    }
    for (let i = 0; i < msgs.length; i++)
      if (this.inbound.accept(from, h.stream, h.base, h.first + i)) this.onMessage(from, msgs[i], 'direct')
    this.ackSoon()
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
  send(to: string, msg: PeerWireMessage, route: Route = this.routeTo(to)): void {
    if (this.closed) return
    const key = `${route === 'relay' ? 'r' : 'd'}${to}`
    let batch = this.batches.get(key)
    if (!batch) {
      // Through the coordinator, a turn's messages go in parts under its frame limit (a node's many results, a
      // thousand pushes); directly, the peer mesh fragments big frames itself.
      const budget =
        route === 'relay' ? { maxBytes: this.relayBudget, sizeOf: sizeOfPeerMessage, until: this.until } : { until: this.until }
      batch = new TurnBatch<PeerWireMessage>((msgs) => {
        if (this.batches.get(key) === batch) this.batches.delete(key)
        this.deliver(to, route, msgs)
      }, budget)
      this.batches.set(key, batch)
    }
    batch.push(msg)
  }

  /** Messages relayed to us by the coordinator. */
  receiveRelayed(from: string, msgs: readonly unknown[]): void {
    for (const m of msgs) {
      const r = parseResent(m)
      if (!r) this.onMessage(from, m, 'relay')
      else if ('resent' in r && this.inbound.accept(from, r.resent.stream, r.resent.base, r.resent.seq))
        this.onMessage(from, r.resent.msg, 'relay')
    }
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
    clearTimeout(this.ackTimer)
    clearTimeout(this.resendTimer)
  }

  private deliver(to: string, route: Route, msgs: PeerWireMessage[]): void {
    if (this.closed) return
    if (route === 'relay' || !this.direct) {
      this.stats.relay += msgs.length
      return this.relay(to, msgs)
    }
    const direct = this.direct
    encodeFrames(
      msgs as PeerMessage[], // only the relay carries `resent`
      (frame, carried) => {
        const { stream, base, first } = this.outbound.stamp(to, carried, performance.now())
        const header = writeFrameHeader({ stream, base, first, ...(this.inbound.takeAck(to) ?? { ackStream: 0, ack: 0 }) })
        this.resendSoon()
        // sendFrame copies nothing until the link is open: the frame's bytes must outlive the encoder's buffer.
        const own = direct.isOpen(to) ? frame : frame.slice()
        direct.sendFrame(to, header, own).then(
          () => {
            this.stats.direct += carried.length
          },
          () => {
            // No link could open: this peer is reached through the coordinator from now on.
            this.unreachable.set(to, Date.now() + UNREACHABLE_MS)
            this.resend(to)
          },
        )
      },
      PEER_FRAME_BYTES,
      (m) => this.send(to, m, 'relay'),
    )
  }

  /** Sends through the relay, numbered, what `peer` has not acknowledged: the receiver runs what it did not have. */
  private resend(peer: string): void {
    const lost = this.outbound.takeUnacked(peer)
    if (!lost || this.closed) return
    this.stats.resent += lost.sent.length
    for (const { seq, msg } of lost.sent) this.send(peer, { type: 'resent', stream: lost.stream, base: lost.base, seq, msg }, 'relay')
  }

  /** Acknowledges, in a frame of their own, what arrived from peers nothing was sent back to meanwhile. */
  private ackSoon(): void {
    if (this.ackTimer || this.closed) return
    this.ackTimer = setTimeout(() => {
      this.ackTimer = undefined
      const direct = this.direct
      if (!direct || this.closed) return
      for (const peer of this.inbound.owed) {
        if (!direct.isOpen(peer)) continue // acknowledged on the next frame; or, the link being down, resent and dropped
        const ack = this.inbound.takeAck(peer)
        if (ack) direct.sendFrame(peer, writeFrameHeader({ ...this.outbound.position(peer), first: 0, ...ack }), EMPTY).catch(() => {})
      }
    }, ACK_DELAY_MS)
    unref(this.ackTimer)
  }

  /** While anything waits for its acknowledgement, checks now and then for what waited too long. */
  private resendSoon(): void {
    if (this.resendTimer || this.closed) return
    this.resendTimer = setTimeout(() => {
      this.resendTimer = undefined
      for (const peer of this.outbound.overdue(performance.now() - RESEND_AFTER_MS)) this.resend(peer)
      if (this.outbound.waiting) this.resendSoon()
    }, RESEND_AFTER_MS / 5)
    unref(this.resendTimer)
  }
}

/** A Node driver's process may exit while a link timer is pending. */
const unref = (t: ReturnType<typeof setTimeout>): void => {
  ;(t as { unref?: () => void }).unref?.()
}
