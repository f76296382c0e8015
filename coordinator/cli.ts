import { Argument, Command, InvalidArgumentError, Option } from 'commander'
import { connect } from '../sdk/index.ts'
import { formatBytes } from '../sdk/size.ts'
import { Credentials } from './auth.ts'
import { runDemo } from './demo.ts'
import { startHeadlessNodes } from './headless-nodes.ts'
import { checkIceOptions, type IceOptions } from './ice.ts'
import { type RunningCoordinator, startCoordinator } from './server.ts'
import { DEFAULT_STORE } from './store/open-store.ts'

const DEFAULT_ADDRESS = process.env.SHOAL_ADDRESS ?? 'http://127.0.0.1:8265'

const positiveNumber = (what: string) => (v: string) => {
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive number`)
  return n
}
const port = (v: string) => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number (0-65535)')
  return n
}

function printUrls(url: string): void {
  console.log(`\nShoal coordinator on ${url}`)
  console.log(`  donate a node:  ${url}/node`)
  console.log(`  dashboard:      ${url}/dashboard/`)
  console.log(`  SDK for pages:  ${url}/sdk.js`)
  console.log(`  state API:      ${url}/api/status`)
}

function keepRunning(stop: () => Promise<void>): void {
  const bye = () => {
    console.log('\nstopping…')
    void stop().then(() => process.exit(0))
  }
  process.once('SIGINT', bye)
  process.once('SIGTERM', bye)
}

async function withMesh<T>(
  address: string,
  token: string | undefined,
  fn: (mesh: Awaited<ReturnType<typeof connect>>) => Promise<T>,
): Promise<T> {
  const mesh = await connect({ address, ...(token && { token }) })
  try {
    return await fn(mesh)
  } finally {
    await mesh.close()
  }
}

/** Calls a state API path (GET unless told), with errors a user can act on instead of 'fetch failed'. */
async function api<T>(address: string, path: string, token: string | undefined, method = 'GET'): Promise<T> {
  let res: Response
  try {
    res = await fetch(`${address}/api/${path}`, { method, ...(token && { headers: { authorization: `Bearer ${token}` } }) })
  } catch {
    throw new Error(`no Shoal coordinator answered at ${address} (start one with \`shoal start\`, or pass --address / set SHOAL_ADDRESS)`)
  }
  const body = (await res.json().catch(() => undefined)) as T | { error?: { message: string } } | undefined
  if (!res.ok || body === undefined) {
    const said = (body as { error?: { message: string } } | undefined)?.error?.message
    const message = said && res.status === 401 ? `${said} (pass --token, or set SHOAL_TOKEN)` : said
    throw new Error(message ?? `${address}/api/${path} answered ${res.status}: is this a Shoal coordinator?`)
  }
  return body as T
}

/** A plain aligned table. */
function table(rows: Record<string, unknown>[], cols: string[]): void {
  if (!rows.length) return console.log('(none)')
  const cell = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v))
  const widths = cols.map((c) => Math.min(60, Math.max(c.length, ...rows.map((r) => cell(r[c]).length))))
  const line = (vals: string[]) => vals.map((v, i) => v.slice(0, widths[i]).padEnd(widths[i] as number)).join('  ')
  console.log(line(cols))
  for (const r of rows) console.log(line(cols.map((c) => cell(r[c]))))
}

const program = new Command('shoal').description("Ray Core's model on browser-tab nodes").showHelpAfterError()
const addressOption = () => new Option('-a, --address <url>', 'coordinator address').default(DEFAULT_ADDRESS)
const storeOption = () =>
  new Option('--store <where>', 'control store kept across restarts: a directory (LMDB), redis://HOST:PORT[/DB], or memory')
    .env('SHOAL_STORE')
    .default(DEFAULT_STORE)
const tokenOption = () => new Option('--token <token>', 'a token (for start/up: the one admin token)').env('SHOAL_TOKEN')

/** The access options of a coordinator (docs/trust.md): who may connect, as what, from where. */
interface AccessOptions {
  token?: string
  auth?: string
  volunteers?: boolean
  allowedOrigins?: string
  insecure?: boolean
}
const accessOptions = (c: Command) =>
  c
    .addOption(tokenOption())
    .option('--auth <file>', 'tokens per role: JSON { "tokens": [{ "token", "role": "admin"|"driver"|"node", "tenant" }] }')
    .option('--volunteers', 'let anyone with the URL open /node and join as a volunteer node (runs only work that opts in)')
    .option(
      '--allowed-origins <list>',
      "comma-separated browser origins allowed to open sockets (default: this coordinator's and localhost)",
    )
    .option('--insecure', 'listen beyond loopback without any token (anyone who reaches it can run code and read every job)')

function accessOf(o: AccessOptions) {
  if (o.auth && o.token) throw new InvalidArgumentError('give either --auth FILE or --token, not both')
  return {
    ...(o.auth && { credentials: Credentials.fromFile(o.auth) }),
    ...(o.token && { token: o.token }),
    ...(o.volunteers && { volunteers: true }),
    ...(o.allowedOrigins && {
      allowedOrigins: o.allowedOrigins
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    }),
    ...(o.insecure && { insecure: true }),
  }
}

/** STUN/TURN for the participants' data channels (coordinator/ice.ts checks them at start-up). */
interface IceFlags {
  iceServer?: string[]
  turnSecret?: string
  turnTtl?: number
  iceTransportPolicy?: 'all' | 'relay'
}
const iceFlags = (c: Command) =>
  c
    .option(
      '--ice-server <url>',
      'a STUN or TURN server for data channels: stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:… (repeat for more)',
      (v: string, all: string[] = []) => [...all, v],
    )
    .addOption(
      new Option(
        '--turn-secret <secret>',
        "the TURN server's shared secret (coturn's static-auth-secret): credentials are minted per participant",
      ).env('SHOAL_TURN_SECRET'),
    )
    .option('--turn-ttl <seconds>', 'how long minted TURN credentials stay valid (default 86400)', positiveNumber('--turn-ttl'))
    .addOption(new Option('--ice-transport-policy <policy>', 'relay: every data channel through TURN').choices(['all', 'relay']))

/** The ICE flags as the coordinator takes them, checked here so a bad one is reported as the flag it is. */
function iceOf(o: IceFlags): { ice: IceOptions } {
  const ice: IceOptions = {
    ...(o.iceServer && { servers: o.iceServer }),
    ...(o.turnSecret !== undefined && { turnSecret: o.turnSecret }),
    ...(o.turnTtl !== undefined && { turnTtlSeconds: o.turnTtl }),
    ...(o.iceTransportPolicy && { transportPolicy: o.iceTransportPolicy }),
  }
  checkIceOptions(ice)
  return { ice }
}

accessOptions(
  iceFlags(
    program
      .command('start')
      .description('run the coordinator (Hono on one port: /node, /dashboard, /sdk.js, /api, /ws, /peerjs)')
      .option('-p, --port <port>', 'port', port, 8265)
      .option('--host <host>', 'interface to listen on (without tokens: loopback only)', '127.0.0.1')
      .option('--tls-cert <file>', 'serve https/wss: the certificate (chain) as PEM (with --tls-key)')
      .option('--tls-key <file>', "the certificate's private key as PEM")
      .addOption(storeOption()),
  ),
).action(async (o: { port: number; host: string; store: string; tlsCert?: string; tlsKey?: string } & AccessOptions & IceFlags) => {
  if (!o.tlsCert !== !o.tlsKey) throw new InvalidArgumentError('give both --tls-cert and --tls-key, or neither')
  const c = await startCoordinator({
    port: o.port,
    host: o.host,
    store: o.store,
    ...accessOf(o),
    ...iceOf(o),
    ...(o.tlsCert && o.tlsKey && { tls: { cert: o.tlsCert, key: o.tlsKey } }),
  })
  console.log(`control store: ${c.store}`)
  printUrls(c.url)
  keepRunning(c.close)
})

program
  .command('node')
  .description('start headless Chromium nodes (playwright-core + the system Chromium)')
  .addOption(addressOption())
  .option('-n, --nodes <n>', 'how many nodes', positiveNumber('--nodes'), 1)
  .option('-c, --cpus <n>', 'CPUs (workers) per node', positiveNumber('--cpus'), 2)
  .option('--object-store-memory <size>', 'object store per node, e.g. 96MiB')
  .addOption(tokenOption())
  .action(async (o: { address: string; nodes: number; cpus: number; token?: string; objectStoreMemory?: string }) => {
    const h = await startHeadlessNodes({ ...o, onConsole: (i, type, text) => type === 'error' && console.error(`[node ${i}] ${text}`) })
    for (const n of h.nodes) console.log(`node ${n.index}: ${n.nodeId} (${o.cpus} CPU)`)
    keepRunning(h.close)
  })

iceFlags(
  program
    .command('up')
    .description('the quick start: coordinator + local headless nodes (+ the demo job), left running')
    .option('-p, --port <port>', 'port', port, 8265)
    .option('-n, --nodes <n>', 'headless nodes', positiveNumber('--nodes'), 3)
    .option('-c, --cpus <n>', 'CPUs per node', positiveNumber('--cpus'), 4)
    .option('--demo', "run the seed's 30 × 1 s tasks once the nodes are up")
    .addOption(tokenOption())
    .addOption(storeOption()),
).action(async (o: { port: number; nodes: number; cpus: number; demo?: boolean; token?: string; store: string } & IceFlags) => {
  let coordinator: RunningCoordinator | undefined
  const ice = iceOf(o)
  try {
    coordinator = await startCoordinator({ port: o.port, store: o.store, ...(o.token && { token: o.token }), ...ice, log: () => {} })
  } catch (e) {
    throw new Error(`cannot start the coordinator on port ${o.port}: ${(e as Error).message} (is another coordinator running? use --port)`)
  }
  const c = coordinator
  console.log(`coordinator up on ${c.url} (control store: ${c.store}); starting ${o.nodes} headless node(s)…`)
  const h = await startHeadlessNodes({
    address: c.url,
    nodes: o.nodes,
    cpus: o.cpus,
    ...(o.token && { token: o.token }),
    onConsole: (i, type, text) => type === 'error' && console.error(`[node ${i}] ${text}`),
  })
  console.log(`${h.nodes.length} node(s) registered`)
  if (o.demo) await runDemo(c.url, { tasks: 30, seconds: 1, ...(o.token && { token: o.token }) })
  printUrls(c.url)
  console.log('\nPress Ctrl+C to stop.')
  keepRunning(async () => {
    await h.close()
    await c.close()
  })
})

program
  .command('demo')
  .description("run the seed's parallel tasks against a running coordinator")
  .addOption(addressOption())
  .addOption(tokenOption())
  .option('--tasks <n>', 'how many tasks', positiveNumber('--tasks'), 30)
  .option('--seconds <s>', 'seconds per task', positiveNumber('--seconds'), 1)
  .action(async (o: { address: string; tasks: number; seconds: number; token?: string }) => {
    await runDemo(o.address, o)
  })

program
  .command('status')
  .description('cluster status: nodes, resources, pending and infeasible tasks')
  .addOption(addressOption())
  .addOption(tokenOption())
  .action(async (o: { address: string; token?: string }) => {
    const s = await api<{
      nodes: { alive: number; dead: number }
      resources: { total: Record<string, number>; used: Record<string, number> }
      tasks: { pending: number; queued?: number }
      jobs: { running: number }
      infeasible: { name: string; requiredResources: Record<string, number> }[]
    }>(o.address, 'status', o.token)
    console.log(`nodes: ${s.nodes.alive} alive, ${s.nodes.dead} dead`)
    for (const [k, total] of Object.entries(s.resources.total)) console.log(`  ${s.resources.used[k] ?? 0}/${total} ${k}`)
    const queued = s.tasks.queued !== undefined ? ` (${s.tasks.queued} waiting for a node)` : ''
    console.log(`jobs running: ${s.jobs.running}; tasks pending: ${s.tasks.pending}${queued}`)
    if (s.infeasible.length) {
      console.log(`infeasible (no node can ever fit them; they wait for a bigger node):`)
      for (const t of s.infeasible) console.log(`  ${t.name} needs ${JSON.stringify(t.requiredResources)}`)
    }
  })

const LIST_COLUMNS: Record<string, string[]> = {
  tasks: ['taskId', 'name', 'state', 'type', 'nodeId', 'workerId', 'jobId', 'attempt', 'errorType'],
  nodes: ['nodeId', 'state', 'trust', 'name', 'resources', 'availableResources', 'runningTasks', 'quarantined'],
  jobs: ['jobId', 'tenant', 'state', 'namespace', 'startTime', 'endTime'],
  actors: ['actorId', 'className', 'name', 'state', 'nodeId', 'jobId', 'restarts'],
  objects: ['objectId', 'size', 'refCount', 'locations', 'spilled'],
}

program
  .command('list')
  .description('list tasks | actors | nodes | objects | jobs (Ray: ray list …)')
  .addArgument(new Argument('<resource>').choices(Object.keys(LIST_COLUMNS)))
  .addOption(addressOption())
  .addOption(tokenOption())
  .option('-f, --filter <key=value...>', 'filters, e.g. state=RUNNING or name!=x')
  .option('-l, --limit <n>', 'at most this many rows', positiveNumber('--limit'), 100)
  .option('--json', 'print JSON')
  .action(async (resource: string, o: { address: string; token?: string; filter?: string[]; limit: number; json?: boolean }) => {
    const q = new URLSearchParams({ limit: String(o.limit) })
    for (const f of o.filter ?? []) q.append('filter', f)
    const body = await api<Record<string, unknown>[]>(o.address, `${resource}?${q}`, o.token)
    if (o.json) return console.log(JSON.stringify(body, null, 2))
    const short = (v: unknown) => (typeof v === 'string' && /^[0-9a-f]{32,}$/.test(v) ? v.slice(0, 12) : v)
    table(
      body.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, k === 'size' ? formatBytes(v as number) : short(v)]))),
      LIST_COLUMNS[resource] as string[],
    )
  })

program
  .command('unquarantine')
  .description('let a quarantined node take work again (admin token): see `shoal list nodes` for why it was')
  .argument('<nodeId>', 'the node id (as `shoal list nodes --json` prints it)')
  .addOption(addressOption())
  .addOption(tokenOption())
  .action(async (nodeId: string, o: { address: string; token?: string }) => {
    await api(o.address, `nodes/${encodeURIComponent(nodeId)}/quarantine`, o.token, 'DELETE')
    console.log(`node ${nodeId} may take work again`)
  })

program
  .command('summary')
  .description('summary tasks: counts per function and state')
  .argument('<what>', 'tasks')
  .addOption(addressOption())
  .addOption(tokenOption())
  .action(async (what: string, o: { address: string; token?: string }) => {
    if (what !== 'tasks') throw new InvalidArgumentError('only `summary tasks` exists')
    const s = await withMesh(o.address, o.token, (m) => m.state.summarizeTasks())
    table(
      Object.values(s.summary).map((r) => ({ func: r.funcOrClassName, type: r.type, ...r.stateCounts })),
      ['func', 'type', 'PENDING_ARGS_AVAIL', 'PENDING_NODE_ASSIGNMENT', 'SUBMITTED_TO_WORKER', 'RUNNING', 'FINISHED', 'FAILED'],
    )
    console.log(`total: ${s.totalTasks}${s.infeasible.length ? `; ${s.infeasible.length} infeasible` : ''}`)
  })

program
  .command('memory')
  .description('object store usage per node and the largest objects (Ray: ray memory)')
  .addOption(addressOption())
  .addOption(tokenOption())
  .option('-n, --top <n>', 'how many of the largest objects to list', positiveNumber('--top'), 10)
  .action(async (o: { address: string; token?: string; top: number }) => {
    const get = <T>(path: string) => api<T>(o.address, path, o.token)
    const nodes =
      await get<
        {
          nodeId: string
          state: string
          name: string | null
          objectStoreMemory: number
          objectStoreUsed: number
          objectStoreSpilled: number
        }[]
      >('nodes')
    const objects = await get<{ objectId: string; size: number; locations: string[]; refCount: number; spilled: boolean }[]>('objects')
    const alive = nodes.filter((n) => n.state === 'ALIVE')
    console.log('--- object store per node ---')
    table(
      alive.map((n) => ({
        node: `${n.nodeId.slice(0, 12)}${n.name ? ` (${n.name})` : ''}`,
        used: `${formatBytes(n.objectStoreUsed)} / ${formatBytes(n.objectStoreMemory)}`,
        spilled: formatBytes(n.objectStoreSpilled),
        objects: objects.filter((x) => x.locations.includes(n.nodeId)).length,
      })),
      ['node', 'used', 'spilled', 'objects'],
    )
    const inline = objects.filter((x) => !x.locations.length)
    console.log(
      `\n--- ${objects.length} objects: ${objects.length - inline.length} in node stores, ${inline.length} inline (≤ 100 KiB, kept by the coordinator: ${formatBytes(inline.reduce((n, x) => n + x.size, 0))}) ---`,
    )
    table(
      [...objects]
        .sort((a, b) => b.size - a.size)
        .slice(0, o.top)
        .map((x) => ({
          objectId: x.objectId,
          size: formatBytes(x.size),
          refCount: x.refCount,
          spilled: x.spilled,
          locations: x.locations.map((l) => l.slice(0, 8)).join(',') || 'inline',
        })),
      ['objectId', 'size', 'refCount', 'spilled', 'locations'],
    )
  })

program.parseAsync().catch((e: Error & { code?: string }) => {
  console.error(`shoal: ${e.message}`)
  process.exit(1)
})
