import { afterEach, describe, expect, it } from 'vitest'
import {
  connect,
  GetTimeoutError,
  type Mesh,
  ObjectRef,
  ObjectStoreFullError,
  TaskCancelledError,
  TaskError,
  ValidationError,
  VerificationError,
} from '../sdk/index.ts'
import { Credentials } from './auth.ts'
import { TEST_TOKENS, testCredentials } from './credentials.fixture.ts'
import { EvalNode } from './eval-node.fixture.ts'
import { type CoordinatorOptions, type RunningCoordinator, startCoordinator } from './server.ts'

/*
 * Verified results (docs/trust.md): a task with `verify: { replicas: N }` runs on N distinct nodes and its result is
 * accepted only when they agree. Real coordinator, real Node driver (`connect`), in-process nodes that run the
 * functions' sources — some of which lie (`forge`).
 */

const { ADMIN, NODE, TOKEN_A } = TEST_TOKENS
const credentials = testCredentials

const square = function square(x: number) {
  return x * x
}
const slowSquare = async function slowSquare(x: number, ms: number) {
  await new Promise((r) => setTimeout(r, ms))
  return x * x
}
const throws = function throws(x: number) {
  throw new RangeError(`no square for ${x}`)
}
/** A forger's lie: a plausible wrong answer. */
const lie = (value: unknown) => (typeof value === 'number' ? value + 1 : value)

const cleanups: (() => unknown)[] = []
function track<T extends Mesh | EvalNode | RunningCoordinator>(x: T): T {
  cleanups.push(() => (x instanceof EvalNode ? x.stop() : x.close()))
  return x
}
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await Promise.resolve(f()).catch(() => {})
})

async function coordinator(opts: CoordinatorOptions = {}): Promise<RunningCoordinator> {
  return track(await startCoordinator({ port: 0, credentials: credentials(), log: () => {}, ...opts }))
}
async function driver(c: RunningCoordinator): Promise<Mesh> {
  return track(await connect({ address: c.url, token: TOKEN_A, peerLinks: 'relay', timeout: 10_000 }))
}
/** Nodes start one after another: packing walks nodes in the order they joined, so the first gets the first replica. */
async function nodes(c: RunningCoordinator, specs: { forge?: boolean; name: string; heartbeatMs?: number }[]): Promise<EvalNode[]> {
  const out: EvalNode[] = []
  for (const s of specs)
    out.push(
      track(
        await EvalNode.start({
          address: c.url,
          token: NODE,
          cpus: 2,
          name: s.name,
          ...(s.forge && { forge: lie }),
          ...(s.heartbeatMs && { heartbeatMs: s.heartbeatMs }),
        }),
      ),
    )
  return out
}

describe('verified tasks (verify: { replicas: N })', () => {
  it('runs on N distinct nodes and returns what they agree on; nobody is quarantined', async () => {
    const c = await coordinator()
    const ns = await nodes(c, [{ name: 'n1' }, { name: 'n2' }, { name: 'n3' }])
    const a = await driver(c)
    const verified = a.remote(square).options({ verify: { replicas: 3 } })
    expect(await a.get(verified.remote(7), { timeout: 10_000 })).toBe(49)
    expect(ns.map((n) => n.workers.tasksRun)).toEqual([1, 1, 1])
    const rows = await a.state.listNodes()
    expect(rows.map((r) => r.quarantined)).toEqual([null, null, null])
    const [task] = await a.state.listTasks({ filters: [['name', '=', 'square']] })
    expect(task?.state).toBe('FINISHED')
  })

  it('a forging node: the true result, never the forged one, and the forger ends quarantined with its reason', async () => {
    const c = await coordinator()
    // The forger joined first: packing gives it the first replica of every task.
    const [forger, n1, n2] = await nodes(c, [{ name: 'forger', forge: true }, { name: 'n1' }, { name: 'n2' }])
    const a = await driver(c)
    const verified = a.remote(square).options({ verify: { replicas: 2 } })
    expect(await a.get(verified.remote(9), { timeout: 10_000 })).toBe(81)
    // It disagreed with n1; a third replica (n2) sided with n1: 2 of 3.
    expect([forger, n1, n2].map((n) => (n as EvalNode).workers.tasksRun)).toEqual([1, 1, 1])
    const rows = await a.state.listNodes()
    const f = rows.find((r) => r.nodeId === forger?.nodeId)
    expect(f?.quarantined).toMatch(/returned a result for verified task square .* that disagreed with 2 other node/)
    expect(f?.state).toBe('ALIVE') // still connected and listed: only no more work
    expect(rows.filter((r) => r.quarantined).length).toBe(1)
    // Nothing goes to it any more: verified tasks (2 honest nodes left are enough) nor plain ones.
    const more = await a.get(
      [1, 2, 3, 4].map((x) => verified.remote(x)),
      { timeout: 10_000 },
    )
    expect(more).toEqual([1, 4, 9, 16])
    expect(
      await a.get(
        [5, 6].map((x) => a.remote(square).remote(x)),
        { timeout: 10_000 },
      ),
    ).toEqual([25, 36])
    expect(forger?.workers.tasksRun).toBe(1)

    // Only an admin lifts a quarantine (a node-dependent task could also have put an honest node there).
    const lift = (token: string) =>
      fetch(`${c.url}/api/nodes/${forger?.nodeId}/quarantine`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })
    expect((await lift(TOKEN_A)).status).toBe(403)
    expect((await a.state.listNodes()).find((r) => r.nodeId === forger?.nodeId)?.quarantined).not.toBeNull()
    expect((await lift(ADMIN)).status).toBe(200)
    expect((await lift(ADMIN)).status).toBe(404) // not quarantined any more
    expect((await a.state.listNodes()).every((r) => r.quarantined === null)).toBe(true)
  })

  it('disagreement that cannot be settled within maxRetries is a VerificationError naming the nodes; nobody is quarantined', async () => {
    const c = await coordinator()
    const [forger, honest] = await nodes(c, [{ name: 'forger', forge: true }, { name: 'honest' }])
    const a = await driver(c)
    const ref = a
      .remote(square)
      .options({ verify: { replicas: 2 }, maxRetries: 0 })
      .remote(5)
    const err = await a.get(ref, { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(VerificationError)
    expect(err.code).toBe('VERIFICATION')
    expect(err.message).toMatch(/could not be verified: 2 replicas returned 2 different results/)
    expect(err.message).toContain(forger?.nodeId)
    expect(err.message).toContain(honest?.nodeId)
    expect((err as VerificationError).groups.map((g) => g.nodes.length)).toEqual([1, 1])
    // Neither the forged 26 nor the true 25 is given: which one is true is not known.
    expect(err.message).not.toMatch(/\b2[56]\b/)
    expect((await a.state.listNodes()).map((r) => r.quarantined)).toEqual([null, null])
  })

  it('an error every replica throws alike is the task error (not a verification failure)', async () => {
    const c = await coordinator()
    await nodes(c, [{ name: 'n1' }, { name: 'n2' }])
    const a = await driver(c)
    const err = await a
      .get(
        a
          .remote(throws)
          .options({ verify: { replicas: 2 } })
          .remote(3),
        { timeout: 10_000 },
      )
      .catch((e) => e)
    expect(err).toBeInstanceOf(TaskError)
    expect(err.message).toMatch(/RangeError: no square for 3/)
  })

  it('a node that dies mid-replica is replaced on another node; the result is still verified', async () => {
    const c = await coordinator({ heartbeatTimeoutMs: 1000 })
    const [doomed, n1, n2] = await nodes(c, [
      { name: 'doomed', heartbeatMs: 100 },
      { name: 'n1', heartbeatMs: 100 },
      { name: 'n2', heartbeatMs: 100 },
    ])
    const a = await driver(c)
    const ref = a
      .remote(slowSquare)
      .options({ verify: { replicas: 2 } })
      .remote(4, 400)
    const d = doomed as EvalNode
    const until = Date.now() + 5000
    while (d.workers.tasksRun === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    d.stop()
    expect(await a.get(ref, { timeout: 10_000 })).toBe(16)
    expect((n1 as EvalNode).workers.tasksRun + (n2 as EvalNode).workers.tasksRun).toBe(2)
  })

  it('cancel ends a verified task with TaskCancelledError', async () => {
    const c = await coordinator()
    await nodes(c, [{ name: 'n1' }, { name: 'n2' }])
    const a = await driver(c)
    const ref = a
      .remote(slowSquare)
      .options({ verify: { replicas: 2 } })
      .remote(3, 2000)
    await new Promise((r) => setTimeout(r, 100))
    await a.cancel(ref)
    await expect(a.get(ref, { timeout: 10_000 })).rejects.toBeInstanceOf(TaskCancelledError)
    // The cluster is fine afterwards: the replicas' resources came back when they ended.
    expect(
      await a.get(
        a
          .remote(square)
          .options({ verify: { replicas: 2 } })
          .remote(2),
        { timeout: 10_000 },
      ),
    ).toBe(4)
  })

  it('takes refs as arguments, and its result is a ref other tasks can take', async () => {
    const c = await coordinator()
    await nodes(c, [{ name: 'n1' }, { name: 'n2' }])
    const a = await driver(c)
    const x = await a.put(6)
    const verified = a.remote(square).options({ verify: { replicas: 2 } })
    const first = verified.remote(x as unknown as number)
    expect(first).toBeInstanceOf(ObjectRef)
    expect(await a.get(verified.remote(first as unknown as number), { timeout: 10_000 })).toBe(1296)
    expect(await a.get(a.remote(square).remote(first as unknown as number), { timeout: 10_000 })).toBe(1296)
  })

  it('results waiting for their vote count against the tenant’s stored bytes: past the quota the task fails, clearly', async () => {
    const c = await coordinator({
      credentials: Credentials.from({
        tokens: [
          { token: NODE, role: 'node' },
          { token: TOKEN_A, role: 'driver', tenant: 'a' },
        ],
        quotas: { a: { maxStoredBytes: 1000 } },
      }),
    })
    await nodes(c, [{ name: 'n1' }, { name: 'n2' }])
    const a = await driver(c)
    const big = a.remote(function big(n: number) {
      return 'x'.repeat(n)
    })
    const err = await a.get(big.options({ verify: { replicas: 2 } }).remote(5000), { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ObjectStoreFullError)
    expect(err.message).toMatch(/verified results waiting to be compared would exceed the tenant's quota of 1000 stored bytes/)
    // Small ones still pass (the held bytes were given back).
    expect(await a.get(big.options({ verify: { replicas: 2 } }).remote(10), { timeout: 10_000 })).toBe('x'.repeat(10))
  })

  it('refuses options that cannot be verified, at once and with the reason', async () => {
    const c = await coordinator()
    const [n1] = await nodes(c, [{ name: 'n1' }])
    const a = await driver(c)
    const f = a.remote(square)
    expect(() => f.options({ verify: { replicas: 1 } })).toThrow(/verify.replicas.*at least 2/)
    expect(() => f.options({ verify: { replicas: 17 } })).toThrow(/at most 16/)
    expect(() => f.options({ verify: {} as { replicas: number } })).toThrow(ValidationError)
    expect(() => f.options({ verify: { replicas: 2 }, schedulingStrategy: { nodeId: n1?.nodeId as string, soft: false } })).toThrow(
      /hard node affinity.*allows only one/,
    )
    // A soft affinity is a preference: allowed.
    expect(() => f.options({ verify: { replicas: 2 }, schedulingStrategy: { nodeId: n1?.nodeId as string, soft: true } })).not.toThrow()
  })

  it('too few distinct nodes: it waits with a warning that says why (and a get with a timeout ends)', async () => {
    const c = await coordinator()
    await nodes(c, [{ name: 'n1' }])
    const a = await driver(c)
    const warnings: string[] = []
    const orig = console.warn
    console.warn = (...xs: unknown[]) => void warnings.push(xs.join(' '))
    try {
      const ref = a
        .remote(square)
        .options({ verify: { replicas: 2 } })
        .remote(3)
      const timedOut = await a.get(ref, { timeout: 1000 }).catch((e) => e)
      expect(timedOut).toBeInstanceOf(GetTimeoutError)
      // The timeout says why the task waits, and so did the warning.
      expect(timedOut.message).toMatch(/needs 2 distinct nodes that fit it.*1 ran a replica/)
      expect(warnings.join('\n')).toMatch(/needs 2 distinct nodes that fit it.*1 ran a replica/)
      // A second node joins: the replica runs there (sent in the welcome's own frame), and the result is verified.
      await nodes(c, [{ name: 'n2' }])
      expect(await a.get(ref, { timeout: 10_000 })).toBe(9)
    } finally {
      console.warn = orig
    }
  })
})
