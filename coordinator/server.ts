import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import { Hono } from 'hono'
import { MAX_FRAME_BYTES } from '../sdk/protocol/index.ts'
import { type Credentials, exposureProblem } from './auth.ts'
import { Cluster } from './cluster.ts'
import { IceConfig, type IceOptions } from './ice.ts'
import { requireLocalHost, requireOrigin, requireToken } from './routes/access.ts'
import { metrics, stateApi } from './routes/api.ts'
import { mountPeerSignaling } from './routes/peerjs.ts'
import { mountStatic } from './routes/static.ts'
import { mountControlSocket } from './routes/ws.ts'
import { openStore } from './store/open-store.ts'

export interface CoordinatorOptions {
  port?: number
  host?: string
  /** Who may connect, as what (`--auth FILE`). */
  credentials?: Credentials
  /** Shorthand: one admin token (`--token`). */
  token?: string
  /** Let nodes without a token join as volunteers (`--volunteers`). */
  volunteers?: boolean
  /** Browser origins allowed to open WebSockets, besides the coordinator's own (default: localhost too). */
  allowedOrigins?: string[]
  /** Listen beyond loopback without credentials (`--insecure`). */
  insecure?: boolean
  /** Largest frame a client may send (default 64 MiB). */
  maxFrameBytes?: number
  /** Bytes of replies a client may leave unread before it is closed with 4008 (default 256 MiB). */
  maxUnreadBytes?: number
  heartbeatTimeoutMs?: number
  /** STUN/TURN for the participants' data channels (`--ice-server`, `--turn-secret`, `--ice-transport-policy`). */
  ice?: IceOptions
  /** Serve https/wss on the one port: PEM files of the certificate (chain) and its key (`--tls-cert`, `--tls-key`). */
  tls?: { cert: string; key: string }
  /**
   * The control store: `memory` (the default here: tests and throwaway clusters), a directory (the embedded LMDB
   * store; the CLI's default is `.shoal/`), or `redis://HOST:PORT[/DB]`.
   */
  store?: string
  /** Where the Vite build is (default: `dist/` at the repo root). */
  distDir?: string
  log?: (line: string) => void
}

export interface RunningCoordinator {
  url: string
  port: number
  cluster: Cluster
  /** Where its control store is (for the start-up line). */
  store: string
  close(): Promise<void>
}

/**
 * Starts the coordinator: one Hono app on one port for every surface (`/node`, `/dashboard`, `/sdk.js`, `/api/*`,
 * `/ws`, `/peerjs`, `/metrics`), so a single address is all a node, driver or browser needs.
 */
export async function startCoordinator(opts: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  // Flags are checked before anything opens: a bad URL or an unreadable certificate is a start-up error.
  const ice = new IceConfig(opts.ice)
  const tls = opts.tls && readTls(opts.tls)
  const store = await openStore(opts.store ?? 'memory')
  const cluster = new Cluster({
    store,
    ...(opts.credentials && { credentials: opts.credentials }),
    ...(opts.token !== undefined && { token: opts.token }),
    ...(opts.volunteers && { volunteers: true }),
    ...(opts.maxFrameBytes !== undefined && { maxFrameBytes: opts.maxFrameBytes }),
    ...(opts.heartbeatTimeoutMs !== undefined && { heartbeatTimeoutMs: opts.heartbeatTimeoutMs }),
    ice,
    peerjsPath: '/peerjs',
    ...(opts.log && { log: opts.log }),
  })
  const host = opts.host ?? '127.0.0.1'
  const refusal = exposureProblem(host, cluster.credentials, !!opts.insecure)
  if (refusal) {
    cluster.close()
    await store.close()
    throw new Error(refusal)
  }
  await cluster.restore()
  const app = new Hono()
  const { injectWebSocket, upgradeWebSocket, wss } = createNodeWebSocket({ app })
  const maxFrame = opts.maxFrameBytes ?? MAX_FRAME_BYTES
  // Frames a little over our limit still reach the handler, which answers with a clear error instead of a bare 1009 close.
  ;(wss.options as { maxPayload?: number }).maxPayload = maxFrame * 2

  // Static shells stay public; everything that serves cluster data or accepts work checks who asks (docs/trust.md).
  const origins = requireOrigin(opts.allowedOrigins)
  const token = requireToken(cluster.credentials)
  const local = requireLocalHost(cluster.credentials, !!opts.insecure)
  for (const path of ['/ws', '/peerjs/*', '/api/*', '/metrics']) app.use(path, local)
  app.use('/ws', origins)
  app.use('/peerjs/*', origins)
  app.use('/api/*', token)
  app.use('/metrics', token)
  mountControlSocket(app, '/ws', upgradeWebSocket, cluster, opts.maxUnreadBytes)
  // A peer signs in with the ticket its welcome gave it for its id: only our connections, each under its own id.
  const peers = mountPeerSignaling(app, '/peerjs', upgradeWebSocket, {
    authorize: (id, key) => cluster.credentials.checkTicket(id, key),
  })
  app.route('/api', stateApi(cluster))
  app.get('/metrics', (c) => c.text(metrics(cluster, c.get('viewer'))))
  app.get('/healthz', (c) => c.json({ ok: true }))
  mountStatic(app, opts.distDir ?? fileURLToPath(new URL('../dist/', import.meta.url)))

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const listen = { fetch: app.fetch, port: opts.port ?? 8265, hostname: host }
    const s = serve(tls ? { ...listen, createServer: createHttpsServer, serverOptions: tls } : listen, () => resolve(s))
    s.once('error', reject)
  }).catch(async (e) => {
    cluster.close()
    await store.close()
    throw e
  })
  injectWebSocket(server)
  const port = (server.address() as AddressInfo).port
  let closing: Promise<void> | undefined
  return {
    url: `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    cluster,
    store: store.description,
    // Once: a second close waits for the first.
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          cluster.close()
          peers.close()
          for (const c of wss.clients) c.terminate()
          server.close(() => resolve())
          ;(server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.()
        })
        await store.close()
      })()),
  }
}

/** The PEM files of `--tls-cert` and `--tls-key`, read once, with an error that names the file. */
function readTls(files: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (what: string, path: string) => {
    let pem: Buffer
    try {
      pem = readFileSync(path)
    } catch (e) {
      throw new Error(`cannot read the TLS ${what} ${path}: ${(e as Error).message}`)
    }
    if (!pem.includes('-----BEGIN ')) throw new Error(`the TLS ${what} ${path} is not a PEM file`)
    return pem
  }
  return { cert: read('certificate', files.cert), key: read('key', files.key) }
}
