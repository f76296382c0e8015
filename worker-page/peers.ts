import Peer, { type DataConnection } from 'peerjs'

/** Chromium allows ~500 RTCPeerConnections per tab lifetime: keep a bounded pool of open ones and reuse them. */
const MAX_OPEN_CONNECTIONS = 32

/**
 * This node's place in the PeerJS mesh (the data plane): peer id = node id, signaling through the coordinator's
 * `/peerjs`, no public STUN/TURN. Connections are reliable (PeerJS defaults to UNORDERED) and raw.
 */
export class PeerMesh {
  private peer: Peer | undefined
  private pool = new Map<string, Promise<DataConnection>>()
  private waiters = new Map<string, (reply: string) => void>()

  constructor(
    private readonly nodeId: string,
    private readonly address: string,
    private readonly path: string,
    private readonly iceServers: RTCIceServer[],
  ) {}

  start(): Promise<void> {
    const url = new URL(this.address)
    const peer = new Peer(this.nodeId, {
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
      conn.send(`ping:${nonce}:${text}`)
    })
  }

  private adopt(conn: DataConnection): void {
    if (!this.pool.has(conn.peer)) this.pool.set(conn.peer, Promise.resolve(conn))
    if ((conn as { __shoal?: boolean }).__shoal) return
    ;(conn as { __shoal?: boolean }).__shoal = true
    conn.on('data', (data) => {
      if (typeof data !== 'string') return
      const [kind, nonce, ...rest] = data.split(':')
      if (kind === 'ping') conn.send(`pong:${nonce}:${rest.join(':')}`)
      else if (kind === 'pong') {
        this.waiters.get(nonce as string)?.(rest.join(':'))
        this.waiters.delete(nonce as string)
      }
    })
    conn.on('close', () => this.pool.delete(conn.peer))
  }

  private evict(): void {
    while (this.pool.size > MAX_OPEN_CONNECTIONS) {
      const [oldest, c] = this.pool.entries().next().value as [string, Promise<DataConnection>]
      this.pool.delete(oldest)
      void c.then((conn) => conn.close()).catch(() => {})
    }
  }

  stop(): void {
    this.peer?.destroy()
    this.pool.clear()
  }
}
