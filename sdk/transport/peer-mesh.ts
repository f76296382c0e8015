import DefaultPeer, { type DataConnection } from 'peerjs'
import { Assembly } from '../chunks.ts'
import {
  CHUNK_HEADER_BYTES,
  chunkBuffer,
  decodeBinary,
  decodePing,
  decodePull,
  encodeFragment,
  encodeMessages,
  encodePing,
  encodePull,
  FRAGMENT_HEADER_BYTES,
  type IceTransportPolicy,
  PEER_MESSAGE_MAX_BYTES,
  type RTCIceServerLike,
} from '../protocol/index.ts'
import { IceWatch } from './ice-watch.ts'
import type { DirectLinks } from './peer-links.ts'

/**
 * The PeerJS class. A bundler (Vite, the browser SDK) loads peerjs's ES build, whose default export is the class;
 * Node (a script run from source, e.g. under tsx) loads its CommonJS build, whose default import is the module
 * object: there the class is its `Peer`. Without this a Node driver silently fell back to the relay.
 */
const Peer = (DefaultPeer as unknown as { Peer?: typeof DefaultPeer }).Peer ?? DefaultPeer
type Peer = DefaultPeer

/** Chromium allows ~500 RTCPeerConnections per tab lifetime: keep a bounded pool of open ones and reuse them. */
const MAX_OPEN_CONNECTIONS = 32
/** Chromium closes a channel whose buffer reaches ~16 MiB: stay far below (docs/platform.md). */
const HIGH_WATER = 8 * 1024 * 1024
const LOW_WATER = 2 * 1024 * 1024
/**
 * A pull that makes no progress for this long fails (and the caller tries another holder). A peer whose browser
 * died keeps its channel "open" until ICE consent fails, tens of seconds later: without this a pull would hang.
 */
const STALL_MS = 5000
/** A link that has not opened after this long is given up on (no route between the peers): the relay is used. */
const CONNECT_TIMEOUT_MS = 5000

/** How this peer answers another asking for an object's bytes. */
export type ObjectSource = (objectId: string) => Promise<Uint8Array | undefined>

interface Incoming {
  assembly: Assembly
  lastProgress: number
  resolve(bytes: Uint8Array): void
  reject(e: Error): void
  peer: string
}

/** An open link and the frames waiting for its buffer to drain (sent in order). */
interface Link {
  conn: DataConnection
  backlog: Uint8Array<ArrayBuffer>[]
  draining: boolean
}

/**
 * This participant's place in the PeerJS mesh (the data plane): a node (peer id = node id) or a driver (a `d-…` id),
 * in a page or in Node (over node-datachannel, see node-webrtc.ts). Signaling goes through the coordinator's
 * `/peerjs`; STUN/TURN are what the coordinator's welcome says (none by default: PeerJS's public servers are never
 * used). Connections are reliable (PeerJS defaults to UNORDERED) and raw. Over them go
 * peer frames (the peer wire, in order per link) and pulls of large objects.
 */
export class PeerMesh implements DirectLinks {
  private peer: Peer | undefined
  private pool = new Map<string, Promise<DataConnection>>()
  private links = new Map<string, Link>()
  private waiters = new Map<string, (reply: string) => void>()
  private incoming = new Map<number, Incoming>()
  private pendingMeta = new Map<number, { resolve(size: number): void; reject(e: Error): void; peer: string; since: number }>()
  private fragments = new Map<string, Assembly>()
  private watchdog: ReturnType<typeof setInterval> | undefined
  private nextTransfer = 1
  private nextFragment = 1
  private stopped = false
  /** Answers peers' object requests (set by the node's object manager, or a browser driver's object transfer). */
  source: ObjectSource = async () => undefined
  /** A peer frame arrived from `from` (the other end of an open link). */
  onFrame: (from: string, frame: Uint8Array) => void = () => {}
  /** The link to `peer` closed: what was sent on it may not have arrived. */
  onLinkDown: (peer: string) => void = () => {}
  /**
   * Said once per participant, the first time ICE keeps a data channel from opening (its peers are then reached
   * through the coordinator's relay: slower, and the coordinator's bandwidth).
   */
  onWarning: (message: string) => void = (m) => console.warn(m)
  private warned = false

  constructor(
    readonly peerId: string,
    private readonly address: string,
    private readonly path: string,
    private readonly iceServers: RTCIceServerLike[],
    /** The ticket the coordinator's welcome gave for this id: the signaling server lets only it sign in as this id. */
    private readonly key = 'shoal',
    /** `relay`: every channel through TURN (the welcome's policy; a node page's is set before `start`). */
    public iceTransportPolicy: IceTransportPolicy = 'all',
  ) {}

  start(): Promise<void> {
    const url = new URL(this.address)
    const peer = new Peer(this.peerId, {
      host: url.hostname,
      port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      path: this.path,
      key: this.key,
      secure: url.protocol === 'https:',
      config: { iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy },
      debug: 0,
    })
    this.peer = peer
    peer.on('connection', (conn) => {
      this.watchIce(conn, () => conn.open)
      this.adopt(conn)
    })
    return new Promise((resolve, reject) => {
      peer.once('open', () => resolve())
      peer.once('error', (e) => reject(new Error(`PeerJS: ${e.type}: ${e.message}`)))
    })
  }

  /** An open connection to a peer, reusing the pooled one. Rejects if none opens within CONNECT_TIMEOUT_MS. */
  connect(peerId: string): Promise<DataConnection> {
    let c = this.pool.get(peerId)
    if (c) return c
    const peer = this.peer
    if (!peer || this.stopped) return Promise.reject(new Error('the peer mesh is not started'))
    c = new Promise<DataConnection>((resolve, reject) => {
      const conn = peer.connect(peerId, { reliable: true, serialization: 'raw' })
      const ice = this.watchIce(conn)
      const fail = (why: string) => {
        clearTimeout(timer)
        peer.off('error', onError)
        conn.close()
        const iceFailure = ice?.failure()
        if (iceFailure) this.warnOnce(peerId, iceFailure)
        reject(new Error(iceFailure ? `${why} (${iceFailure})` : why))
      }
      const timer = setTimeout(() => fail(`no link to ${peerId} opened within ${CONNECT_TIMEOUT_MS / 1000} s`), CONNECT_TIMEOUT_MS)
      const onError = (e: { type?: string; message?: string }) => {
        if (e.type === 'peer-unavailable' && e.message?.includes(peerId)) fail(`${peerId} is not in the peer mesh`)
      }
      peer.on('error', onError)
      conn.once('open', () => {
        clearTimeout(timer)
        peer.off('error', onError)
        this.adopt(conn)
        resolve(conn)
      })
      conn.once('error', (e) => fail(String((e as Error).message ?? e)))
    })
    c.catch(() => {
      if (this.pool.get(peerId) === c) this.pool.delete(peerId)
    })
    this.pool.set(peerId, c)
    this.evict()
    return c
  }

  /**
   * Watches ICE on a connection. An incoming one (`opened` given) that has not opened within CONNECT_TIMEOUT_MS
   * warns here; an outgoing one's caller asks the watch when it gives up.
   */
  private watchIce(conn: DataConnection, opened?: () => boolean): IceWatch | undefined {
    const pc = conn.peerConnection as unknown as ConstructorParameters<typeof IceWatch>[0] | undefined
    if (!pc || typeof pc.addEventListener !== 'function') return undefined
    const watch = new IceWatch(pc, this.iceTransportPolicy)
    if (opened)
      setTimeout(() => {
        const failure = !opened() && !this.stopped ? watch.failure() : undefined
        if (failure) this.warnOnce(conn.peer, failure)
      }, CONNECT_TIMEOUT_MS)
    return watch
  }

  private warnOnce(peerId: string, iceFailure: string): void {
    if (this.warned || this.stopped) return
    this.warned = true
    this.onWarning(
      `[shoal] no data channel to ${peerId} opened: ${iceFailure}. Peer messages and objects go through the coordinator's relay ` +
        "(slower, and on the coordinator's bandwidth): check the coordinator's --ice-server and --turn-secret. (Said once.)",
    )
  }

  /** Whether a link to this peer is open now (a frame sent to it goes out at once). */
  isOpen(peerId: string): boolean {
    return this.links.has(peerId)
  }

  /**
   * Sends one peer frame (`header` then `body`) to `peerId`, opening the link if needed; frames to one peer arrive in
   * the order sent. A frame over a data channel message's limit goes in fragments. Rejects if no link can open.
   */
  async sendFrame(peerId: string, header: Uint8Array, body: Uint8Array): Promise<void> {
    let link = this.links.get(peerId)
    if (!link) {
      await this.connect(peerId)
      link = this.links.get(peerId)
      if (!link) throw new Error(`the link to ${peerId} closed`)
    }
    this.touch(peerId)
    const max = this.maxMessage(link.conn)
    const length = header.byteLength + body.byteLength
    if (length + 1 <= max) return this.enqueue(link, encodeMessages(header, body))
    const frame = new Uint8Array(length)
    frame.set(header)
    frame.set(body, header.byteLength)
    const id = this.nextFragment++
    const room = max - FRAGMENT_HEADER_BYTES
    for (let offset = 0; offset < frame.byteLength; offset += room)
      this.enqueue(link, encodeFragment(id, frame.byteLength, offset, frame.subarray(offset, Math.min(frame.byteLength, offset + room))))
  }

  private maxMessage(conn: DataConnection): number {
    const sctp = (conn.peerConnection as { sctp?: { maxMessageSize?: number } | null } | undefined)?.sctp?.maxMessageSize
    return Math.min(PEER_MESSAGE_MAX_BYTES, typeof sctp === 'number' && sctp > 0 ? sctp : PEER_MESSAGE_MAX_BYTES)
  }

  /** Sends now while the channel's buffer has room; else keeps the message until it drains (order is kept). */
  private enqueue(link: Link, m: Uint8Array<ArrayBuffer>): void {
    const dc = link.conn.dataChannel
    if (!link.backlog.length && dc.bufferedAmount <= HIGH_WATER) {
      dc.send(m)
      return
    }
    link.backlog.push(m)
    if (link.draining) return
    link.draining = true
    dc.bufferedAmountLowThreshold = LOW_WATER
    const drain = () => {
      while (link.backlog.length && dc.readyState === 'open' && dc.bufferedAmount <= HIGH_WATER)
        dc.send(link.backlog.shift() as Uint8Array<ArrayBuffer>)
      if (link.backlog.length && dc.readyState === 'open') return
      link.draining = false
      link.backlog = dc.readyState === 'open' ? link.backlog : []
      dc.removeEventListener('bufferedamountlow', drain)
      dc.removeEventListener('close', drain)
    }
    dc.addEventListener('bufferedamountlow', drain)
    dc.addEventListener('close', drain)
  }

  /** Round trip a text message to another peer over the data channel: proves the data plane end to end. */
  async ping(peerId: string, text = 'hello'): Promise<string> {
    const conn = await this.connect(peerId)
    const nonce = Math.random().toString(36).slice(2)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(nonce)
        reject(new Error(`no answer from ${peerId} within ${STALL_MS / 1000} s`))
      }, STALL_MS)
      this.waiters.set(nonce, (reply) => {
        clearTimeout(timer)
        resolve(reply)
      })
      conn.dataChannel.send(encodePing({ kind: 'ping', nonce, text }))
    })
  }

  /**
   * Pulls an object's bytes from another peer over the data channel: one request, then binary chunks of at most
   * the channel's maxMessageSize. Rejects if the peer does not have it or the channel closes mid-way.
   */
  async fetch(peerId: string, objectId: string): Promise<Uint8Array> {
    const conn = await this.connect(peerId)
    const rid = this.nextTransfer++
    this.watchdog ??= setInterval(() => this.failStalled(), 1000)
    const size = await new Promise<number>((resolve, reject) => {
      this.pendingMeta.set(rid, { resolve, reject, peer: peerId, since: performance.now() })
      conn.dataChannel.send(encodePull({ t: 'get', rid, id: objectId }))
    })
    if (size === 0) return new Uint8Array(0)
    return new Promise<Uint8Array>((resolve, reject) => {
      this.incoming.set(rid, { assembly: new Assembly(size), lastProgress: performance.now(), resolve, reject, peer: peerId })
    })
  }

  private failStalled(): void {
    const now = performance.now()
    this.failWhere(
      (t) => now - t.since > STALL_MS,
      (peer) => `the transfer from ${peer} stalled for ${STALL_MS / 1000} s`,
    )
  }

  /** Fails the pending pulls that match: their callers try another holder. */
  private failWhere(match: (t: { peer: string; since: number }) => boolean, why: (peer: string) => string): void {
    for (const [rid, t] of this.incoming) {
      if (!match({ peer: t.peer, since: t.lastProgress })) continue
      this.incoming.delete(rid)
      t.reject(new Error(why(t.peer)))
    }
    for (const [rid, p] of this.pendingMeta) {
      if (!match(p)) continue
      this.pendingMeta.delete(rid)
      p.reject(new Error(why(p.peer)))
    }
  }

  private async serve(conn: DataConnection, rid: number, objectId: string): Promise<void> {
    const dc = conn.dataChannel
    let bytes: Uint8Array | undefined
    try {
      bytes = await this.source(objectId)
    } catch {
      bytes = undefined
    }
    if (!bytes) {
      dc.send(encodePull({ t: 'err', rid, message: `${this.peerId} does not hold ${objectId}` }))
      return
    }
    dc.send(encodePull({ t: 'meta', rid, size: bytes.byteLength }))
    const max = Math.min(256 * 1024, this.maxMessage(conn)) - CHUNK_HEADER_BYTES
    dc.bufferedAmountLowThreshold = LOW_WATER
    // send() copies synchronously, so one scratch buffer serves every chunk.
    const scratch = chunkBuffer(rid, max)
    for (let off = 0; off < bytes.byteLength; off += max) {
      if (dc.bufferedAmount > HIGH_WATER) {
        await new Promise<void>((resolve) => {
          const done = () => {
            dc.removeEventListener('bufferedamountlow', done)
            dc.removeEventListener('close', done)
            resolve()
          }
          dc.addEventListener('bufferedamountlow', done)
          dc.addEventListener('close', done)
        })
      }
      if (dc.readyState !== 'open') return
      const len = Math.min(max, bytes.byteLength - off)
      scratch.set(bytes.subarray(off, off + len), CHUNK_HEADER_BYTES)
      dc.send(len === max ? scratch : scratch.subarray(0, CHUNK_HEADER_BYTES + len))
    }
  }

  private onBinary(from: string, raw: Uint8Array): void {
    const m = decodeBinary(raw)
    if (!m) return
    if (m.kind === 'messages') return this.onFrame(from, m.frame)
    if (m.kind === 'chunk') {
      const t = this.incoming.get(m.transfer)
      if (!t || t.peer !== from) return
      t.lastProgress = performance.now()
      let done = false
      try {
        done = t.assembly.add(t.assembly.receivedBytes, m.data)
      } catch (e) {
        this.incoming.delete(m.transfer)
        return t.reject(e as Error)
      }
      if (done) {
        this.incoming.delete(m.transfer)
        t.resolve(t.assembly.bytes)
      }
      return
    }
    const key = `${from}:${m.id}`
    let a = this.fragments.get(key)
    if (!a) this.fragments.set(key, (a = new Assembly(m.total)))
    try {
      if (!a.add(m.offset, m.data, m.total)) return
    } catch {
      this.fragments.delete(key) // a malformed fragment: the frame is dropped, not written out of bounds
      return
    }
    this.fragments.delete(key)
    this.onFrame(from, a.bytes)
  }

  private onControl(conn: DataConnection, text: string): void {
    const m = decodePull(text)
    if (!m) return
    if (m.t === 'get') return void this.serve(conn, m.rid, m.id)
    const p = this.pendingMeta.get(m.rid)
    if (!p || p.peer !== conn.peer) return
    this.pendingMeta.delete(m.rid)
    if (m.t === 'meta') p.resolve(m.size)
    else p.reject(new Error(m.message))
  }

  /** A connection closed: every transfer on it fails now (the caller tries another location), never hangs. */
  private linkClosed(conn: DataConnection): void {
    const peer = conn.peer
    const link = this.links.get(peer)
    // Two peers that connect at once have two connections and each sends on one: the other closing loses nothing
    // here (pulls go on the one left; one that was on this fails at the stall watchdog, then tries another holder).
    if (link && link.conn !== conn && link.conn.dataChannel?.readyState === 'open') {
      this.pool.set(peer, Promise.resolve(link.conn))
      return
    }
    if (link?.conn === conn) this.links.delete(peer)
    this.pool.delete(peer)
    for (const key of this.fragments.keys()) if (key.startsWith(`${peer}:`)) this.fragments.delete(key)
    this.failWhere(
      (t) => t.peer === peer,
      (p) => `the connection to ${p} closed mid-transfer`,
    )
    this.onLinkDown(peer)
  }

  private adopt(conn: DataConnection): void {
    if (!this.pool.has(conn.peer)) this.pool.set(conn.peer, Promise.resolve(conn))
    if ((conn as { __shoal?: boolean }).__shoal) return
    ;(conn as { __shoal?: boolean }).__shoal = true
    const register = () => {
      const current = this.links.get(conn.peer)
      if (current?.conn.dataChannel?.readyState !== 'open') this.links.set(conn.peer, { conn, backlog: [], draining: false })
    }
    if (conn.open) register()
    else conn.once('open', register)
    conn.on('data', (data) => {
      if (data instanceof ArrayBuffer) return this.onBinary(conn.peer, new Uint8Array(data))
      if (ArrayBuffer.isView(data)) return this.onBinary(conn.peer, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
      if (typeof data !== 'string') return
      if (data.startsWith('{')) return this.onControl(conn, data)
      const ping = decodePing(data)
      if (ping?.kind === 'ping') conn.dataChannel.send(encodePing({ ...ping, kind: 'pong' }))
      else if (ping?.kind === 'pong') {
        this.waiters.get(ping.nonce)?.(ping.text)
        this.waiters.delete(ping.nonce)
      }
    })
    conn.on('close', () => this.linkClosed(conn))
    // An error ends the link on both sides: closed here, the other end sees it close and sends again what it lost.
    conn.on('error', () => {
      this.linkClosed(conn)
      conn.close()
    })
  }

  /** The pool is kept in order of last use: the link evicted is the one least recently sent on. */
  private touch(peerId: string): void {
    const c = this.pool.get(peerId)
    if (!c) return
    this.pool.delete(peerId)
    this.pool.set(peerId, c)
  }

  /** Closes the least recently used links past the limit (what was in flight on one is sent again: PeerLinks). */
  private evict(): void {
    while (this.pool.size > MAX_OPEN_CONNECTIONS) {
      const [oldest, c] = this.pool.entries().next().value as [string, Promise<DataConnection>]
      this.pool.delete(oldest)
      void c.then((conn) => conn.close()).catch(() => {})
    }
  }

  /** The peers this one has an open link to now (the node page's live view). */
  get openPeers(): string[] {
    return [...this.links.keys()]
  }

  /**
   * Links opened from now on follow `policy` (`relay`: through TURN only); open ones stay as they are (closeLinks
   * switches them now). The benchmark compares one transfer both ways between the same two pages with it.
   */
  setIceTransportPolicy(policy: IceTransportPolicy): void {
    this.iceTransportPolicy = policy
    // PeerJS reads its options' config for every new RTCPeerConnection.
    const config = (this.peer?.options as { config?: { iceTransportPolicy?: IceTransportPolicy } } | undefined)?.config
    if (config) config.iceTransportPolicy = policy
  }

  /**
   * Closes every open link at once, as a network drop would, dropping what is in flight on them (debugging, tests):
   * links open again on the next send. Returns how many closed.
   */
  closeLinks(): number {
    const conns = [...this.links.values()].map((l) => l.conn)
    for (const conn of conns) conn.close()
    return conns.length
  }

  stop(): void {
    this.stopped = true
    if (this.watchdog) clearInterval(this.watchdog)
    this.peer?.destroy()
    this.pool.clear()
    this.links.clear()
  }
}
