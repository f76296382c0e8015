import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import { Hono } from 'hono'
import { MAX_FRAME_BYTES, type RTCIceServerLike } from '../sdk/protocol/index.ts'
import { Cluster } from './cluster.ts'
import { metrics, stateApi } from './routes/api.ts'
import { mountPeerSignaling } from './routes/peerjs.ts'
import { mountStatic } from './routes/static.ts'
import { mountControlSocket } from './routes/ws.ts'

export interface CoordinatorOptions {
  port?: number
  host?: string
  token?: string
  heartbeatTimeoutMs?: number
  iceServers?: RTCIceServerLike[]
  /** Where the Vite build is (default: `dist/` at the repo root). */
  distDir?: string
  log?: (line: string) => void
}

export interface RunningCoordinator {
  url: string
  port: number
  cluster: Cluster
  close(): Promise<void>
}

/** Starts the coordinator: one Hono app on one port for every surface (DESIGN.md §7). */
export async function startCoordinator(opts: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  const cluster = new Cluster({
    ...(opts.token !== undefined && { token: opts.token }),
    ...(opts.heartbeatTimeoutMs !== undefined && { heartbeatTimeoutMs: opts.heartbeatTimeoutMs }),
    iceServers: opts.iceServers ?? [],
    peerjsPath: '/peerjs',
    ...(opts.log && { log: opts.log }),
  })
  const app = new Hono()
  const { injectWebSocket, upgradeWebSocket, wss } = createNodeWebSocket({ app })
  // Frames a little over our limit still reach the handler, which answers with a clear error instead of a bare 1009 close.
  ;(wss.options as { maxPayload?: number }).maxPayload = MAX_FRAME_BYTES * 2

  mountControlSocket(app, '/ws', upgradeWebSocket, cluster)
  const peers = mountPeerSignaling(app, '/peerjs', upgradeWebSocket)
  app.route('/api', stateApi(cluster))
  app.get('/metrics', (c) => c.text(metrics(cluster)))
  app.get('/healthz', (c) => c.json({ ok: true }))
  mountStatic(app, opts.distDir ?? fileURLToPath(new URL('../dist/', import.meta.url)))

  const host = opts.host ?? '127.0.0.1'
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: opts.port ?? 8265, hostname: host }, () => resolve(s))
    s.once('error', reject)
  })
  injectWebSocket(server)
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://${host}:${port}`,
    port,
    cluster,
    close: () =>
      new Promise<void>((resolve) => {
        cluster.close()
        peers.close()
        for (const c of wss.clients) c.terminate()
        server.close(() => resolve())
        ;(server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.()
      }),
  }
}
