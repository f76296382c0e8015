import { BoundedMap } from '../bounded.ts'
import { Deque } from '../deque.ts'

/** Peers remembered each way; past this the least recently started is forgotten (see Inbound for what that risks). */
const MAX_PEERS = 4096
/** Streams remembered per sender: a sender starts a new one only when it forgot the receiver (MAX_PEERS). */
const STREAMS_PER_SENDER = 4
/** Numbers received out of order kept per stream; past this the lowest gap is given up on (see Inbound.accept). */
const MAX_GAPS = 65_536

const newStreamId = (): number => {
  const [x] = crypto.getRandomValues(new Uint32Array(1))
  return (x as number) || 1
}

interface Sent<M> {
  seq: number
  msg: M
  at: number
}
interface OutboundPeer<M> {
  stream: number
  next: number
  /** Every message up to this one was acknowledged. */
  acked: number
  unacked: Deque<Sent<M>>
}

/**
 * The sending half of reliable direct links: numbers the messages sent to each peer on its stream and keeps each
 * until the peer acknowledges it, so what a closed link lost can be sent again another way. One home of this rule;
 * the wire is FrameHeader (protocol/peer.ts).
 */
export class Outbound<M> {
  private readonly peers = new Map<string, OutboundPeer<M>>()

  /** Numbers `msgs` (about to go to `peer` in one frame) and keeps them until acknowledged. */
  stamp(peer: string, msgs: readonly M[], now: number): { stream: number; base: number; first: number } {
    const p = this.peer(peer)
    const first = p.next
    for (const msg of msgs) p.unacked.push({ seq: p.next++, msg, at: now })
    return { stream: p.stream, base: this.base(p), first }
  }

  /** Where `peer`'s stream stands (for a frame that only acknowledges). */
  position(peer: string): { stream: number; base: number } {
    const p = this.peer(peer)
    return { stream: p.stream, base: this.base(p) }
  }

  /** `peer` has every message of `stream` up to `upTo`: they are let go. */
  acked(peer: string, stream: number, upTo: number): void {
    const p = this.peers.get(peer)
    if (!p || p.stream !== stream) return
    p.acked = Math.max(p.acked, Math.min(upTo, p.next - 1))
    while (p.unacked.length && (p.unacked.peek() as Sent<M>).seq <= upTo) p.unacked.shift()
  }

  /** Takes out what `peer` has not acknowledged (to send again another way), oldest first. */
  takeUnacked(peer: string): { stream: number; base: number; sent: Sent<M>[] } | undefined {
    const p = this.peers.get(peer)
    if (!p?.unacked.length) return undefined
    const base = this.base(p)
    const sent: Sent<M>[] = []
    while (p.unacked.length) sent.push(p.unacked.shift() as Sent<M>)
    return { stream: p.stream, base, sent }
  }

  /** Peers with a message sent before `before` and still not acknowledged. */
  overdue(before: number): string[] {
    const out: string[] = []
    for (const [peer, p] of this.peers) if (p.unacked.length && (p.unacked.peek() as Sent<M>).at < before) out.push(peer)
    return out
  }

  /** Whether anything sent is still waiting for its acknowledgement. */
  get waiting(): boolean {
    for (const p of this.peers.values()) if (p.unacked.length) return true
    return false
  }

  /**
   * The lowest message the peer may still be missing: the first not acknowledged, whether still held or taken out to
   * go again by the relay (a frame that reached the peer first must not make it drop those as seen).
   */
  private base(p: OutboundPeer<M>): number {
    return p.acked + 1
  }

  private peer(peer: string): OutboundPeer<M> {
    let p = this.peers.get(peer)
    if (p) return p
    if (this.peers.size >= MAX_PEERS) {
      // Forget the oldest peer with nothing waiting; a new stream is started if it is written to again.
      for (const [k, q] of this.peers) {
        if (q.unacked.length) continue
        this.peers.delete(k)
        break
      }
    }
    p = { stream: newStreamId(), next: 1, acked: 0, unacked: new Deque() }
    this.peers.set(peer, p)
    return p
  }
}

interface InboundStream {
  /** Every number up to this one arrived. */
  upTo: number
  /** Numbers above `upTo` that arrived (out of order: some were lost on a link and are coming again). */
  above: Set<number>
}

/**
 * The receiving half of reliable direct links: says whether a numbered message is new (it runs) or arrived already
 * (it is dropped), and what to acknowledge to each sender. Bounded: a sender forgotten (past MAX_PEERS), or a gap
 * given up on (past MAX_GAPS), could let one resent message run twice; both need thousands of peers or of lost
 * messages at once.
 */
/** A sender's streams, and the one it writes on now (its newest: the one to acknowledge). */
interface InboundSender {
  streams: Map<number, InboundStream>
  newest: number
}

export class Inbound {
  /** A sender forgotten is owed no acknowledgement either (so `due` is bounded with it). */
  private readonly senders = new BoundedMap<string, InboundSender>(MAX_PEERS, (peer) => this.due.delete(peer))
  private readonly due = new Set<string>()

  /** Whether message `seq` of `from`'s `stream` is new; records it. `base` is where a stream unheard of starts. */
  accept(from: string, stream: number, base: number, seq: number): boolean {
    const s = this.stream(from, stream, base)
    if (seq <= s.upTo || s.above.has(seq)) return false
    if (seq === s.upTo + 1) {
      s.upTo = seq
      while (s.above.delete(s.upTo + 1)) s.upTo++
    } else {
      s.above.add(seq)
      if (s.above.size > MAX_GAPS) {
        s.upTo = Math.min(...s.above) - 1
        while (s.above.delete(s.upTo + 1)) s.upTo++
      }
    }
    this.due.add(from)
    return true
  }

  /** What to acknowledge to `peer` now (the newest of its streams), if anything arrived since the last time. */
  takeAck(peer: string): { ackStream: number; ack: number } | undefined {
    if (!this.due.delete(peer)) return undefined
    const sender = this.senders.get(peer)
    const s = sender?.streams.get(sender.newest)
    return sender && s ? { ackStream: sender.newest, ack: s.upTo } : undefined
  }

  /** Senders owed an acknowledgement. */
  get owed(): string[] {
    return [...this.due]
  }

  private stream(from: string, stream: number, base: number): InboundStream {
    let sender = this.senders.get(from)
    if (!sender) {
      sender = { streams: new BoundedMap(STREAMS_PER_SENDER), newest: stream }
      this.senders.set(from, sender)
    }
    let s = sender.streams.get(stream)
    if (!s) {
      s = { upTo: base - 1, above: new Set() }
      sender.streams.set(stream, s)
      sender.newest = stream
    }
    return s
  }
}
