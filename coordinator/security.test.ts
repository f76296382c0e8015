import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { decodeFrames, encodeFrame, encodeValue } from '../sdk/codec.ts'
import { functionIdOf, type JobId, newPutObjectId, newTaskId, type ObjectId, randomHex } from '../sdk/ids.ts'
import { connect, type Mesh, ObjectRef } from '../sdk/index.ts'
import { ClientMessageSchema, PROTOCOL_VERSION, type ServerMessage } from '../sdk/protocol/index.ts'
import { Rng } from '../sim/rng.ts'
import { TEST_TOKENS, testCredentials } from './credentials.fixture.ts'
import { EvalNode } from './eval-node.fixture.ts'
import { type CoordinatorOptions, type RunningCoordinator, startCoordinator } from './server.ts'

/*
 * A mesh open to strangers (docs/trust.md): one test per attack. Each checks that the attack is refused AND that the
 * legitimate clients' work is still right afterwards. Everything runs in this process: a real coordinator on a real
 * port, real Node drivers (`connect`), raw WebSocket attackers, and in-process nodes (the real NodeAgent of
 * worker-page/node/agent.ts on a real socket, with workers that really run the functions' sources). No Chromium.
 */

// ---- tokens ----

const { ADMIN, NODE, TOKEN_A, TOKEN_B, TOKEN_F } = TEST_TOKENS
const credentials = testCredentials

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

// ---- a raw WebSocket client: what an attacker (or a fuzzer) speaks ----

type Msg = (ServerMessage | { type: 'text'; text: string } | { type: 'undecodable' }) & Record<string, unknown>

class Raw {
  readonly msgs: Msg[] = []
  bytesIn = 0
  framesIn = 0
  closed: { code: number; reason: string } | undefined
  /** Decode what arrives (off: only count it, when a flood's answers are not worth this process's time). */
  decode = true
  private nextReq = 1
  private waiters = new Set<() => void>()

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.framesIn++
      this.bytesIn += data.byteLength
      if (!this.decode) return this.wake()
      if (isBinary) {
        try {
          this.msgs.push(...(decodeFrames(new Uint8Array(data)) as Msg[]))
        } catch {
          this.msgs.push({ type: 'undecodable' } as Msg)
        }
      } else this.msgs.push({ type: 'text', text: String(data) } as unknown as Msg)
      this.wake()
    })
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason) }
      this.wake()
    })
    ws.on('error', () => {})
  }

  /** Opens a socket to `path`; rejects with the HTTP status if the upgrade is refused. */
  static open(base: string, opts: { path?: string; origin?: string } = {}): Promise<Raw> {
    const url = `${base.replace(/^http/, 'ws')}${opts.path ?? '/ws'}`
    const ws = new WebSocket(url, { ...(opts.origin && { headers: { Origin: opts.origin } }), maxPayload: 256 * 1024 * 1024 })
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Raw(ws)))
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode }))
        ws.terminate()
      })
      ws.once('error', (e) => reject(e))
    })
  }

  private wake(): void {
    for (const w of this.waiters) w()
  }

  async waitFor<T extends Msg>(what: string, pred: (m: Msg) => m is T, timeoutMs?: number): Promise<T>
  async waitFor(what: string, pred: (m: Msg) => boolean, timeoutMs?: number): Promise<Msg>
  async waitFor(what: string, pred: (m: Msg) => boolean, timeoutMs = 5000): Promise<Msg> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const m = this.msgs.find(pred)
      if (m) return m
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`)
      const left = end - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>((r) => {
        const done = () => {
          clearTimeout(t)
          this.waiters.delete(done)
          r()
        }
        const t = setTimeout(done, left)
        this.waiters.add(done)
      })
    }
  }

  waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    return until('the socket to close', () => !!this.closed, timeoutMs).then(() => this.closed as { code: number; reason: string })
  }

  send(msg: unknown): void {
    this.sendBytes(encodeFrame(msg))
  }

  sendBytes(bytes: Uint8Array | string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes)
  }

  /** Sends a request and waits for its reply. */
  async request(msg: Record<string, unknown>): Promise<Extract<Msg, { type: 'reply' }>> {
    const reqId = this.nextReq++
    this.send({ ...msg, reqId })
    return (await this.waitFor(`the reply to ${String(msg.type)}`, (m) => m.type === 'reply' && m.reqId === reqId)) as Extract<
      Msg,
      { type: 'reply' }
    >
  }

  /** Says hello; resolves with the welcome or the refusal. */
  async hello(role: 'driver' | 'node', token?: string, extra: Record<string, unknown> = {}): Promise<Msg> {
    this.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role,
      ...(token !== undefined && { token }),
      ...(role === 'node' && { node: { resources: { CPU: 8 }, objectStoreMemory: 1e9 } }),
      ...extra,
    })
    return this.waitFor('welcome or refusal', (m) => m.type === 'welcome' || (m.type === 'reply' && m.reqId === 0))
  }

  close(): void {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.terminate()
  }
}

const refusalOf = (m: Msg) => (m.type === 'reply' && !m.ok ? (m.error as { message: string; code: string; name: string }) : undefined)

// ---- the legitimate workload ----

const double = function double(x: number) {
  return x * 2
}
const slow = async function slow(x: number, ms: number) {
  await new Promise((r) => setTimeout(r, ms))
  return x
}
class Counter {
  n = 0
  inc(by = 1) {
    this.n += by
    return this.n
  }
}

async function driver(c: RunningCoordinator, token: string, extra: { namespace?: string } = {}): Promise<Mesh> {
  return connect({ address: c.url, token, peerLinks: 'relay', timeout: 10_000, ...extra })
}

/** Every coordinator, node, mesh and socket a test opened, closed after it. */
const cleanups: (() => unknown)[] = []
function track<T extends Mesh | EvalNode | Raw | RunningCoordinator>(x: T): T {
  if (x instanceof EvalNode) cleanups.push(() => x.stop())
  else if (x instanceof Raw) cleanups.push(() => x.close())
  else cleanups.push(() => x.close())
  return x
}
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await Promise.resolve(f()).catch(() => {})
})

const quiet = { log: () => {} }
async function coordinator(opts: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  return track(await startCoordinator({ port: 0, credentials: credentials(), ...quiet, ...opts }))
}

/** Fails if a text that went to a client carries implementation details: stack lines or source paths. */
function expectNoInternals(text: string): void {
  expect(text).not.toMatch(/\n\s+at /)
  expect(text).not.toMatch(/\.(ts|js|mjs):\d+/)
  expect(text).not.toContain('/work/')
  expect(text).not.toContain('node_modules')
}

/** The errors among `msgs` (refused requests, refused frames), as the client saw them. */
function errorsIn(msgs: readonly Msg[]): { name: string; code: string; message: string; stack?: string }[] {
  return msgs.flatMap((m) =>
    (m.type === 'error' || (m.type === 'reply' && !m.ok)) && m.error ? [m.error as { name: string; code: string; message: string }] : [],
  )
}

describe('smoke: the test node runs real code for an authenticated driver', () => {
  it('runs a function and an actor', async () => {
    const c = await coordinator()
    track(await EvalNode.start({ address: c.url, token: NODE }))
    const a = track(await driver(c, TOKEN_A))
    expect(await a.get(a.remote(double).remote(21), { timeout: 10_000 })).toBe(42)
    const h = a.remote(Counter).remote()
    expect(await a.get([h.inc.remote(2), h.inc.remote(3)], { timeout: 10_000 })).toEqual([2, 5])
  })
})

describe('1. credentials: every surface that serves cluster data or accepts work checks who asks', () => {
  it('refuses a hello without a token, with a wrong token, and with a token of the wrong role; the legitimate client still works', async () => {
    const c = await coordinator()
    const refused = async (role: 'driver' | 'node', token: string | undefined, reason: RegExp) => {
      const raw = track(await Raw.open(c.url))
      const error = refusalOf(await raw.hello(role, token))
      expect(error?.message).toMatch(reason)
      const closed = await raw.waitClosed()
      expect(closed.code).toBe(4001)
      expect(closed.reason).toMatch(reason)
      expect(closed.reason).not.toContain('\n')
      expect(closed.reason.length).toBeLessThan(200)
      // The token itself is never echoed back.
      if (token) expect(JSON.stringify(raw.msgs) + closed.reason).not.toContain(token)
      // Nothing else came: no welcome, no job.
      expect(raw.msgs.filter((m) => m.type === 'welcome')).toEqual([])
      return raw
    }
    await refused('driver', undefined, /requires a token/)
    await refused('driver', 'not-a-token-of-ours-0123456789', /refused the token/)
    await refused('node', undefined, /requires a token/)
    await refused('node', 'not-a-token-of-ours-0123456789', /refused the token/)
    await refused('node', TOKEN_A, /driver token cannot join as a node/)
    await refused('driver', NODE, /node token cannot start a job/)
    // A refused socket's later messages change nothing (it is closed; and nothing it said before hello counted).
    const sneaky = track(await Raw.open(c.url))
    sneaky.send([
      { type: 'state', reqId: 1, query: { resource: 'jobs' } },
      { type: 'hello', reqId: 0, protocol: PROTOCOL_VERSION, role: 'driver' },
      { type: 'state', reqId: 2, query: { resource: 'jobs' } },
    ])
    const before = await sneaky.waitFor('a reply', (m) => m.type === 'reply' && m.reqId === 1)
    expect(refusalOf(before)?.message).toMatch(/hello first/)
    expect(refusalOf(await sneaky.waitFor('the refusal', (m) => m.type === 'reply' && m.reqId === 0))?.message).toMatch(/requires a token/)
    await sneaky.waitClosed()
    expect(sneaky.msgs.some((m) => m.type === 'reply' && m.reqId === 2 && m.ok)).toBe(false)
    expect(c.cluster.jobs.list()).toEqual([])

    // The legitimate clients, after all that.
    const node = track(await EvalNode.start({ address: c.url, token: NODE }))
    const a = track(await driver(c, TOKEN_A))
    expect(await a.get(a.remote(double).remote(4), { timeout: 10_000 })).toBe(8)
    expect(node.alive).toBe(true)
    // A driver token's connect() without the token is a clear ConnectionError.
    await expect(connect({ address: c.url, peerLinks: 'relay' })).rejects.toThrow(/requires a token/)
  })

  it('HTTP: the state API and /metrics need a bearer token (401 JSON otherwise); static shells and /healthz stay public', async () => {
    const c = await coordinator()
    const get = (path: string, token?: string) => fetch(`${c.url}${path}`, token ? { headers: { authorization: `Bearer ${token}` } } : {})
    for (const path of ['/api/status', '/api/tasks', '/api/jobs', '/api/nodes', '/api/objects', '/api/actors', '/metrics']) {
      for (const token of [undefined, 'wrong-token-0123456789abcdef']) {
        const res = await get(path, token)
        expect(res.status, `${path} with ${token ?? 'no token'}`).toBe(401)
        expect(res.headers.get('content-type')).toMatch(/application\/json/)
        const body = (await res.json()) as { error: { code: string; message: string } }
        expect(body.error.code).toBe('UNAUTHORIZED')
        expect(body.error.message).toMatch(/token/)
        expect(body.error.message).not.toContain('\n')
        if (token) expect(body.error.message).not.toContain(token)
      }
      // A driver token reads (its tenant's) data.
      expect((await get(path, TOKEN_A)).status, `${path} with a driver token`).toBe(200)
      expect((await get(path, ADMIN)).status, `${path} with the admin token`).toBe(200)
      // A node token has no business reading cluster data.
      expect((await get(path, NODE)).status, `${path} with a node token`).toBe(403)
    }
    // Not a bearer token: refused too.
    expect((await fetch(`${c.url}/api/status`, { headers: { authorization: `Basic ${btoa(`x:${TOKEN_A}`)}` } })).status).toBe(401)
    for (const path of ['/healthz', '/node', '/dashboard/']) {
      const res = await get(path)
      // 503 is fine where no build is present: only the credentials check must not apply.
      expect([401, 403], `${path} is public`).not.toContain(res.status)
    }
    expect((await get('/healthz')).status).toBe(200)
  })

  it('PeerJS signaling: no id without a ticket of ours, and a ticket only opens the id it was issued for', async () => {
    const c = await coordinator()
    const peerSocket = async (id: string, key: string) => {
      const raw = track(await Raw.open(c.url, { path: `/peerjs/peerjs?key=${key}&id=${id}&token=t0k3n&version=1.5.5` }))
      await raw.waitClosed()
      return raw.msgs.map((m) => (m.type === 'text' ? JSON.parse(m.text as string) : m)) as { type: string; payload?: { msg: string } }[]
    }
    // The stock key, no ticket: refused with an ERROR, then closed.
    const stock = await peerSocket('some-peer', 'shoal')
    expect(stock[0]).toMatchObject({ type: 'ERROR', payload: { msg: 'Invalid key provided' } })
    // The id endpoint gives no ids away.
    expect((await fetch(`${c.url}/peerjs/shoal/id`)).status).toBe(401)
    expect((await fetch(`${c.url}/peerjs/shoal/peers`)).status).toBe(401)
    // A legitimate driver's ticket, used for another id: refused.
    const legit = track(await Raw.open(c.url))
    const peerId = `d-${randomHex(27)}`
    const welcome = await legit.hello('driver', TOKEN_A, { peerId })
    expect(welcome.type).toBe('welcome')
    const ticket = welcome.peerjsKey as string
    expect(ticket).toMatch(/^[0-9a-f]{64}$/)
    const stolen = await peerSocket(`d-${randomHex(27)}`, ticket)
    expect(stolen[0]).toMatchObject({ type: 'ERROR', payload: { msg: 'Invalid key provided' } })
    // …and for its own id it opens (the legitimate path still works).
    const own = track(await Raw.open(c.url, { path: `/peerjs/peerjs?key=${ticket}&id=${peerId}&token=t0k3n&version=1.5.5` }))
    const open = await own.waitFor('OPEN', (m) => m.type === 'text')
    expect(JSON.parse(open.text as string)).toMatchObject({ type: 'OPEN' })
  })
})

describe('2. origin: a page elsewhere cannot open our sockets with a visitor’s browser', () => {
  const status = (c: RunningCoordinator, opts: { path?: string; origin?: string }) =>
    Raw.open(c.url, opts).then(
      (r) => {
        r.close()
        return 101
      },
      (e: Error & { status?: number }) => e.status,
    )

  it('refuses a /ws (and /peerjs) upgrade from a foreign Origin (403), accepts our own origin and no Origin', async () => {
    const c = await coordinator()
    for (const origin of ['https://evil.example', 'null', 'http://localhost.evil.example', 'http://127.0.0.1:1@evil.example']) {
      expect(await status(c, { origin }), `origin ${origin}`).toBe(403)
    }
    expect(await status(c, { path: '/peerjs/peerjs?key=x&id=y&token=z', origin: 'https://evil.example' })).toBe(403)
    // Our own origin (the coordinator's pages) and a non-browser client are let in; the token then decides.
    const own = track(await Raw.open(c.url, { origin: c.url }))
    expect((await own.hello('driver', TOKEN_A)).type).toBe('welcome')
    const cli = track(await Raw.open(c.url))
    expect((await cli.hello('driver', TOKEN_A)).type).toBe('welcome')
    // With an allow-list, a listed origin is let in, an unlisted one (even localhost) is not.
    const c2 = await coordinator({ allowedOrigins: ['https://app.example'] })
    expect(await status(c2, { origin: 'https://app.example' })).toBe(101)
    expect(await status(c2, { origin: 'http://localhost:5173' })).toBe(403)
    // The legitimate work, afterwards.
    track(await EvalNode.start({ address: c.url, token: NODE }))
    const a = track(await driver(c, TOKEN_A))
    expect(await a.get(a.remote(double).remote(5), { timeout: 10_000 })).toBe(10)
  })

  it('a host name that merely starts with "127." is not loopback (http://127.0.0.1.evil.example is a foreign origin)', async () => {
    const c = await coordinator()
    for (const origin of ['http://127.0.0.1.evil.example', 'https://127.evil.example:8265']) {
      expect(await status(c, { origin }), `origin ${origin}`).toBe(403)
    }
  })

  it('DNS rebinding: without credentials (the loopback default), a request naming a foreign Host is refused', async () => {
    // A page at http://rebind.evil.example:PORT whose name now resolves to 127.0.0.1: its Origin matches the Host it
    // sends, so "the coordinator's own origin" must be judged by our names, not by the Host header.
    const c = track(await startCoordinator({ port: 0, ...quiet }))
    const evil = `rebind.evil.example:${c.port}`
    const ws = new WebSocket(`ws://127.0.0.1:${c.port}/ws`, { headers: { Host: evil, Origin: `http://${evil}` } })
    const upgrade = await new Promise<number>((resolve) => {
      ws.once('open', () => resolve(101))
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('error', () => resolve(0))
    })
    ws.terminate()
    const { request } = await import('node:http')
    const api = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: c.port, path: '/api/status', headers: { Host: evil } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
    // Refused, whichever 4xx says so (403, or 421 Misdirected Request).
    expect({ upgradeRefused: upgrade >= 400 && upgrade < 500, apiRefused: api >= 400 && api < 500 }).toEqual({
      upgradeRefused: true,
      apiRefused: true,
    })
  })
})

describe('3. safe by default', () => {
  it('refuses to listen beyond loopback without credentials, naming --auth/--token and --insecure; starts with insecure', async () => {
    const err = await startCoordinator({ port: 0, host: '0.0.0.0', ...quiet }).then(
      (c) => {
        track(c)
        return undefined
      },
      (e: Error) => e,
    )
    expect(err?.message).toMatch(/--auth/)
    expect(err?.message).toMatch(/--token/)
    expect(err?.message).toMatch(/--insecure/)
    const insecure = track(await startCoordinator({ port: 0, host: '0.0.0.0', insecure: true, ...quiet }))
    expect((await fetch(`http://127.0.0.1:${insecure.port}/healthz`)).status).toBe(200)
    // With credentials it may listen anywhere, and then still wants a token.
    const guarded = track(await startCoordinator({ port: 0, host: '0.0.0.0', credentials: credentials(), ...quiet }))
    expect((await fetch(`http://127.0.0.1:${guarded.port}/api/status`)).status).toBe(401)
    // `--token T` is one admin token.
    const single = track(await startCoordinator({ port: 0, host: '0.0.0.0', token: 'just-one-admin-token', ...quiet }))
    const url = `http://127.0.0.1:${single.port}`
    expect((await fetch(`${url}/api/status`)).status).toBe(401)
    expect((await fetch(`${url}/api/status`, { headers: { authorization: 'Bearer just-one-admin-token' } })).status).toBe(200)
    // Loopback without credentials is the local default: open.
    const local = track(await startCoordinator({ port: 0, ...quiet }))
    expect((await fetch(`${local.url}/api/status`)).status).toBe(200)
  })
})

describe('4. tenants: one tenant sees and touches nothing of another’s', () => {
  it('B cannot list, read, find, kill, cancel or free what A has; A’s work is intact; admin sees both; A’s other driver shares', async () => {
    const c = await coordinator()
    const node = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 4 }))
    const a = track(await driver(c, TOKEN_A))
    const b = track(await driver(c, TOKEN_B))
    const admin = track(await driver(c, ADMIN))

    // A's work: an object, a named actor in namespace 'ns', a finished task and a slow one still running.
    const secret = await a.put({ secret: 'A only', n: 42 })
    const counter = a.remote(Counter).options({ name: 'counter', namespace: 'ns' }).remote()
    expect(await a.get(counter.inc.remote(1), { timeout: 10_000 })).toBe(1)
    const doneRef = a.remote(double).remote(21)
    expect(await a.get(doneRef, { timeout: 10_000 })).toBe(42)
    const slowRef = a.remote(slow).remote(7, 1500)
    await until('A’s slow task to run', async () =>
      (await a.state.listTasks({ filters: [['name', '=', 'slow']] })).some((t) => t.state === 'RUNNING'),
    )
    // B's own work, so its listings are not empty by accident.
    expect(await b.get(b.remote(double).remote(1), { timeout: 10_000 })).toBe(2)
    const bObject = await b.put('B’s')

    // B lists nothing of A's.
    const ofA = (rows: { jobId?: string; objectId?: string }[]) =>
      rows.filter((r) => r.jobId === a.jobId || r.objectId?.slice(40, 48) === a.jobId)
    expect(ofA(await b.state.listJobs())).toEqual([])
    expect(ofA(await b.state.listTasks())).toEqual([])
    expect(ofA(await b.state.listActors())).toEqual([])
    expect(ofA(await b.state.listObjects())).toEqual([])
    expect((await b.state.listObjects()).map((o) => o.objectId)).not.toContain(secret.id)
    expect((await b.state.listJobs()).map((j) => j.jobId)).toEqual([b.jobId])
    expect((await b.state.listJobs())[0]?.tenant).toBe('b')
    expect((await b.state.listObjects()).map((o) => o.objectId)).toContain(bObject.id)
    expect((await b.state.summarizeTasks()).summary.slow).toBeUndefined()
    // …nor over REST with its token.
    const rest = async (path: string, token: string) =>
      JSON.stringify(await (await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${token}` } })).json())
    for (const path of ['/api/jobs', '/api/tasks', '/api/actors', '/api/objects', '/api/summary/tasks', '/api/status']) {
      expect(await rest(path, TOKEN_B), path).not.toContain(a.jobId)
    }
    expect((await fetch(`${c.url}/api/tasks/${doneRef.id.slice(0, 48)}`, { headers: { authorization: `Bearer ${TOKEN_B}` } })).status).toBe(
      404,
    )
    const metricsB = await (await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN_B}` } })).text()
    expect(metricsB).not.toMatch(/tenant="a"/)

    // B reading A's object by a forged ref: the same ObjectLostError as for an id no one ever made.
    const lostMessage = async (id: string) => {
      const e = (await b.get(new ObjectRef(id as ObjectId), { timeout: 5000 }).then(
        () => undefined,
        (err: Error) => err,
      )) as (Error & { code?: string }) | undefined
      return { name: e?.name, code: e?.code, message: e?.message.replaceAll(id, '<id>') }
    }
    const forged = await lostMessage(secret.id)
    expect(forged.name).toBe('ObjectLostError')
    expect(forged.message).toMatch(/unknown to this coordinator/)
    expect(await lostMessage(newPutObjectId(a.jobId))).toEqual(forged)
    expect(await lostMessage(newPutObjectId('7f7f7f7f' as JobId))).toEqual(forged)
    // …also of A's task's return (the same answer as for an unknown one).
    expect(await lostMessage(doneRef.id)).toEqual(forged)

    // B looking A's actor up by name: as if it did not exist.
    const notFound = async (name: string) =>
      (await b.getActor(name, { namespace: 'ns' }).then(
        () => 'found',
        (e: Error) => `${e.name}: ${e.message.replaceAll(name, '<name>')}`,
      )) as string
    const missing = await notFound('counter')
    expect(missing).not.toBe('found')
    expect(missing).toBe(await notFound('no-such-actor'))

    // B killing A's actor, cancelling A's running task, freeing A's object: refused, through the SDK…
    await expect(b.kill(counter)).rejects.toThrow(/no actor/)
    await expect(b.cancel(slowRef)).rejects.toThrow(/not one of this tenant/)
    await expect(b.free(secret)).rejects.toThrow(/not one of this tenant/)
    // …and raw, as a hand-written client would send them.
    const rawB = track(await Raw.open(c.url))
    expect((await rawB.hello('driver', TOKEN_B)).type).toBe('welcome')
    expect(refusalOf(await rawB.request({ type: 'kill-actor', actorId: counter.actorId, noRestart: true }))?.message).toMatch(/no actor/)
    expect(refusalOf(await rawB.request({ type: 'cancel', objectId: slowRef.id, force: true, recursive: true }))).toBeDefined()
    expect(refusalOf(await rawB.request({ type: 'free', objectIds: [secret.id] }))).toBeDefined()
    expect(refusalOf(await rawB.request({ type: 'free', objectIds: [bObject.id.replace(/.{8}$/, '00000000'), secret.id] }))).toBeDefined()
    rawB.send({ type: 'release', objectIds: [secret.id] })
    rawB.send({ type: 'unborrow', objectIds: [secret.id] })
    rawB.send({ type: 'actor-lease-request', actorId: counter.actorId })
    const dead = await rawB.waitFor('actor-state', (m) => m.type === 'actor-state')
    expect(dead).toMatchObject({ state: 'DEAD' })
    expect(dead.actorId).toBe(counter.actorId)
    // The answer tells nothing of A's actor (not even its node).
    expect(JSON.stringify(dead)).not.toContain(node.nodeId)
    // B's own object survived its refused mixed free.
    expect(await b.get(bObject, { timeout: 5000 })).toBe('B’s')

    // A's work is untouched.
    expect(await a.get(slowRef, { timeout: 10_000 })).toBe(7)
    expect(await a.get(secret, { timeout: 5000 })).toEqual({ secret: 'A only', n: 42 })
    expect(await a.get(counter.inc.remote(10), { timeout: 10_000 })).toBe(11)
    expect(await a.get(doneRef, { timeout: 5000 })).toBe(42)
    expect(await a.get(a.remote(double).remote(50), { timeout: 10_000 })).toBe(100)
    expect((await a.state.listActors()).find((x) => x.actorId === counter.actorId)?.state).toBe('ALIVE')
    expect((await a.state.listTasks({ filters: [['name', '=', 'slow']] }))[0]?.state).toBe('FINISHED')

    // The admin sees both tenants.
    const jobs = (await admin.state.listJobs()).map((j) => j.jobId)
    expect(jobs).toEqual(expect.arrayContaining([a.jobId, b.jobId]))
    expect((await admin.state.listObjects()).map((o) => o.objectId)).toEqual(expect.arrayContaining([secret.id, bObject.id]))
    expect((await admin.state.listActors()).map((x) => x.actorId)).toContain(counter.actorId)
    const taskJobs = new Set((await admin.state.listTasks()).map((t) => t.jobId))
    expect(taskJobs.has(a.jobId) && taskJobs.has(b.jobId)).toBe(true)

    // A second driver of tenant A shares A's named actors and objects.
    const a2 = track(await driver(c, TOKEN_A))
    const same = await a2.getActor<Counter>('counter', { namespace: 'ns' })
    expect(same.actorId).toBe(counter.actorId)
    expect(await a2.get((same as unknown as { inc: { remote(n: number): ObjectRef<number> } }).inc.remote(100), { timeout: 10_000 })).toBe(
      111,
    )
    expect(await a2.get(new ObjectRef(secret.id), { timeout: 5000 })).toEqual({ secret: 'A only', n: 42 })
    expect((await a2.state.listJobs()).map((j) => j.jobId)).toEqual(expect.arrayContaining([a.jobId, a2.jobId]))
    expect(node.alive).toBe(true)
  })

  it('a task B pushes under its own lease cannot take A’s object as a large argument (the node asks whose it is)', async () => {
    const c = await coordinator()
    const node = track(await EvalNode.start({ address: c.url, token: NODE }))
    const a = track(await driver(c, TOKEN_A))
    const secret = await a.put(new Uint8Array(200_000).fill(7)) // large: passed to tasks by ref, fetched by the node
    // B speaks the wire itself: a lease of its own, then a push naming A's object (and where it lives) as an argument.
    const b = track(await Raw.open(c.url))
    const peerId = `d-${randomHex(27)}`
    const welcome = await b.hello('driver', TOKEN_B, { peerId })
    const bJob = welcome.jobId as string
    const steal = function steal(x: Uint8Array) {
      return x.length
    }
    const source = steal.toString()
    const functionId = functionIdOf(source)
    const taskId = newTaskId(bJob as JobId)
    b.send({
      type: 'lease-request',
      shapeId: 's1',
      resources: { CPU: 1 },
      strategy: 'DEFAULT',
      count: 1,
      head: { taskId, name: 'steal' },
    })
    const granted = await b.waitFor('the lease', (m) => m.type === 'lease-granted')
    const lease = granted.lease as { nodeId: string }
    const arg = { ref: secret.id, size: 200_000, locations: [...(c.cluster.objects.read(secret.id)?.locations ?? [node.nodeId])] }
    b.send({
      type: 'peer-send',
      to: lease.nodeId,
      msgs: [
        {
          type: 'push',
          lease,
          namespace: 'ns',
          tasks: [{ taskId, attempt: 0, functionId, name: 'steal', funcName: 'steal', args: [arg], numReturns: 1 }],
          functions: [{ functionId, name: 'steal', kind: 'function', source }],
        },
      ],
    })
    const back = await b.waitFor('the result', (m) => m.type === 'peer-recv')
    const [results] = back.msgs as { type: string; results: { ok: boolean; error?: { message: string } }[] }[]
    expect(results?.results[0]?.ok).toBe(false)
    expect(results?.results[0]?.error?.message).toMatch(/ObjectRef\(\w+\) is unknown to this coordinator/)
    expect(node.workers.tasksRun).toBe(0)
    // A's work is untouched.
    expect(node.alive).toBe(true)
    expect(await a.get(a.remote(double).remote(2), { timeout: 10_000 })).toBe(4)
  })
})

describe('5. function replacement', () => {
  it('refuses a registration whose id is not its source’s hash, from another tenant or A’s own; A’s code runs unchanged', async () => {
    const c = await coordinator()
    track(await EvalNode.start({ address: c.url, token: NODE, cpus: 4 }))
    const doubleId = functionIdOf(Function.prototype.toString.call(double))
    const counterId = functionIdOf(Function.prototype.toString.call(Counter))
    const forge = async (token: string) => {
      const raw = track(await Raw.open(c.url))
      expect((await raw.hello('driver', token)).type).toBe('welcome')
      raw.send({
        type: 'register-functions',
        functions: [
          { functionId: doubleId, name: 'double', kind: 'function', source: '() => "pwned"' },
          { functionId: counterId, name: 'Counter', kind: 'class', source: 'class Counter { inc() { return "pwned" } }' },
        ],
      })
      const err = await raw.waitFor('the refusal', (m) => m.type === 'error')
      expect((err.error as { message: string }).message).toMatch(/not the hash of its source/)
      expectNoInternals(
        errorsIn(raw.msgs)
          .map((e) => e.message + (e.stack ?? ''))
          .join('\n'),
      )
      return raw
    }
    // Before A ever used them, and after.
    await forge(TOKEN_B)
    await forge(TOKEN_A)
    const a = track(await driver(c, TOKEN_A))
    expect(await a.get(a.remote(double).remote(21), { timeout: 10_000 })).toBe(42)
    const h1 = a.remote(Counter).remote()
    expect(await a.get(h1.inc.remote(5), { timeout: 10_000 })).toBe(5)
    await forge(TOKEN_B)
    await forge(TOKEN_A)
    const admin = track(await Raw.open(c.url))
    expect((await admin.hello('driver', ADMIN)).type).toBe('welcome')
    admin.send({ type: 'register-functions', functions: [{ functionId: doubleId, name: 'double', kind: 'function', source: '() => 1' }] })
    expect(((await admin.waitFor('the refusal', (m) => m.type === 'error')).error as { message: string }).message).toMatch(/hash/)
    // A's next calls, and a new actor of A's class (its creation goes through the coordinator's function table).
    expect(await a.get(a.remote(double).remote(50), { timeout: 10_000 })).toBe(100)
    const h2 = a.remote(Counter).remote()
    expect(await a.get([h2.inc.remote(2), h1.inc.remote(1)], { timeout: 10_000 })).toEqual([2, 6])
    const a2 = track(await driver(c, TOKEN_A))
    expect(await a2.get(a2.remote(double).remote(8), { timeout: 10_000 })).toBe(16)
    expect(await a2.get(a2.remote(Counter).remote().inc.remote(3), { timeout: 10_000 })).toBe(3)
  })
})

describe('6. rogue nodes', () => {
  it('with auth on, a node without a token is refused (4001)', async () => {
    const c = await coordinator()
    const rogue = track(await Raw.open(c.url))
    expect(refusalOf(await rogue.hello('node'))?.message).toMatch(/requires a token/)
    expect((await rogue.waitClosed()).code).toBe(4001)
    expect(c.cluster.nodes.rows()).toEqual([])
    track(await EvalNode.start({ address: c.url, token: NODE }))
    const a = track(await driver(c, TOKEN_A))
    expect(await a.get(a.remote(double).remote(2), { timeout: 10_000 })).toBe(4)
  })

  it('with volunteers allowed, a tokenless node joins as a volunteer and gets no work of a job that did not opt in', async () => {
    const c = await coordinator({ volunteers: true })
    const trusted = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 2 }))
    const volunteer = track(await Raw.open(c.url))
    const welcome = await volunteer.hello('node')
    expect(welcome.type).toBe('welcome')
    const volunteerId = welcome.nodeId as string
    // It keeps itself alive, as a node does.
    const beat = setInterval(() => volunteer.send({ type: 'heartbeat', running: 0, workers: 0 }), 200)
    cleanups.push(() => clearInterval(beat))
    const a = track(await driver(c, TOKEN_A))
    const nodes = await a.state.listNodes()
    expect(nodes.find((n) => n.nodeId === volunteerId)?.trust).toBe('volunteer')
    expect(nodes.find((n) => n.nodeId === trusted.nodeId)?.trust).toBe('trusted')

    // A's job (no opt-in): 16 tasks and an actor. The volunteer has more CPUs, and gets none of it.
    const refs = Array.from({ length: 16 }, (_, i) => a.remote(slow).remote(i, 20))
    const h = a.remote(Counter).options({ numCpus: 0 }).remote()
    expect(await a.get(refs, { timeout: 15_000 })).toEqual(Array.from({ length: 16 }, (_, i) => i))
    expect(await a.get(h.inc.remote(3), { timeout: 10_000 })).toBe(3)
    expect((await a.state.listActors())[0]?.nodeId).toBe(trusted.nodeId)
    const ranOn = new Set((await a.state.listTasks()).map((t) => t.nodeId))
    expect(ranOn.has(volunteerId)).toBe(false)
    const work = volunteer.msgs.filter((m) =>
      ['assign', 'peer-recv', 'relay-down', 'kill-actor', 'upload-object', 'lease-ended'].includes(m.type),
    )
    expect(work).toEqual([])

    // A node speaking a driver's part on its own socket is refused.
    expect(refusalOf(await volunteer.request({ type: 'put', objectId: newPutObjectId(a.jobId), data: encodeValue(1, 'x') }))).toBeDefined()
    volunteer.send({ type: 'register-functions', functions: [] })
    await volunteer.waitFor('the refusal', (m) => m.type === 'error')
    // Nor may it read the state API, find, kill or cancel anything: a node names no tenant, and it acted as a driver
    // of tenant 'default' (the admin's): it listed the admin's job and could kill its actors.
    const admin = track(await driver(c, ADMIN))
    const adminActor = admin.remote(Counter).options({ numCpus: 0, name: 'admins', lifetime: 'detached' }).remote()
    expect(await admin.get(adminActor.inc.remote(1), { timeout: 10_000 })).toBe(1)
    const adminTask = admin.remote(slow).remote(1, 3000)
    for (const m of [
      { type: 'state', query: { resource: 'jobs' } },
      { type: 'get-actor', name: 'admins', namespace: admin.namespace },
      { type: 'kill-actor', actorId: adminActor.actorId, noRestart: true },
      { type: 'cancel', objectId: adminTask.id, force: true },
    ])
      expect(refusalOf(await volunteer.request(m))?.message, m.type).toMatch(/only for drivers/)
    expect(await admin.get(adminActor.inc.remote(1), { timeout: 10_000 })).toBe(2)
    expect(await admin.get(adminTask, { timeout: 10_000 })).toBe(1)

    // A's work still right, and still nowhere near the volunteer.
    expect(await a.get(a.remote(double).remote(33), { timeout: 10_000 })).toBe(66)
    expect(await a.get(h.inc.remote(1), { timeout: 10_000 })).toBe(4)
    expect(volunteer.msgs.filter((m) => ['assign', 'peer-recv'].includes(m.type))).toEqual([])
    expect(trusted.alive).toBe(true)
  })

  it('work that opts in (options volunteers: true) runs on a volunteer; work that does not waits for a trusted node', async () => {
    const c = await coordinator({ volunteers: true })
    const volunteer = track(await EvalNode.start({ address: c.url, cpus: 2, name: 'volunteer' }))
    const a = track(await driver(c, TOKEN_A))
    expect((await a.state.listNodes()).map((n) => n.trust)).toEqual(['volunteer'])
    const plain = a.remote(double).remote(1)
    const optIn = a.remote(double).options({ volunteers: true })
    expect(await a.get(optIn.remote(21), { timeout: 10_000 })).toBe(42)
    expect((await a.wait([plain], { timeout: 1000 })).ready).toEqual([])
    expect(volunteer.workers.tasksRun).toBe(1)
    // A trusted node joins: the waiting task runs there.
    const trusted = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 2 }))
    expect(await a.get(plain, { timeout: 10_000 })).toBe(2)
    expect(trusted.workers.tasksRun).toBe(1)
  })

  /** A coordinator that admits volunteers, one trusted node, a volunteer on a raw socket, and A's driver with a job running. */
  async function volunteerSetup() {
    const c = await coordinator({ volunteers: true })
    const trusted = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 2 }))
    const volunteer = track(await Raw.open(c.url))
    expect((await volunteer.hello('node')).type).toBe('welcome')
    const beat = setInterval(() => volunteer.send({ type: 'heartbeat', running: 0, workers: 0 }), 200)
    cleanups.push(() => clearInterval(beat))
    const a = track(await driver(c, TOKEN_A))
    const h = a.remote(Counter).options({ numCpus: 0 }).remote()
    expect(await a.get(h.inc.remote(1), { timeout: 10_000 })).toBe(1)
    /** The messages the coordinator sent back on one of the volunteer's worker channels. */
    const channelSays = (channel: string) =>
      volunteer.msgs
        .filter((m) => m.type === 'relay-down' && m.channel === channel)
        .flatMap((m) => decodeFrames(m.frame as Uint8Array) as Msg[])
    /** Says `msgs` on a new worker channel of the volunteer, ending with a state query: resolves once that is answered. */
    const onChannel = async (msgs: Record<string, unknown>[]) => {
      const channel = `${randomHex(28)}/${a.jobId}`
      volunteer.send({
        type: 'relay-up',
        channel,
        frame: encodeFrame([...msgs, { type: 'state', reqId: 99, query: { resource: 'jobs' } }]),
      })
      await until('the channel’s last reply', () => channelSays(channel).some((m) => m.type === 'reply' && m.reqId === 99))
      return channelSays(channel)
    }
    const check = async () => {
      expect(await a.get(a.remote(double).remote(33), { timeout: 10_000 })).toBe(66)
      expect(await a.get(h.inc.remote(1), { timeout: 10_000 })).toBe(2)
      expect(volunteer.msgs.filter((m) => ['assign', 'peer-recv'].includes(m.type))).toEqual([])
      expect(trusted.alive).toBe(true)
    }
    return { c, a, trusted, volunteer, onChannel, check }
  }

  const hello = (extra: Record<string, unknown>) => ({ type: 'hello', reqId: 1, protocol: PROTOCOL_VERSION, role: 'driver', ...extra })

  it('a volunteer’s worker channel cannot attach to a job its node runs no task of', async () => {
    const { a, onChannel, check } = await volunteerSetup()
    const said = await onChannel([hello({ attachJob: a.jobId })])
    expect(refusalOf(said.find((m) => m.type === 'reply' && m.reqId === 1) as Msg)?.message).toMatch(/runs no task of job/)
    expect(said.filter((m) => m.type === 'welcome' || (m.type === 'reply' && m.ok))).toEqual([])
    await check()
  })

  it('a volunteer’s worker channel cannot start a job of its own (no token was ever shown)', async () => {
    const { c, a, onChannel, check } = await volunteerSetup()
    const said = await onChannel([hello({}), hello({ token: TOKEN_B })])
    expect(said.filter((m) => m.type === 'welcome' || (m.type === 'reply' && m.ok))).toEqual([])
    expect(c.cluster.jobs.list().map((j) => j.jobId)).toEqual([a.jobId])
    await check()
  })

  it('a volunteer’s worker channel cannot register a node (let alone a trusted one)', async () => {
    const { c, onChannel, check } = await volunteerSetup()
    const said = await onChannel([
      hello({ role: 'node', node: { resources: { CPU: 64 }, objectStoreMemory: 1e9 } }),
      hello({ role: 'node', token: NODE, node: { resources: { CPU: 64 }, objectStoreMemory: 1e9 } }),
    ])
    // What matters most first: no node joined, least of all a trusted one; then that the channel heard no welcome.
    expect(
      c.cluster.nodes
        .rows()
        .map((n) => n.trust)
        .sort(),
    ).toEqual(['trusted', 'volunteer'])
    expect(said.filter((m) => m.type === 'welcome')).toEqual([])
    await check()
  })
})

/** The longest the event loop was blocked (ms) while `run` ran: the coordinator shares this process. */
async function maxLoopLag<T>(run: () => Promise<T>): Promise<{ value: T; lagMs: number }> {
  let lagMs = 0
  let last = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    lagMs = Math.max(lagMs, now - last - 20)
    last = now
  }, 20)
  try {
    return { value: await run(), lagMs }
  } finally {
    clearInterval(timer)
  }
}

/** Waits until `raw` has heard nothing for `quietMs` (bounded by `maxMs`). */
async function quietFor(raw: Raw, quietMs: number, maxMs = 10_000): Promise<void> {
  const end = Date.now() + maxMs
  let seen = -1
  let since = Date.now()
  while (Date.now() < end) {
    if (raw.framesIn !== seen) {
      seen = raw.framesIn
      since = Date.now()
    } else if (Date.now() - since >= quietMs) return
    await sleep(20)
  }
}

describe('7. denial of service: one client’s flood costs others nothing, and gets few small answers', { timeout: 30_000 }, () => {
  const HEARTBEAT_TIMEOUT_MS = 1500

  async function floodSetup(extra: CoordinatorOptions = {}) {
    const log: string[] = []
    const c = await coordinator({ heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, log: (l) => log.push(l), ...extra })
    // A healthy node beats 6 times per timeout (as the defaults: 1 s against 5 s).
    const node = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 4, heartbeatMs: 250 }))
    const a = track(await driver(c, TOKEN_A))
    const kept = await a.put({ kept: true })
    expect(await a.get(a.remote(double).remote(1), { timeout: 10_000 })).toBe(2)
    const attacker = track(await Raw.open(c.url))
    expect((await attacker.hello('driver', TOKEN_F)).type).toBe('welcome')
    const stillFine = async () => {
      // Long enough for the heartbeat monitor to have judged the node on what happened.
      await sleep(HEARTBEAT_TIMEOUT_MS + 500)
      expect(node.alive, `node closed: ${node.closedReason}`).toBe(true)
      expect(log.filter((l) => /DEAD|internal error/.test(l))).toEqual([])
      expect((await a.state.listNodes()).find((n) => n.nodeId === node.nodeId)?.state).toBe('ALIVE')
      const refs = Array.from({ length: 32 }, (_, i) => a.remote(double).remote(i))
      expect(await a.get(refs, { timeout: 10_000 })).toEqual(Array.from({ length: 32 }, (_, i) => i * 2))
      expect(await a.get(kept, { timeout: 5000 })).toEqual({ kept: true })
      expect((await fetch(`${c.url}/healthz`)).status).toBe(200)
    }
    const answers = () => {
      expectNoInternals(
        errorsIn(attacker.msgs)
          .map((e) => e.message + (e.stack ?? ''))
          .join('\n'),
      )
      expect(attacker.bytesIn, `reply bytes (${attacker.msgs.length} messages)`).toBeLessThan(64 * 1024)
      return attacker.msgs.filter((m) => m.type !== 'welcome')
    }
    return { c, attacker, stillFine, answers }
  }

  it('a submit of 300,000 junk specs: a few small errors, no node declared dead, a real job runs after', async () => {
    const { attacker, stillFine, answers } = await floodSetup()
    const { lagMs } = await maxLoopLag(async () => {
      attacker.send({ type: 'submit', tasks: new Array(300_000).fill(0) })
      await attacker.waitFor('an answer', (m) => m.type === 'error' || m.type === 'reply', 15_000)
      await quietFor(attacker, 300)
    })
    const got = answers()
    expect(got.length).toBeGreaterThan(0)
    expect(got.length).toBeLessThanOrEqual(20)
    expect(lagMs, 'the longest the coordinator blocked its event loop').toBeLessThan(HEARTBEAT_TIMEOUT_MS)
    await stillFine()
  })

  it('a frame of 100,001 junk messages is refused whole; one of 100,000 gets at most 17 answers', async () => {
    const { attacker, stillFine, answers } = await floodSetup()
    const { lagMs } = await maxLoopLag(async () => {
      attacker.send(Array.from({ length: 100_001 }, (_, i) => ({ type: 'junk', i })))
      await attacker.waitFor('the refusal', (m) => m.type === 'error')
      const junk = [0, 'x', null, [], { type: 'put' }, { type: 'nope', reqId: 1 }, { type: 'subscribe', objectIds: ['zz'] }]
      attacker.send(Array.from({ length: 100_000 }, (_, i) => junk[i % junk.length]))
      await attacker.waitFor(
        'the summary',
        (m) => m.type === 'error' && /more invalid/.test((m.error as { message: string }).message),
        15_000,
      )
      await quietFor(attacker, 300)
    })
    const got = answers()
    expect(((got[0] as Msg).error as { message: string }).message).toMatch(/at most 100000 messages/)
    // One for the refused frame; for the other, 16 answered one by one and one summary.
    expect(got.length).toBeLessThanOrEqual(1 + 17)
    expect(lagMs).toBeLessThan(HEARTBEAT_TIMEOUT_MS)
    await stillFine()
  })

  /** A flood whose answers are the attacker's problem: this process (which hosts the coordinator too) does not decode them. */
  async function validFlood(flood: unknown) {
    const { attacker, stillFine } = await floodSetup()
    attacker.decode = false
    const welcomed = attacker.framesIn
    const frame = encodeFrame(flood).slice()
    const { lagMs } = await maxLoopLag(async () => {
      attacker.sendBytes(frame)
      await until('the first answer', () => attacker.framesIn > welcomed, 10_000)
      await quietFor(attacker, 500, 20_000)
    })
    console.log(`[dos] ${attacker.framesIn} frames, ${attacker.bytesIn} bytes back, the event loop blocked up to ${lagMs.toFixed(0)} ms`)
    // First what a node sees, then how long the coordinator held the event loop (a stall it excuses still hurts).
    await stillFine()
    expect(lagMs, 'the longest the coordinator blocked its event loop').toBeLessThan(HEARTBEAT_TIMEOUT_MS)
  }

  it('a subscribe of 200,000 forged ids (one message) stalls no one', async () => {
    await validFlood({ type: 'subscribe', objectIds: Array.from({ length: 200_000 }, () => randomHex(28)) })
  })

  it('a client that stops reading its replies is closed (4008), not buffered without bound', async () => {
    const { attacker, stillFine } = await floodSetup({ maxUnreadBytes: 16 * 1024 * 1024 })
    attacker.decode = false
    const socket = (attacker.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket
    socket.pause()
    // Each asks ~30 MB of 'unknown object' answers; the coordinator may hold 16 MiB of them unread here, then it lets go.
    const frame = encodeFrame({ type: 'subscribe', objectIds: Array.from({ length: 100_000 }, () => randomHex(28)) }).slice()
    for (let i = 0; i < 4; i++) attacker.sendBytes(frame)
    // The coordinator answers ~100,000 ids a second: long enough unread for its answers to pile up past the bound.
    await sleep(5000)
    socket.resume()
    await until('the coordinator closes the socket', () => !!attacker.closed, 20_000)
    // It was let go well before all it asked for (4 × ~30 MB) was sent.
    expect(attacker.bytesIn).toBeLessThan(64 * 1024 * 1024)
    expect(attacker.closed?.code).toBe(4008)
    expect(attacker.closed?.reason).toMatch(/not reading/)
    await stillFine()
  })

  it('100,000 state queries in one frame stall no one', async () => {
    await validFlood(Array.from({ length: 100_000 }, (_, i) => ({ type: 'state', reqId: i + 1, query: { resource: 'status' } })))
  })
})

// ---- 8. fuzz ----

/** Every message type a client may send, read from the schema the edge validates with (new types are fuzzed too). */
const CLIENT_TYPES = ClientMessageSchema.options.map((o) => o.entries.type.literal)

/** Ids the fuzzers aim at: the legitimate job's own (they must not be able to touch them), and random ones. */
interface Targets {
  jobIds: string[]
  actorIds: string[]
  objectIds: string[]
  taskIds: string[]
  nodeIds: string[]
}

class Fuzzer {
  constructor(
    readonly rng: Rng,
    private readonly targets: Targets,
  ) {}

  private hex(n: number): string {
    let s = ''
    for (let i = 0; i < n; i++) s += '0123456789abcdef'[this.rng.int(16)]
    return s
  }
  private pickOr(xs: string[], n: number): string {
    return xs.length && this.rng.chance(0.6) ? this.rng.pick(xs) : this.hex(n)
  }
  objectId = () => this.pickOr(this.targets.objectIds, 56)
  taskId = () => this.pickOr(this.targets.taskIds, 48)
  actorId = () => this.pickOr(this.targets.actorIds, 32)
  jobId = () => this.pickOr(this.targets.jobIds, 8)
  nodeId = () => this.pickOr(this.targets.nodeIds, 56)
  ids = (f: () => string) => Array.from({ length: this.rng.int(6) }, f)

  /** Any value msgpack (with msgpackr's extensions) can carry. */
  junk(depth = 0): unknown {
    const r = this.rng
    switch (r.int(depth > 3 ? 12 : 16)) {
      case 0:
        return r.int(2 ** 31) - 2 ** 30
      case 1:
        return r.pick([Number.NaN, Number.POSITIVE_INFINITY, -0, 2 ** 53 + 1, -1, 1e308, 0.5, 2 ** 32])
      case 2:
        return r.pick(['', 'x', 'hello', '__proto__', 'constructor', '../../etc/passwd', '\u0000', 'ä'.repeat(r.int(300))])
      case 3:
        return this.hex(r.pick([8, 32, 48, 56, 57, 55, 64]))
      case 4:
        return r.chance(0.5)
      case 5:
        return null
      case 6:
        return undefined
      case 7:
        return r.fill(new Uint8Array(r.int(64)))
      case 8:
        return BigInt(r.int(1000)) * 10n ** 15n
      case 9:
        return r.pick([new Date(r.int(2 ** 31)), new Map([[1, 2]]), new Set([1]), /a+$/, new Error('boom'), new Float64Array(3)])
      case 10:
        return r.pick(CLIENT_TYPES)
      case 11:
        return JSON.parse('{"__proto__": {"polluted": true}, "type": "state"}')
      case 12:
      case 13:
        return Array.from({ length: r.int(5) }, () => this.junk(depth + 1))
      default: {
        const o: Record<string, unknown> = {}
        for (let i = r.int(5); i > 0; i--)
          o[r.pick(['type', 'reqId', 'objectIds', 'tasks', 'x', 'node', 'role', 'token'])] = this.junk(depth + 1)
        return o
      }
    }
  }

  /** A message of a real type, mostly well formed, aimed at the targets; sometimes mutated. */
  message(): Record<string, unknown> {
    const r = this.rng
    const type = r.pick(CLIENT_TYPES)
    const reqId = r.int(1000)
    const bytes = () => r.fill(new Uint8Array(r.int(100)))
    const resources = () => r.pick([{ CPU: 1 }, { CPU: 1000 }, { GPU: 1 }, {}, { CPU: -1 }, { CPU: Number.NaN }])
    const m: Record<string, unknown> = { type }
    switch (type) {
      case 'hello':
        Object.assign(m, {
          reqId,
          protocol: r.pick([PROTOCOL_VERSION, 0, 99]),
          role: r.pick(['driver', 'node', 'admin']),
          ...(r.chance(0.5) && { token: r.pick([`${TOKEN_F}x`, ADMIN.slice(0, -1), 'x', '']) }),
          ...(r.chance(0.3) && { attachJob: this.jobId() }),
          ...(r.chance(0.3) && { node: { resources: resources(), objectStoreMemory: r.int(1e9) } }),
          ...(r.chance(0.2) && { peerId: `d-${this.hex(54)}` }),
        })
        break
      case 'register-functions': {
        const source = r.pick(['() => 1', 'class X {}', 'function f(){ while(true){} }'])
        m.functions = [
          { functionId: r.chance(0.5) ? functionIdOf(source) : this.hex(64), name: 'f', kind: r.pick(['function', 'class']), source },
        ]
        break
      }
      case 'submit':
        m.tasks = Array.from({ length: r.int(4) }, () => ({
          taskId: r.chance(0.5) ? `${this.hex(40)}${this.jobId()}` : this.taskId(),
          type: r.pick(['NORMAL_TASK', 'ACTOR_CREATION_TASK', 'ACTOR_TASK']),
          functionId: this.hex(64),
          name: 'x',
          funcName: 'x',
          args: [{ v: bytes() }, { ref: this.objectId() }],
          numReturns: r.int(3),
          resources: resources(),
          maxRetries: r.int(3) - 1,
          retryExceptions: false,
          strategy: r.pick(['DEFAULT', 'SPREAD', { nodeId: this.nodeId(), soft: false }]),
          actorId: this.actorId(),
          ...(r.chance(0.5) && {
            actor: {
              className: 'X',
              methods: ['m'],
              name: 'keeper',
              namespace: 'ns',
              getIfExists: r.chance(0.5),
              detached: r.chance(0.5),
              maxConcurrency: 1,
              maxRestarts: 0,
              maxTaskRetries: 0,
            },
          }),
        }))
        break
      case 'put':
        Object.assign(m, { reqId, objectId: this.objectId(), data: bytes(), ...(r.chance(0.3) && { nestedRefs: this.ids(this.objectId) }) })
        break
      case 'subscribe':
      case 'release':
      case 'borrow':
      case 'unborrow':
      case 'fetch-objects':
        m.objectIds = this.ids(this.objectId)
        break
      case 'free':
        Object.assign(m, { reqId, objectIds: this.ids(this.objectId) })
        break
      case 'cancel':
        Object.assign(m, { reqId, objectId: this.objectId(), force: r.chance(0.5), recursive: r.chance(0.5) })
        break
      case 'state':
        Object.assign(m, {
          reqId,
          query: {
            resource: r.pick(['tasks', 'nodes', 'jobs', 'actors', 'objects', 'summary-tasks', 'status', 'secrets']),
            ...(r.chance(0.5) && { filters: [[r.pick(['jobId', 'tenant', 'name', '__proto__']), r.pick(['=', '!=', '<']), this.jobId()]] }),
            ...(r.chance(0.3) && { limit: r.pick([1, 0, -1, 1e9, 0.5]) }),
          },
        })
        break
      case 'get-actor':
        Object.assign(m, { reqId, name: r.pick(['keeper', 'x', '']), namespace: r.pick(['ns', '', 'default']) })
        break
      case 'kill-actor':
        Object.assign(m, { reqId, actorId: this.actorId(), noRestart: r.chance(0.5) })
        break
      case 'heartbeat':
        Object.assign(m, { running: r.int(10), workers: r.int(10), storeUsed: r.int(1e9) })
        break
      case 'object-chunk':
        Object.assign(m, {
          objectId: this.objectId(),
          offset: r.int(1e6),
          total: r.int(1e6),
          data: bytes(),
          ...(r.chance(0.3) && { reqId }),
        })
        break
      case 'put-remote':
        Object.assign(m, { reqId, objectId: this.objectId(), size: r.int(1e9), peerId: `d-${this.hex(54)}` })
        break
      case 'objects-stored':
        m.objects = this.ids(this.objectId).map((objectId) => ({ objectId, size: r.int(1e6) }))
        break
      case 'objects-spilled':
        Object.assign(m, { objectIds: this.ids(this.objectId), spilled: r.chance(0.5), ...(r.chance(0.2) && { log: 'x' }) })
        break
      case 'upload-failed':
        Object.assign(m, { objectId: this.objectId(), reason: 'x' })
        break
      case 'may-use':
        Object.assign(m, { reqId, jobId: this.jobId(), objectJobIds: this.ids(this.jobId) })
        break
      case 'task-events':
        Object.assign(m, {
          events: Array.from({ length: r.int(4) }, () => ({
            taskId: this.taskId(),
            attempt: r.int(3),
            state: r.pick(['RUNNING', 'FINISHED', 'FAILED', 'PENDING_NODE_ASSIGNMENT', 'NOPE']),
            time: Date.now(),
            ...(r.chance(0.3) && { error: { name: 'TaskError', code: 'TASK_ERROR', message: 'forged' } }),
          })),
          ...(r.chance(0.2) && { dropped: r.int(1e6) }),
        })
        break
      case 'task-results':
        m.results = Array.from({ length: r.int(3) }, () =>
          r.chance(0.5)
            ? { taskId: this.taskId(), attempt: r.int(2), ok: true, returns: [bytes()] }
            : { taskId: this.taskId(), attempt: r.int(2), ok: false, error: { name: 'X', code: 'X', message: 'forged' }, userError: true },
        )
        break
      case 'actor-died':
        Object.assign(m, { actorId: this.actorId(), attempt: r.int(2), reason: 'forged' })
        break
      case 'relay-up':
        Object.assign(m, {
          channel: `${this.hex(56)}/${this.jobId()}`,
          frame: r.chance(0.5) ? encodeFrame(this.message()).slice() : bytes(),
        })
        break
      case 'relay-close':
        m.channels = [this.hex(10)]
        break
      case 'publish':
        m.objects = this.ids(this.objectId).map((objectId) => ({ objectId, ...(r.chance(0.5) && { data: bytes() }) }))
        break
      case 'lease-request':
        Object.assign(m, {
          shapeId: this.hex(4),
          resources: resources(),
          strategy: r.pick(['DEFAULT', 'SPREAD', { nodeId: this.nodeId(), soft: r.chance(0.5) }]),
          count: r.int(2000),
          head: { taskId: this.taskId(), name: 'x' },
        })
        break
      case 'lease-cancel':
        m.shapeId = this.hex(4)
        break
      case 'lease-return':
        m.leaseIds = [this.hex(32)]
        break
      case 'lease-blocked':
        Object.assign(m, { leaseId: this.hex(32), blocked: r.chance(0.5) })
        break
      case 'actor-lease-request':
        m.actorId = this.actorId()
        break
      case 'peer-send':
        Object.assign(m, {
          to: r.pick([this.nodeId(), `d-${this.hex(54)}`, 'nowhere']),
          msgs: [
            r.pick([
              { type: 'push', lease: this.junk(), namespace: 'ns', tasks: [] },
              { type: 'cancel', leaseId: this.hex(32), taskId: this.taskId(), force: true },
              { type: 'results', leaseId: this.hex(32), results: [] },
              this.junk(),
            ]),
          ],
        })
        break
    }
    // Mutations: a field dropped, one of the wrong kind, one too many.
    if (r.chance(0.25)) {
      const keys = Object.keys(m)
      const k = r.pick(keys)
      if (r.chance(0.5) && k !== 'type') delete m[k]
      else m[k === 'type' && r.chance(0.7) ? 'reqId' : k] = this.junk()
    }
    if (r.chance(0.05)) m.extra = this.junk()
    return m
  }

  /** One frame of any kind. */
  frame(): Uint8Array | string {
    const r = this.rng
    const k = r.int(100)
    if (k < 18) return r.fill(new Uint8Array(r.int(r.chance(0.9) ? 64 : 4096)))
    if (k < 33) {
      const whole = encodeFrame(r.chance(0.5) ? this.message() : Array.from({ length: 1 + r.int(5) }, () => this.message())).slice()
      return whole.subarray(0, r.int(whole.length))
    }
    if (k < 45) return encodeFrame(this.junk()).slice()
    if (k < 80) return encodeFrame(this.message()).slice()
    if (k < 92) return encodeFrame(Array.from({ length: 2 + r.int(40) }, () => (r.chance(0.8) ? this.message() : this.junk()))).slice()
    if (k < 96)
      return r.chance(0.5)
        ? JSON.stringify(this.message(), (_k, v) => (typeof v === 'bigint' ? String(v) : v))
        : String.fromCharCode(...r.fill(new Uint8Array(r.int(200))))
    if (k < 98) {
      // Deep nesting: [[[[…]]]] thousands deep, bare or inside a message.
      const depth = r.pick([100, 3000, 20_000, 200_000])
      const deep = new Uint8Array(depth + 1).fill(0x91)
      deep[depth] = 0xc0
      if (r.chance(0.5)) return deep
      const head = encodeFrame({ type: 'peer-send', to: this.nodeId(), msgs: [0] }).slice()
      // Replace the last element (the 0 at the end) by the nested arrays.
      const out = new Uint8Array(head.length - 1 + deep.length)
      out.set(head.subarray(0, head.length - 1))
      out.set(deep, head.length - 1)
      return out
    }
    return encodeFrame(this.message()).slice()
  }

  /** A rare expensive frame: a huge array, or a frame over the limit. */
  big(maxFrameBytes: number): Uint8Array {
    const r = this.rng
    switch (r.int(5)) {
      case 0:
        return encodeFrame(new Array(100_000 + r.int(100_000)).fill(0)).slice()
      case 1:
        return encodeFrame({ type: 'release', objectIds: new Array(50_000 + r.int(100_000)).fill('zz') }).slice()
      case 2:
        return encodeFrame({ type: 'submit', tasks: new Array(50_000 + r.int(50_000)).fill({ taskId: 1 }) }).slice()
      case 3:
        return r.fill(new Uint8Array(maxFrameBytes + 1 + r.int(maxFrameBytes / 2)))
      default:
        return encodeFrame({ type: 'put', reqId: 1, objectId: this.objectId(), data: new Uint8Array(maxFrameBytes + 10) }).slice()
    }
  }
}

describe('8. fuzz: malformed, truncated, oversized and out-of-order frames change nothing', { timeout: 60_000 }, () => {
  it('≥ 20,000 frames from a few connections: the coordinator stays up, the legitimate job is intact and still runs', async () => {
    const seed = Number(process.env.SHOAL_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`[fuzz] seed ${seed} (replay with SHOAL_FUZZ_SEED=${seed})`)
    const MAX_FRAME = 1024 * 1024
    const log: string[] = []
    const c = await coordinator({ maxFrameBytes: MAX_FRAME, heartbeatTimeoutMs: 3000, log: (l) => log.push(l) })
    const node = track(await EvalNode.start({ address: c.url, token: NODE, cpus: 4, heartbeatMs: 500 }))
    const a = track(await driver(c, TOKEN_A))
    const admin = track(await driver(c, ADMIN))

    // The legitimate job's state before.
    const kept = await a.put({ legit: [1, 2, 3] })
    const keeper = a.remote(Counter).options({ name: 'keeper', namespace: 'ns' }).remote()
    expect(await a.get(keeper.inc.remote(1), { timeout: 10_000 })).toBe(1)
    const early = Array.from({ length: 8 }, (_, i) => a.remote(double).remote(i))
    expect(await a.get(early, { timeout: 10_000 })).toEqual([0, 2, 4, 6, 8, 10, 12, 14])
    const actorsBefore = (await admin.state.listActors()).map((x) => `${x.actorId}:${x.state}`)
    const aObjectsBefore = (await admin.state.listObjects()).map((o) => o.objectId).filter((id) => id.slice(40, 48) === a.jobId)
    const targets: Targets = {
      jobIds: [a.jobId, admin.jobId],
      actorIds: [keeper.actorId],
      objectIds: [kept.id, ...early.map((r) => r.id), ...aObjectsBefore],
      taskIds: early.map((r) => r.id.slice(0, 48)),
      nodeIds: [node.nodeId],
    }

    // The fuzzers: one that never says hello (its first hello may be refused: it reconnects), two drivers of their
    // own tenant, and a node with a node token (it offers no CPU, so no legitimate work lands on it).
    type Kind = 'anonymous' | 'driver' | 'node'
    const kinds: Kind[] = ['anonymous', 'driver', 'driver', 'node']
    const answers: Msg[] = []
    let answerBytes = 0
    let reconnects = 0
    let sent = 0
    const TOTAL = 20_000
    const open = async (kind: Kind): Promise<Raw> => {
      const raw = await Raw.open(c.url)
      cleanups.push(() => raw.close())
      if (kind === 'driver') expect((await raw.hello('driver', TOKEN_F)).type).toBe('welcome')
      if (kind === 'node') {
        raw.send({
          type: 'hello',
          reqId: 0,
          protocol: PROTOCOL_VERSION,
          role: 'node',
          token: NODE,
          node: { resources: { fuzz: 1 }, objectStoreMemory: 1e6 },
        })
        await raw.waitFor('welcome', (m) => m.type === 'welcome')
      }
      return raw
    }
    const run = async (kind: Kind, i: number) => {
      const fz = new Fuzzer(new Rng(seed + i), targets)
      let raw = await open(kind)
      const share = TOTAL / kinds.length
      let bigs = 0
      for (let n = 0; n < share; n++) {
        if (raw.closed) {
          answers.push(...raw.msgs)
          answerBytes += raw.bytesIn
          reconnects++
          raw = await open(kind)
        }
        const big = fz.rng.chance(0.002) && bigs < 8
        if (big) bigs++
        raw.sendBytes(big ? fz.big(MAX_FRAME) : fz.frame())
        sent++
        // Let the coordinator (and everyone else) breathe now and then, as a network would.
        if (n % 50 === 49) {
          await new Promise((r) => setImmediate(r))
          while (raw.ws.bufferedAmount > 4 * 1024 * 1024 && !raw.closed) await sleep(5)
        }
      }
      await sleep(200)
      answers.push(...raw.msgs)
      answerBytes += raw.bytesIn
      raw.close()
    }
    // Legitimate work goes on meanwhile.
    const during = Array.from({ length: 40 }, (_, i) => a.remote(double).remote(100 + i))
    const t0 = performance.now()
    const { lagMs } = await maxLoopLag(() => Promise.all(kinds.map((k, i) => run(k, i))))
    console.log(
      `[fuzz] ${sent} frames in ${((performance.now() - t0) / 1000).toFixed(1)} s, ${reconnects} reconnects, ` +
        `${answers.length} answers (${answerBytes} bytes), event loop blocked up to ${lagMs.toFixed(0)} ms`,
    )
    expect(sent).toBeGreaterThanOrEqual(TOTAL)

    // The coordinator is up, told no one how it is built, and failed on nothing.
    expect((await fetch(`${c.url}/healthz`)).status).toBe(200)
    const errors = errorsIn(answers)
    expect(errors.filter((e) => e.stack !== undefined)).toEqual([])
    expectNoInternals(errors.map((e) => e.message).join('\n'))
    expect(Math.max(0, ...errors.map((e) => e.message.length))).toBeLessThanOrEqual(301)
    const internal = log.filter((l) => /internal error|TypeError|RangeError/.test(l))
    if (internal.length) console.log(`[fuzz] coordinator internal errors:\n${internal.slice(0, 5).join('\n')}`)
    expect(internal).toEqual([])
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()

    // No node died; the legitimate node is alive and well.
    expect(node.alive, `node closed: ${node.closedReason}`).toBe(true)
    expect(node.errors.filter((e) => !/refused|invalid|malformed/.test(e))).toEqual([])
    const legitNode = (await admin.state.listNodes()).find((n) => n.nodeId === node.nodeId)
    expect(legitNode?.state).toBe('ALIVE')
    expect(log.filter((l) => l.includes(`node ${node.nodeId.slice(0, 8)} is DEAD`))).toEqual([])

    // The legitimate job: what it had is intact, what it ran meanwhile is right, and it still runs.
    expect(await a.get(during, { timeout: 15_000 })).toEqual(Array.from({ length: 40 }, (_, i) => 200 + 2 * i))
    expect(await a.get(kept, { timeout: 5000 })).toEqual({ legit: [1, 2, 3] })
    expect(await a.get(early, { timeout: 5000 })).toEqual([0, 2, 4, 6, 8, 10, 12, 14])
    expect(await a.get(keeper.inc.remote(1), { timeout: 10_000 })).toBe(2)
    const after = Array.from({ length: 100 }, (_, i) => a.remote(double).remote(i))
    expect(await a.get(after, { timeout: 15_000 })).toEqual(Array.from({ length: 100 }, (_, i) => 2 * i))
    const a2 = track(await driver(c, TOKEN_A))
    expect((await a2.getActor('keeper', { namespace: 'ns' })).actorId).toBe(keeper.actorId)

    // Nothing changed that the fuzzers could have changed (all listed at once, so one run shows every problem).
    const changed: string[] = []
    const actorsNow = (await admin.state.listActors()).map((x) => `${x.actorId}:${x.state}`)
    if (JSON.stringify(actorsNow) !== JSON.stringify(actorsBefore)) changed.push(`actors were ${actorsBefore} and are ${actorsNow}`)
    const objectsNow = new Set((await admin.state.listObjects()).map((o) => o.objectId))
    for (const id of aObjectsBefore) if (!objectsNow.has(id)) changed.push(`A's object ${id} is gone`)
    // Asked by A itself: its own latest task events go to the coordinator first.
    const aTasks = await a.state.listTasks({ filters: [['jobId', '=', a.jobId]] })
    const legitNames = ['double', 'Counter.__init__', 'Counter.inc']
    for (const t of aTasks)
      if (t.state !== 'FINISHED' || !legitNames.includes(t.name)) changed.push(`A's task ${t.name} ${t.taskId} is ${t.state}`)
    const jobs = await admin.state.listJobs()
    if (jobs.find((j) => j.jobId === a.jobId)?.state !== 'RUNNING') changed.push('A’s job is not RUNNING')
    for (const j of jobs)
      if (!['a', 'fuzz', 'default'].includes(j.tenant))
        changed.push(`job ${j.jobId} of tenant '${j.tenant}' started without a token of that tenant`)
    // Every node besides the legitimate one is one of the node fuzzer's sockets (it offers only `fuzz`).
    for (const n of await admin.state.listNodes())
      if (n.nodeId !== node.nodeId && n.resources.fuzz !== 1)
        changed.push(`node ${n.nodeId.slice(0, 8)} (${n.trust}, ${JSON.stringify(n.resources)}) joined without a socket of its own`)
    expect(changed).toEqual([])
  })
})
