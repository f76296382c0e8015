import Peer, { type DataConnection } from 'peerjs'

/** Chromium allows ~500 RTCPeerConnections per tab lifetime: keep a bounded pool of open ones and reuse them. */
const MAX_OPEN_CONNECTIONS = 32
/** Chromium closes a channel whose buffer reaches ~16 MiB: stay far below (PLATFORM.md). */
const HIGH_WATER = 8 * 1024 * 1024
const LOW_WATER = 2 * 1024 * 1024
/** Each binary message starts with the 4-byte id of the transfer it belongs to. */
const HEADER = 4
/**
 * A pull that makes no progress for this long fails (and the caller tries another holder). A peer whose browser
 * died keeps its channel "open" until ICE consent fails, tens of seconds later: without this a pull would hang.
 */
const STALL_MS = 5000

/** How this node answers a peer asking for an object's bytes. */
export type ObjectSource = (objectId: string) => Promise<Uint8Array | undefined>

interface Incoming {
  buffer: Uint8Array
  received: number
  lastProgress: number
  resolve(bytes: Uint8Array): void
  reject(e: Error): void
  peer: string
}

/**
 * This node's place in the PeerJS mesh (the data plane): peer id = node id, signaling through the coordinator's
 * `/peerjs`, no public STUN/TURN. Connections are reliable (PeerJS defaults to UNORDERED) and raw.
 */
export class PeerMesh {
  private peer: Peer | undefined
  private pool = new Map<string, Promise<DataConnection>>()
  private waiters = new Map<string, (reply: string) => void>()
  private incoming = new Map<number, Incoming>()
  private pendingMeta = new Map<number, { resolve(size: number): void; reject(e: Error): void; peer: string; since: number }>()
  private watchdog: ReturnType<typeof setInterval> | undefined
  private nextTransfer = 1
  /** Answers peers' object requests (set by the node's object manager). */
  source: ObjectSource = async () => undefined

  constructor(
    readonly peerId: string,
    private readonly address: string,
    private readonly path: string,
    private readonly iceServers: RTCIceServer[],
  ) {}

  start(): Promise<void> {
    const url = new URL(this.address)
    const peer = new Peer(this.peerId, {
      host: url.hostname,
      port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      path: this.path,
      key: 'shoal',
      secure: url.protocol === 'https:',
      config: { iceServers: this.iceServers },
      debug: 0,
    })
    this.peer = peer
    peer.on('connection', (conn) => this.adopt(conn))
    return new Promise((resolve, reject) => {
      peer.once('open', () => resolve())
      peer.once('error', (e) => reject(new Error(`PeerJS: ${e.type}: ${e.message}`)))
    })
  }

  /** An open connection to a node, reusing the pooled one. */
  connect(nodeId: string): Promise<DataConnection> {
    let c = this.pool.get(nodeId)
    if (c) return c
    const peer = this.peer
    if (!peer) return Promise.reject(new Error('the peer mesh is not started'))
    c = new Promise<DataConnection>((resolve, reject) => {
      const conn = peer.connect(nodeId, { reliable: true, serialization: 'raw' })
      const onError = (e: { type?: string; message?: string }) => {
        if (e.type === 'peer-unavailable' && e.message?.includes(nodeId)) reject(new Error(`node ${nodeId} is not in the peer mesh`))
      }
      peer.on('error', onError)
      conn.once('open', () => {
        peer.off('error', onError)
        this.adopt(conn)
        resolve(conn)
      })
      conn.once('error', (e) => reject(e))
    })
    c.catch(() => this.pool.delete(nodeId))
    this.pool.set(nodeId, c)
    this.evict()
    return c
  }

  /** Round trip a text message to another node over the data channel: proves the data plane end to end. */
  async ping(nodeId: string, text = 'hello'): Promise<string> {
    const conn = await this.connect(nodeId)
    const nonce = Math.random().toString(36).slice(2)
    return new Promise((resolve) => {
      this.waiters.set(nonce, resolve)
      conn.dataChannel.send(`ping:${nonce}:${text}`)
    })
  }

  /**
   * Pulls an object's bytes from another node over the data channel: one request, then binary chunks of at most
   * the channel's maxMessageSize. Rejects if the peer does not have it or the channel closes mid-way.
   */
  async fetch(nodeId: string, objectId: string): Promise<Uint8Array> {
    const conn = await this.connect(nodeId)
    const rid = this.nextTransfer++
    this.watchdog ??= setInterval(() => this.failStalled(), 1000)
    const size = await new Promise<number>((resolve, reject) => {
      this.pendingMeta.set(rid, { resolve, reject, peer: nodeId, since: performance.now() })
      conn.dataChannel.send(JSON.stringify({ t: 'get', rid, id: objectId }))
    })
    if (size === 0) return new Uint8Array(0)
    return new Promise<Uint8Array>((resolve, reject) => {
      this.incoming.set(rid, { buffer: new Uint8Array(size), received: 0, lastProgress: performance.now(), resolve, reject, peer: nodeId })
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
      dc.send(JSON.stringify({ t: 'err', rid, message: `node ${this.peerId} does not hold ${objectId}` }))
      return
    }
    dc.send(JSON.stringify({ t: 'meta', rid, size: bytes.byteLength }))
    const max = Math.min(256 * 1024, (conn.peerConnection.sctp?.maxMessageSize as number | undefined) ?? 256 * 1024) - HEADER
    dc.bufferedAmountLowThreshold = LOW_WATER
    // send() copies synchronously, so one scratch buffer serves every chunk.
    const scratch = new Uint8Array(HEADER + max)
    new DataView(scratch.buffer).setUint32(0, rid, true)
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
      scratch.set(bytes.subarray(off, off + len), HEADER)
      dc.send(len === max ? scratch : scratch.subarray(0, HEADER + len))
    }
  }

  private onBinary(buf: ArrayBuffer): void {
    const rid = new DataView(buf).getUint32(0, true)
    const t = this.incoming.get(rid)
    if (!t) return
    const chunk = new Uint8Array(buf, HEADER)
    t.buffer.set(chunk, t.received)
    t.received += chunk.byteLength
    t.lastProgress = performance.now()
    if (t.received >= t.buffer.byteLength) {
      this.incoming.delete(rid)
      t.resolve(t.buffer)
    }
  }

  private onControl(conn: DataConnection, text: string): void {
    let m: { t?: string; rid?: number; id?: string; size?: number; message?: string }
    try {
      m = JSON.parse(text)
    } catch {
      return
    }
    if (typeof m.rid !== 'number') return
    if (m.t === 'get' && typeof m.id === 'string') void this.serve(conn, m.rid, m.id)
    else if (m.t === 'meta' || m.t === 'err') {
      const p = this.pendingMeta.get(m.rid)
      this.pendingMeta.delete(m.rid)
      if (m.t === 'meta') p?.resolve(m.size ?? 0)
      else p?.reject(new Error(m.message ?? 'the peer refused'))
    }
  }

  /** A connection closed: every transfer on it fails now (the caller tries another location), never hangs. */
  private failTransfers(peer: string): void {
    this.failWhere(
      (t) => t.peer === peer,
      (p) => `the connection to node ${p} closed mid-transfer`,
    )
  }

  private adopt(conn: DataConnection): void {
    if (!this.pool.has(conn.peer)) this.pool.set(conn.peer, Promise.resolve(conn))
    if ((conn as { __shoal?: boolean }).__shoal) return
    ;(conn as { __shoal?: boolean }).__shoal = true
    conn.on('data', (data) => {
      if (data instanceof ArrayBuffer) return this.onBinary(data)
      if (ArrayBuffer.isView(data))
        return this.onBinary(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer)
      if (typeof data !== 'string') return
      if (data.startsWith('{')) return this.onControl(conn, data)
      const [kind, nonce, ...rest] = data.split(':')
      if (kind === 'ping') conn.dataChannel.send(`pong:${nonce}:${rest.join(':')}`)
      else if (kind === 'pong') {
        this.waiters.get(nonce as string)?.(rest.join(':'))
        this.waiters.delete(nonce as string)
      }
    })
    conn.on('close', () => {
      this.pool.delete(conn.peer)
      this.failTransfers(conn.peer)
    })
    conn.on('error', () => this.failTransfers(conn.peer))
  }

  private evict(): void {
    while (this.pool.size > MAX_OPEN_CONNECTIONS) {
      const [oldest, c] = this.pool.entries().next().value as [string, Promise<DataConnection>]
      this.pool.delete(oldest)
      void c.then((conn) => conn.close()).catch(() => {})
    }
  }

  stop(): void {
    if (this.watchdog) clearInterval(this.watchdog)
    this.peer?.destroy()
    this.pool.clear()
  }
}
