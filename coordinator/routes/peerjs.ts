import { randomUUID } from 'node:crypto'
import type { Hono } from 'hono'
import type { UpgradeWebSocket, WSContext } from 'hono/ws'

// A PeerJS-compatible signaling server, so the stock `peerjs` client brokers WebRTC through the coordinator
// instead of PeerJS's cloud. Wire protocol follows peerjs-server; URLs follow peerjs@1.5 (api.ts / socket.ts).

export interface PeerSignalingOptions {
  /**
   * Whether `key` lets a client hold peer id `id` (Shoal: a ticket the coordinator gave that client for that id in
   * its welcome, so no one can sign in as another's id or use the broker without a connection of ours). Default: the
   * key is 'shoal'.
   */
  authorize?: (id: string, key: string) => boolean
  expireMs?: number
  onEvent?: (e: { type: 'open' | 'close'; peerId: string }) => void
}

// Only what the client legitimately routes to another peer; HEARTBEAT is handled locally, anything else is dropped.
const RELAYED = new Set(['OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'EXPIRE'])
const MAX_QUEUE = 200
const MAX_SIGNAL_CHARS = 64 * 1024
/** Peers with signals waiting for them (each expires in seconds): a bound on what junk destinations can cost. */
const MAX_QUEUES = 10_000
// The client heartbeats every 5 s, so a socket silent this long is half-open (peerjs-server's alive_timeout).
const ALIVE_MS = 60_000
const CORS = { 'Access-Control-Allow-Origin': '*' }

type Peer = { id: string; token: string; ws?: WSContext; lastSeen: number }
type Signal = { type: string; src: string; dst: string; payload?: unknown }

const parse = (data: unknown): Record<string, unknown> | undefined => {
  if (typeof data !== 'string') return undefined
  try {
    const v: unknown = JSON.parse(data)
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

export function mountPeerSignaling(
  app: Hono,
  path: string,
  upgradeWebSocket: UpgradeWebSocket,
  opts: PeerSignalingOptions = {},
): { peers(): string[]; close(): void } {
  const { authorize = (_id: string, key: string) => key === 'shoal', expireMs = 5000, onEvent } = opts
  // The client normalises its path to '/x/' and appends directly ('/x/' + key + '/id'), so strip ours to '/x'.
  const base = `/${path}`.replace(/\/+/g, '/').replace(/\/$/, '')
  const peers = new Map<string, Peer>()
  const queues = new Map<string, { msg: Signal; at: number }[]>()
  let closed = false

  const send = (ws: WSContext | undefined, msg: object) => {
    try {
      ws?.send(JSON.stringify(msg))
    } catch {
      // The socket died mid-send; its onClose does the cleanup.
    }
  }
  const emit = (type: 'open' | 'close', peerId: string) => {
    try {
      onEvent?.({ type, peerId })
    } catch (err) {
      console.error('peerjs signaling onEvent failed', err)
    }
  }

  const relay = (msg: Signal) => {
    const dst = peers.get(msg.dst)
    if (dst) return send(dst.ws, msg)
    // Nobody reads a LEAVE/EXPIRE for an absent peer, and bouncing them could ping-pong EXPIREs.
    if (msg.type === 'LEAVE' || msg.type === 'EXPIRE') return
    const q = queues.get(msg.dst) ?? []
    if (q.length >= MAX_QUEUE || (!q.length && queues.size >= MAX_QUEUES)) return
    q.push({ msg, at: Date.now() })
    queues.set(msg.dst, q)
  }

  // One sweep instead of a timer per message: bounded timer count whatever clients send.
  const expire = () => {
    const now = Date.now()
    for (const [dst, q] of queues) {
      const fresh = q.findIndex((e) => now - e.at < expireMs)
      for (const { msg } of q.splice(0, fresh < 0 ? q.length : fresh)) {
        send(peers.get(msg.src)?.ws, { type: 'EXPIRE', src: dst, dst: msg.src })
      }
      if (!q.length) queues.delete(dst)
    }
    for (const p of peers.values()) if (now - p.lastSeen > ALIVE_MS) p.ws?.close()
  }
  const sweep = setInterval(expire, Math.min(1000, Math.max(25, expireMs / 4)))
  sweep.unref?.()

  const info = { name: 'Shoal PeerJS signaling', description: 'PeerJS-compatible broker for Shoal worker tabs' }
  app.on('GET', [...new Set([base || '/', `${base}/`])], (c) => c.json(info, 200, CORS))
  // Ids are not handed out here: every Shoal peer is named by the coordinator (or names itself in its hello) and
  // signs in with that id's ticket. 401 makes the stock client report 'could not get an ID' clearly.
  app.get(`${base}/:key/id`, (c) =>
    opts.authorize ? c.text('Shoal peers get their ids from the coordinator', 401, CORS) : c.text(randomUUID(), 200, CORS),
  )
  // 401 is what the client recognises as "discovery disabled" and explains to the user.
  app.get(`${base}/:key/peers`, (c) => c.text('Peer discovery is disabled', 401, CORS))

  app.get(
    `${base}/peerjs`,
    upgradeWebSocket((c) => {
      const q = c.req.query()
      const self: Peer = { id: q.id ?? '', token: q.token ?? '', lastSeen: Date.now() }
      // A rejected or superseded socket must never touch the registered peer's state.
      const current = () => peers.get(self.id) === self
      return {
        onOpen(_e, ws) {
          const reject = (type: string, msg: string) => {
            send(ws, { type, payload: { msg } })
            ws.close()
          }
          if (closed) return reject('ERROR', 'Signaling server is shutting down')
          if (!self.id || !self.token) return reject('ERROR', 'No id, token, or key supplied to websocket server')
          if (!authorize(self.id, q.key ?? '')) return reject('ERROR', 'Invalid key provided')
          const prev = peers.get(self.id)
          if (prev && prev.token !== self.token) return reject('ID-TAKEN', 'ID is taken')
          // Same id and token is the client reconnecting after a network blip: take over from the stale socket.
          self.ws = ws
          peers.set(self.id, self)
          prev?.ws?.close()
          send(ws, { type: 'OPEN' })
          for (const { msg } of queues.get(self.id) ?? []) send(ws, msg)
          queues.delete(self.id)
          if (!prev) emit('open', self.id)
        },
        onMessage(e) {
          if (!current()) return
          self.lastSeen = Date.now()
          // Signals are small (an SDP offer is a few KiB): a larger frame is junk, not worth parsing.
          if (typeof e.data !== 'string' || e.data.length > MAX_SIGNAL_CHARS) return
          const m = parse(e.data)
          // No ERROR reply for junk: the peerjs client treats any ERROR as fatal and destroys itself.
          if (typeof m?.type !== 'string' || !RELAYED.has(m.type) || typeof m.dst !== 'string') return
          relay({ type: m.type, src: self.id, dst: m.dst, payload: m.payload })
        },
        onClose() {
          if (!current()) return
          peers.delete(self.id)
          emit('close', self.id)
        },
      }
    }),
  )

  return {
    peers: () => [...peers.keys()],
    close() {
      closed = true
      clearInterval(sweep)
      const open = [...peers.values()]
      peers.clear()
      queues.clear()
      for (const p of open) p.ws?.close()
    },
  }
}
