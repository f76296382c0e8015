import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { encodeFrame } from '../codec.ts'
import { FRAME_HEADER_BYTES, type PeerMessage, type PeerWireMessage, writeFrameHeader } from '../protocol/index.ts'
import { type DirectLinks, PeerLinks } from './peer-links.ts'

/**
 * Two participants joined by a fake data channel that holds frames until `deliver()` (so a test can close the link
 * with frames in flight, as a real channel loses them), and by a relay that never loses anything.
 */
class Wire {
  up = true
  inFlight: { from: string; to: string; bytes: Uint8Array }[] = []
  relayed: { from: string; to: string; msgs: PeerWireMessage[] }[] = []
  readonly ends = new Map<string, End>()
  readonly links = new Map<string, PeerLinks>()
  readonly got = new Map<string, { from: string; id: string; route: string }[]>()

  join(address: string): PeerLinks {
    const end = new End(address, this)
    this.ends.set(address, end)
    const links = new PeerLinks(address, end, (to, msgs) => this.relayed.push({ from: address, to, msgs }))
    links.onMessage = (from, raw, route) => this.got.get(address)?.push({ from, id: (raw as { taskId: string }).taskId, route })
    this.got.set(address, [])
    this.links.set(address, links)
    return links
  }

  /** Frames on the channel arrive (in order). */
  deliver(): void {
    for (const f of this.inFlight.splice(0)) this.ends.get(f.to)?.onFrame(f.from, f.bytes)
  }

  /** Relayed messages arrive. */
  relay(): void {
    for (const r of this.relayed.splice(0)) this.links.get(r.to)?.receiveRelayed(r.from, r.msgs)
  }

  /** The channel closes: what is on it is lost; both ends hear of it. */
  close(): void {
    this.up = false
    this.inFlight = []
    for (const e of this.ends.values()) for (const other of this.ends.keys()) if (other !== e.address) e.onLinkDown(other)
  }

  ids(address: string): string[] {
    return (this.got.get(address) ?? []).map((g) => g.id)
  }
}

class End implements DirectLinks {
  onFrame: (from: string, frame: Uint8Array) => void = () => {}
  onLinkDown: (peer: string) => void = () => {}
  constructor(
    readonly address: string,
    private readonly wire: Wire,
  ) {}
  isOpen(): boolean {
    return this.wire.up
  }
  sendFrame(peer: string, header: Uint8Array, body: Uint8Array): Promise<void> {
    if (!this.wire.up) return Promise.reject(new Error('no link'))
    const bytes = new Uint8Array(header.byteLength + body.byteLength)
    bytes.set(header)
    bytes.set(body, header.byteLength)
    this.wire.inFlight.push({ from: this.address, to: peer, bytes })
    return Promise.resolve()
  }
}

const msg = (i: number): PeerMessage => ({
  type: 'cancel',
  leaseId: 'a'.repeat(32),
  taskId: i.toString(16).padStart(48, '0'),
  force: false,
})
const idOf = (i: number) => i.toString(16).padStart(48, '0')
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => from + k)
/** Lets PeerLinks' turn batches go out. */
const turn = () => new Promise((r) => setTimeout(r, 0))

describe('PeerLinks: every message arrives once, even when its direct link closes with it in flight', () => {
  let wire: Wire
  let a: PeerLinks
  let b: PeerLinks
  beforeEach(() => {
    wire = new Wire()
    a = wire.join('owner')
    b = wire.join('node')
  })
  afterEach(() => {
    a.close()
    b.close()
  })

  it('sends directly, in order, and the acknowledgements let go of what was kept', async () => {
    for (const i of range(1, 51)) a.send('node', msg(i))
    await turn()
    wire.deliver()
    expect(wire.ids('node')).toEqual(range(1, 51).map(idOf))
    expect(wire.got.get('node')?.every((g) => g.route === 'direct')).toBe(true)
    // The node has nothing to send back: it acknowledges in a frame of its own.
    await new Promise((r) => setTimeout(r, 40))
    wire.deliver()
    wire.close() // nothing is waiting: nothing is sent again
    await turn()
    expect(a.stats.resent).toBe(0)
    expect(wire.relayed).toEqual([])
  })

  it('sends again through the relay what a closed link lost; the receiver drops what it already had', async () => {
    for (const i of range(1, 11)) a.send('node', msg(i))
    await turn()
    wire.deliver() // 1..10 arrived, not yet acknowledged
    for (const i of range(11, 21)) a.send('node', msg(i))
    await turn() // 11..20 in flight
    wire.close()
    await turn()
    expect(a.stats.resent).toBe(20)
    wire.relay()
    expect(wire.ids('node')).toEqual(range(1, 21).map(idOf))
    expect(
      wire.got
        .get('node')
        ?.slice(10)
        .every((g) => g.route === 'relay'),
    ).toBe(true)
  })

  it('acknowledgements ride on frames going back, and only what is unacknowledged is sent again', async () => {
    for (const i of range(1, 6)) a.send('node', msg(i))
    await turn()
    wire.deliver()
    b.send('owner', msg(100)) // carries the acknowledgement of 1..5
    await turn()
    wire.deliver()
    a.send('node', msg(6))
    await turn()
    wire.close()
    await turn()
    expect(a.stats.resent).toBe(1)
    wire.relay()
    expect(wire.ids('node')).toEqual(range(1, 7).map(idOf))
    expect(wire.ids('owner')).toEqual([idOf(100)])
  })

  it('a link that fails to open sends through the relay and marks the peer unreachable', async () => {
    wire.up = false
    a.send('node', msg(1))
    await turn()
    await turn()
    expect(a.routeTo('node')).toBe('relay')
    wire.relay()
    expect(wire.ids('node')).toEqual([idOf(1)])
  })

  it('drops what is not a frame of ours, and a resent message it cannot read', async () => {
    wire.ends.get('node')?.onFrame('owner', new Uint8Array([1, 2, 3]))
    const header = writeFrameHeader({ stream: 7, base: 1, first: 1, ackStream: 0, ack: 0 })
    const bad = new Uint8Array(FRAME_HEADER_BYTES + 2)
    bad.set(header)
    bad.set([0xc1, 0xc1], FRAME_HEADER_BYTES) // 0xc1 is never valid msgpack
    wire.ends.get('node')?.onFrame('owner', bad)
    b.receiveRelayed('owner', [{ type: 'resent', stream: 0, base: 1, seq: 1, msg: msg(1) }])
    expect(wire.ids('node')).toEqual([])
    // A frame whose numbers a receiver never heard of starts at its base.
    const good = new Uint8Array([...header, ...encodeFrame([msg(1), msg(2)])])
    wire.ends.get('node')?.onFrame('owner', good)
    wire.ends.get('node')?.onFrame('owner', good)
    expect(wire.ids('node')).toEqual([idOf(1), idOf(2)])
  })

  it('a link gone silent without closing: what waited 5 s for its acknowledgement goes through the relay', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'queueMicrotask', 'performance'] })
    try {
      a.send('node', msg(1))
      await vi.advanceTimersByTimeAsync(1)
      wire.inFlight = [] // lost in silence
      await vi.advanceTimersByTimeAsync(4000)
      expect(a.stats.resent).toBe(0)
      await vi.advanceTimersByTimeAsync(2500)
      expect(a.stats.resent).toBe(1)
      wire.relay()
      expect(wire.ids('node')).toEqual([idOf(1)])
    } finally {
      vi.useRealTimers()
    }
  })
})
