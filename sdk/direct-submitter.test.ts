import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { decodeValue, encodeValue } from './codec.ts'
import { DirectSubmitter } from './direct-submitter.ts'
import { functionIdOf, type JobId, newNodeId, objectIdOf, type TaskId } from './ids.ts'
import { ownerWiring } from './owner.fixture.ts'
import {
  type ClientMessage,
  type ClientMessageOf,
  FUNCTION_MISSING,
  type FunctionDef,
  type Lease,
  type PeerMessageOf,
  type PushedTask,
  type TaskResult,
  type TaskSpec,
} from './protocol/index.ts'
import { taskSpec } from './task-spec.fixture.ts'
import type { Route } from './transport/peer-links.ts'

const JOB = '0000002a' as JobId
const SOURCE_F = 'function f(x) { return x }'
const SOURCE_G = 'function g(x) { return x + 1 }'
const F = functionIdOf(SOURCE_F)
const G = functionIdOf(SOURCE_G)
const DEFS = new Map<string, FunctionDef>([
  [F, { functionId: F, name: 'f', kind: 'function', source: SOURCE_F }],
  [G, { functionId: G, name: 'g', kind: 'function', source: SOURCE_G }],
])
const LINGER_MS = 100

/** Lets the per-turn batches (pumps, lease returns) run: they go at the end of the turn, in microtasks. */
async function turn(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

let nextLease = 1
function leaseOn(nodeId: string): Lease {
  return {
    leaseId: (nextLease++).toString(16).padStart(32, '0'),
    nodeId,
    owner: `d-${'0'.repeat(54)}`,
    jobId: JOB,
    units: { CPU: 10_000 },
    sig: '0'.repeat(64),
  }
}

/**
 * An owner as `Mesh` wires it (real OwnedTasks, ObjectTable, ReferenceCounter, TaskEventReporter) with its control
 * socket and peer links replaced by recorders, and the coordinator and nodes played by the test.
 */
function owner() {
  const { objects, control, peer, resolved, refs, events, tm, links } = ownerWiring()
  const ds = new DirectSubmitter(
    {
      namespace: 'ns',
      objects,
      links,
      send: (m) => control.push(m),
      functionDef: (id) => DEFS.get(id),
      pushBudget: () => 1 << 20,
      markInfeasible: () => {},
    },
    tm,
  )
  tm.scheduling = ds
  const held: unknown[] = []
  const of = <T extends ClientMessage['type']>(type: T) => control.filter((m) => m.type === type) as ClientMessageOf<T>[]

  const o = {
    tm,
    ds,
    objects,
    control,
    peer,
    resolved,
    /** Submits a task as `remote` does: its returns are owned and expected first. */
    submit(over: Partial<TaskSpec> = {}): TaskSpec {
      const s = taskSpec(JOB, F, over)
      for (let i = 1; i <= s.numReturns; i++) {
        const id = objectIdOf(s.taskId as TaskId, i)
        held.push(refs.own(id))
        objects.expect(id)
      }
      tm.submit(s)
      return s
    },
    requests: () => of('lease-request'),
    cancels: () => of('lease-cancel'),
    returned: () => of('lease-return').flatMap((m) => m.leaseIds),
    /** Push messages, optionally only those under one lease. */
    pushes: (lease?: Lease) =>
      peer.map((p) => p.msg).filter((m): m is PeerMessageOf<'push'> => m.type === 'push' && (!lease || m.lease.leaseId === lease.leaseId)),
    /** Tasks pushed so far (each attempt, each time), optionally under one lease. */
    pushed: (lease?: Lease): PushedTask[] => o.pushes(lease).flatMap((m) => m.tasks),
    /** The coordinator grants a lease of the shape on `nodeId`. */
    grant(shapeId: string, nodeId: string = newNodeId()): Lease {
      const l = leaseOn(nodeId)
      ds.onGranted(shapeId, l)
      return l
    },
    /** A node answers (directly by default) under a lease. */
    results(lease: Lease, results: TaskResult[], from = lease.nodeId, route: Route = 'direct'): void {
      ds.onResults(from, { type: 'results', leaseId: lease.leaseId, results }, route)
    },
    value: (taskId: string) => {
      const data = objects.read(objectIdOf(taskId as TaskId, 1))?.data
      return data && decodeValue(data)
    },
    error: (taskId: string) => objects.read(objectIdOf(taskId as TaskId, 1))?.error,
    /** The task's events so far, as `STATE@attempt`. */
    states(taskId: string): string[] {
      events.flush()
      return of('task-events')
        .flatMap((m) => m.events)
        .filter((e) => e.taskId === taskId)
        .map((e) => `${e.state}@${e.attempt}`)
    },
  }
  return o
}

const ok = (t: PushedTask, value: unknown = t.attempt, ms?: number): TaskResult => ({
  taskId: t.taskId,
  attempt: t.attempt,
  ok: true,
  returns: [encodeValue(value, 'r')],
  ...(ms !== undefined && { ms }),
})
const userError = (t: PushedTask, remoteName = 'Error'): TaskResult => ({
  taskId: t.taskId,
  attempt: t.attempt,
  ok: false,
  error: { name: 'TaskError', code: 'TASK_ERROR', message: 'boom', data: { remoteName } },
  userError: true,
})
const ids = (tasks: { taskId: string }[]) => tasks.map((t) => t.taskId)

/**
 * Teaches the owner that `f` runs `ms` per task (the depth of its leases follows): one task on a lease, answered.
 * Returns that lease (idle, lingering) and the shape's id.
 */
async function learn(o: ReturnType<typeof owner>, ms: number, over: Partial<TaskSpec> = {}): Promise<{ lease: Lease; shapeId: string }> {
  const probe = o.submit(over)
  await turn()
  const shapeId = (o.requests().at(-1) as ClientMessageOf<'lease-request'>).shapeId
  const lease = o.grant(shapeId)
  await turn()
  const [t] = o.pushed(lease)
  expect(t?.taskId).toBe(probe.taskId)
  o.results(lease, [ok(t as PushedTask, 0, ms)])
  await turn()
  return { lease, shapeId }
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] })
})
afterEach(() => {
  vi.useRealTimers()
})

describe('DirectSubmitter: results', () => {
  it('delivers each result once: a duplicate, a stale attempt and a result from another node are ignored', async () => {
    const o = owner()
    const s = o.submit()
    await turn()
    const lease = o.grant(o.requests()[0]!.shapeId)
    await turn()
    const [t] = o.pushed(lease)
    expect(t).toMatchObject({ taskId: s.taskId, attempt: 0 })
    // Not from the node that holds the lease, a stale attempt, an unknown lease: nothing happens.
    o.results(lease, [ok(t!, 'forged')], newNodeId())
    o.results(lease, [{ ...ok(t!, 'stale'), attempt: 7 }])
    o.results({ ...lease, leaseId: 'ee'.repeat(16) }, [ok(t!, 'other lease')])
    expect(o.tm.get(s.taskId)?.phase).toBe('pushed')
    expect(o.resolved).toEqual([])
    // The first real result wins; the same result again (in this message or a later one) is ignored.
    o.results(lease, [ok(t!, 'first'), ok(t!, 'second')])
    o.results(lease, [ok(t!, 'third')])
    expect(o.value(s.taskId)).toBe('first')
    expect(o.resolved).toHaveLength(1)
    expect(o.states(s.taskId).filter((e) => e.startsWith('FINISHED'))).toEqual(['FINISHED@0'])
  })

  it('fails a task whose result does not have numReturns values with a ValidationError', async () => {
    const o = owner()
    const s = o.submit({ numReturns: 2 })
    await turn()
    const lease = o.grant(o.requests()[0]!.shapeId)
    await turn()
    o.results(lease, [ok(o.pushed(lease)[0]!)])
    for (const i of [1, 2]) {
      expect(o.objects.read(objectIdOf(s.taskId as TaskId, i))?.error).toMatchObject({ name: 'ValidationError', code: 'VALIDATION' })
    }
    expect(o.tm.pending).toBe(0)
  })
})

describe('DirectSubmitter: failures and retries', () => {
  it("retries a revoked lease's tasks on another lease while maxRetries allows, then fails them with NodeDiedError", async () => {
    const o = owner()
    const retried = o.submit({ maxRetries: 1 })
    const once = o.submit({ maxRetries: 0 })
    await turn()
    const [req] = o.requests()
    expect(req?.count).toBe(2)
    const n1 = newNodeId()
    const l1 = o.grant(req!.shapeId, n1)
    const l2 = o.grant(req!.shapeId, n1)
    await turn()
    expect(ids([...o.pushed(l1), ...o.pushed(l2)])).toEqual([retried.taskId, once.taskId])

    o.ds.onRevoked([l1.leaseId, l2.leaseId], n1)
    expect(o.error(once.taskId)).toMatchObject({ code: 'NODE_DIED', name: 'NodeDiedError', data: { nodeId: n1 } })
    expect(o.error(once.taskId)?.message).toContain(n1)
    expect(o.tm.get(retried.taskId)).toMatchObject({ phase: 'queued', attempt: 1 })
    await turn()
    // The retry needs a lease again; the revoked ones are the coordinator's to end, not returned.
    expect(o.requests().map((r) => r.count)).toEqual([2, 1])
    expect(o.returned()).toEqual([])
    expect(o.ds.leaseCount).toBe(0)

    const n2 = newNodeId()
    const l3 = o.grant(req!.shapeId, n2)
    await turn()
    expect(o.pushed(l3)).toMatchObject([{ taskId: retried.taskId, attempt: 1 }])
    // A late result of the first attempt, from the dead node's lease, is ignored.
    o.results(l1, [ok(o.pushed(l1)[0]!, 'late')])
    expect(o.tm.get(retried.taskId)?.phase).toBe('pushed')
    expect(o.value(retried.taskId)).toBeUndefined()

    o.ds.onRevoked([l3.leaseId], n2)
    const err = o.error(retried.taskId)
    expect(err).toMatchObject({ code: 'NODE_DIED', data: { nodeId: n2 } })
    expect(err?.message).toContain('after 2 attempt(s)')
    expect(o.states(retried.taskId).filter((e) => e.startsWith('FAILED'))).toEqual(['FAILED@0', 'FAILED@1'])
    // Nothing is left to ask for or to push.
    await turn()
    expect(o.requests()).toHaveLength(2)
    expect(o.tm.pending).toBe(0)
  })

  it('retries a user error only with retryExceptions (true, or a list naming the error)', async () => {
    const o = owner()
    const specs = {
      never: o.submit({ retryExceptions: false }),
      always: o.submit({ retryExceptions: true }),
      named: o.submit({ retryExceptions: ['ValueError'] }),
      unnamed: o.submit({ retryExceptions: ['TypeError'] }),
    }
    await turn()
    const shapeId = o.requests()[0]!.shapeId
    const leases = [o.grant(shapeId), o.grant(shapeId), o.grant(shapeId), o.grant(shapeId)]
    await turn()
    for (const l of leases) o.results(l, [userError(o.pushed(l)[0]!, 'ValueError')])
    await turn()
    const retries = o.pushed().filter((t) => t.attempt === 1)
    expect(ids(retries).sort()).toEqual([specs.always.taskId, specs.named.taskId].sort())
    for (const k of ['never', 'unnamed'] as const) {
      expect(o.error(specs[k].taskId)).toMatchObject({ code: 'TASK_ERROR', data: { remoteName: 'ValueError' } })
    }
    expect(o.error(specs.always.taskId)).toBeUndefined()
    expect(o.error(specs.named.taskId)).toBeUndefined()
  })

  it('a lease that can never be granted fails the queued tasks of its shape as unschedulable', async () => {
    const o = owner()
    const s = o.submit({ strategy: { nodeId: 'ab'.repeat(28), soft: false } })
    await turn()
    o.ds.onFailed(o.requests()[0]!.shapeId, 'node gone')
    expect(o.error(s.taskId)).toMatchObject({ code: 'TASK_UNSCHEDULABLE' })
    expect(o.error(s.taskId)?.message).toContain('node gone')
  })

  it('FUNCTION_MISSING puts the task back at the same attempt, and its next push carries the function again', async () => {
    const o = owner()
    const [a, b] = [o.submit(), o.submit()]
    await turn()
    const lease = o.grant(o.requests()[0]!.shapeId)
    await turn()
    // The first push under the lease carries f; the next does not (the node keeps it).
    expect(o.pushes(lease)[0]).toMatchObject({ type: 'push', lease, namespace: 'ns', functions: [DEFS.get(F)] })
    o.results(lease, [ok(o.pushed(lease)[0]!, 'a', 50)])
    await turn()
    expect(o.pushes(lease)[1]?.tasks).toMatchObject([{ taskId: b.taskId, attempt: 0 }])
    expect(o.pushes(lease)[1]?.functions).toBeUndefined()

    o.results(lease, [
      { taskId: b.taskId, attempt: 0, ok: false, error: { name: 'Error', code: FUNCTION_MISSING, message: 'no f' }, userError: false },
    ])
    expect(o.tm.get(b.taskId)).toMatchObject({ phase: 'queued', attempt: 0 })
    await turn()
    const again = o.pushes(lease)[2]
    expect(again?.tasks).toMatchObject([{ taskId: b.taskId, attempt: 0 }])
    expect(again?.functions).toEqual([DEFS.get(F)])
    o.results(lease, [ok(again!.tasks[0]!, 'b')])
    expect([o.value(a.taskId), o.value(b.taskId)]).toEqual(['a', 'b'])
    // Not an attempt that failed: no FAILED event, no retry spent.
    expect(o.states(b.taskId).some((e) => e.startsWith('FAILED'))).toBe(false)
  })
})

describe('DirectSubmitter: cancel', () => {
  it("cancels a queued task out of its queue and a pushed one through its lease's node; a late result is ignored", async () => {
    const o = owner()
    const [running, queued, later] = [o.submit(), o.submit(), o.submit()]
    await turn()
    const shapeId = o.requests()[0]!.shapeId
    const lease = o.grant(shapeId)
    await turn()
    expect(ids(o.pushed(lease))).toEqual([running.taskId])

    expect(o.tm.cancel(queued.taskId, false)).toBe(true)
    expect(o.error(queued.taskId)).toMatchObject({ name: 'TaskCancelledError', code: 'TASK_CANCELLED' })
    expect(o.tm.cancel(running.taskId, true)).toBe(true)
    expect(o.error(running.taskId)).toMatchObject({ name: 'TaskCancelledError', code: 'TASK_CANCELLED' })
    expect(o.peer.filter((p) => p.msg.type === 'cancel')).toEqual([
      { to: lease.nodeId, msg: { type: 'cancel', leaseId: lease.leaseId, taskId: running.taskId, force: true }, route: undefined },
    ])
    await turn()
    // The lease is free again: the next task goes, the cancelled queued one never does.
    expect(ids(o.pushed())).toEqual([running.taskId, later.taskId])
    const resolved = o.resolved.length
    o.results(lease, [ok(o.pushed(lease)[0]!, 'late')])
    expect(o.error(running.taskId)?.code).toBe('TASK_CANCELLED')
    expect(o.resolved).toHaveLength(resolved)
    o.results(lease, [ok(o.pushed(lease)[1]!, 'done')])
    expect(o.value(later.taskId)).toBe('done')
  })
})

describe('DirectSubmitter: leases', () => {
  it('asks for one lease per queued task while the function has no known run time, and pushes them one at a time', async () => {
    const o = owner()
    const specs = Array.from({ length: 5 }, () => o.submit())
    await turn()
    expect(o.requests()).toEqual([
      {
        type: 'lease-request',
        shapeId: expect.any(String),
        resources: { CPU: 1 },
        strategy: 'DEFAULT',
        count: 5,
        head: { taskId: specs[0]!.taskId, name: 'f' },
      },
    ])
    const shapeId = o.requests()[0]!.shapeId
    const lease = o.grant(shapeId)
    await turn()
    expect(o.pushed(lease)).toHaveLength(1)
    // A result without a run time teaches nothing: still one at a time.
    o.results(lease, [ok(o.pushed(lease)[0]!)])
    await turn()
    expect(ids(o.pushed(lease))).toEqual(ids(specs.slice(0, 2)))
    expect(o.requests()).toHaveLength(1) // 4 more wanted, 4 outstanding
  })

  it('caps the leases one shape asks for at once', async () => {
    const o = owner()
    for (let i = 0; i < 1100; i++) o.submit({ resources: { CPU: 2 } })
    await turn()
    expect(o.requests().map((r) => r.count)).toEqual([1024])
    o.submit({ resources: { CPU: 2 } })
    await turn()
    expect(o.requests()).toHaveLength(1)
  })

  it('cancels its request when its queue empties; a lease granted after that goes back after the linger', async () => {
    const o = owner()
    const specs = [o.submit(), o.submit(), o.submit()]
    await turn()
    const shapeId = o.requests()[0]!.shapeId
    for (const s of specs) o.tm.cancel(s.taskId, false)
    await turn()
    expect(o.cancels()).toEqual([{ type: 'lease-cancel', shapeId }])
    const late = o.grant(shapeId)
    await turn()
    expect(o.pushed()).toEqual([])
    vi.advanceTimersByTime(LINGER_MS)
    await turn()
    expect(o.returned()).toEqual([late.leaseId])
    expect(o.cancels()).toHaveLength(1)
  })

  it('with a known short run time, asks for ceil(queued / depth) leases and keeps at most depth tasks in flight on each', async () => {
    const o = owner()
    // 2 ms per task: 10 ms of work in flight per lease is a depth of 5.
    const { lease: l1, shapeId } = await learn(o, 2)
    for (let i = 0; i < 12; i++) o.submit()
    await turn()
    // The lingering lease takes 5 in one push; 12 tasks need 3 leases: 2 more.
    expect(
      o
        .pushes(l1)
        .slice(1)
        .map((m) => m.tasks.length),
    ).toEqual([5])
    expect(o.requests().at(-1)?.count).toBe(2)
    const l2 = o.grant(shapeId)
    const l3 = o.grant(shapeId)
    await turn()
    expect([l1, l2, l3].map((l) => o.pushed(l).length)).toEqual([1 + 5, 5, 2])
    expect(new Set(ids(o.pushed())).size).toBe(13)

    // Two results on l1 (still 2 ms): it takes two more, up to 5 again; l2 stays full, l3 takes the last one.
    const inflight1 = o.pushed(l1).slice(1)
    o.results(l1, [ok(inflight1[0]!, 0, 2), ok(inflight1[1]!, 0, 2)])
    const more = Array.from({ length: 3 }, () => o.submit())
    await turn()
    expect(ids(o.pushed(l1).slice(6))).toEqual(ids(more.slice(0, 2)))
    expect(ids(o.pushed(l3).slice(2))).toEqual(ids(more.slice(2)))
    expect(o.pushed(l2)).toHaveLength(5)
    expect(o.requests()).toHaveLength(2)
  })

  it('takes the depth from the function at the head of the queue, not from the shape', async () => {
    const o = owner()
    const { lease } = await learn(o, 1) // f: depth 10
    const gs = Array.from({ length: 3 }, () => o.submit({ functionId: G, name: 'g', funcName: 'g' }))
    await turn()
    // g's run time is unknown: one at a time, though f (the same shape) pipelines 10 deep.
    expect(ids(o.pushed(lease).slice(1))).toEqual([gs[0]!.taskId])
    expect(o.pushes(lease)[1]?.functions).toEqual([DEFS.get(G)])
    expect(o.requests().at(-1)?.count).toBe(2)
  })

  it('a SPREAD lease takes one task and goes back after it, whatever the run time', async () => {
    const o = owner()
    await learn(o, 1) // f is short: a DEFAULT lease would take 10
    const specs = [o.submit({ strategy: 'SPREAD' }), o.submit({ strategy: 'SPREAD' })]
    await turn()
    const req = o.requests().at(-1)!
    expect(req).toMatchObject({ strategy: 'SPREAD', count: 2 })
    const l1 = o.grant(req.shapeId)
    await turn()
    expect(ids(o.pushed(l1))).toEqual([specs[0]!.taskId])
    o.results(l1, [ok(o.pushed(l1)[0]!, 0, 1)])
    await turn()
    // Returned at once (no linger), and the second task waits for its own lease.
    expect(o.returned()).toEqual([l1.leaseId])
    expect(o.pushed(l1)).toHaveLength(1)
    expect(o.requests()).toHaveLength(2)
    const l2 = o.grant(req.shapeId)
    await turn()
    expect(ids(o.pushed(l2))).toEqual([specs[1]!.taskId])
    o.results(l2, [ok(o.pushed(l2)[0]!)])
    await turn()
    expect(o.returned()).toEqual([l1.leaseId, l2.leaseId])
  })

  it('keeps an idle lease for the linger (reused by the next task meanwhile), then returns it', async () => {
    const o = owner()
    const { lease } = await learn(o, 50)
    vi.advanceTimersByTime(LINGER_MS - 1)
    await turn()
    expect(o.returned()).toEqual([])
    const next = o.submit()
    await turn()
    expect(ids(o.pushed(lease).slice(1))).toEqual([next.taskId])
    expect(o.requests()).toHaveLength(1)
    vi.advanceTimersByTime(LINGER_MS * 2) // busy: not returned
    await turn()
    expect(o.returned()).toEqual([])
    o.results(lease, [ok(o.pushed(lease)[1]!)])
    await turn()
    vi.advanceTimersByTime(LINGER_MS - 1)
    await turn()
    expect(o.returned()).toEqual([])
    vi.advanceTimersByTime(1)
    await turn()
    expect(o.returned()).toEqual([lease.leaseId])
    expect(o.ds.leaseCount).toBe(0)
  })

  it('returns an idle lease at once when the coordinator reclaims it; a busy one once its tasks are done', async () => {
    const o = owner()
    const { lease: idle, shapeId } = await learn(o, 50)
    o.ds.onReclaim([idle.leaseId])
    await turn()
    expect(o.returned()).toEqual([idle.leaseId])

    const [a, b] = [o.submit(), o.submit()]
    await turn()
    const busy = o.grant(shapeId)
    await turn()
    expect(ids(o.pushed(busy))).toEqual([a.taskId])
    o.ds.onReclaim([busy.leaseId])
    await turn()
    // It takes nothing more; its shape asks for another lease for what is queued.
    expect(o.returned()).toEqual([idle.leaseId])
    o.results(busy, [ok(o.pushed(busy)[0]!, 'a', 50)])
    await turn()
    expect(o.returned()).toEqual([idle.leaseId, busy.leaseId])
    expect(ids(o.pushed(busy))).toEqual([a.taskId])
    expect(o.tm.get(b.taskId)?.phase).toBe('queued')
    // b goes to the next lease granted.
    const next = o.grant(shapeId)
    await turn()
    expect(ids(o.pushed(next))).toEqual([b.taskId])
  })

  it('a reclaimed lease not used yet still takes one push, then goes back when idle (no livelock between owners)', async () => {
    const o = owner()
    const [a, b] = [o.submit(), o.submit()]
    await turn()
    const shapeId = o.requests()[0]!.shapeId
    // Granted and reclaimed in the same turn (one frame from the coordinator), before any task went to it.
    const lease = o.grant(shapeId)
    o.ds.onReclaim([lease.leaseId])
    await turn()
    expect(o.returned()).toEqual([])
    expect(ids(o.pushed(lease))).toEqual([a.taskId])
    // Reclaimed, it does not count as a lease the shape has, nor does its task: b waits for the second lease asked
    // at first, and no more is asked.
    expect(o.requests().map((r) => r.count)).toEqual([2])
    o.results(lease, [ok(o.pushed(lease)[0]!)])
    await turn()
    expect(o.returned()).toEqual([lease.leaseId])
    expect(o.pushed(lease)).toHaveLength(1)
    expect(o.tm.get(b.taskId)?.phase).toBe('queued')
  })

  it('an idle lease goes back after the linger even while another lease of its shape keeps getting results', async () => {
    // pump() calls fill() on every lease of the shape whenever the shape changes: fill() with nothing to push must
    // leave an idle lease's timer alone, or each result on one lease restarts the linger of every idle one.
    const o = owner()
    const { lease: busy, shapeId } = await learn(o, 2) // depth 5
    Array.from({ length: 6 }, () => o.submit())
    await turn()
    const idle = o.grant(shapeId)
    await turn()
    expect([busy, idle].map((l) => o.pushed(l).length)).toEqual([1 + 5, 1])
    o.results(idle, [ok(o.pushed(idle)[0]!, 0, 2)])
    await turn()
    // From now on `idle` has nothing to do; `busy` reports one result every 60 ms (4 of its 5).
    const inflight = o.pushed(busy).slice(1)
    for (let i = 0; i < 4; i++) {
      vi.advanceTimersByTime(60)
      o.results(busy, [ok(inflight[i]!, 0, 2)])
      await turn()
    }
    // 240 ms later: `idle` lingered 100 ms and went back long ago.
    expect(o.returned()).toEqual([idle.leaseId])
  })
})

describe('DirectSubmitter: close', () => {
  it('sends nothing more after close(): no lease-return, push or lease-request from pending per-turn batches', async () => {
    const o = owner()
    const { lease: lingering } = await learn(o, 50)
    const { lease: reclaimed } = await learn(o, 50, { resources: { GPU: 1 } })
    // A shape whose lease was asked for (and pumped) before the close.
    o.submit({ resources: { CPU: 2 } })
    await turn()
    const waiting = o.requests().at(-1)!.shapeId
    const sent = o.control.filter((m) => m.type !== 'task-events').length
    const peerSent = o.peer.length
    // In one turn: a reclaim (its lease-return waits for the end of the turn), a new task (its push waits for the
    // pump), a task of a new shape (its lease-request too); then the connection closes.
    o.ds.onReclaim([reclaimed.leaseId])
    o.submit()
    o.submit({ resources: { CPU: 3 } })
    o.ds.close()
    await turn()
    vi.advanceTimersByTime(LINGER_MS * 10) // the lingering lease's timer
    await turn()
    // Late messages from the coordinator and the node: a grant for the waiting shape (it would take the task), one
    // for a shape it does not know (it would go back), a reclaim, a result.
    o.grant(waiting)
    o.grant('s999')
    o.ds.onReclaim([lingering.leaseId])
    o.results(lingering, [ok(o.pushed(lingering)[0]!)])
    await turn()
    vi.advanceTimersByTime(LINGER_MS * 10)
    await turn()
    expect(o.control.filter((m) => m.type !== 'task-events')).toHaveLength(sent)
    expect(o.peer).toHaveLength(peerSent)
  })
})
