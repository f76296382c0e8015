import { describe, expect, it } from 'vitest'
import { ACTOR_NOT_HERE, type Assignment, type Lease, type PushedTask } from '../../sdk/protocol/index.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import { ActorHost } from './actor-host.ts'
import { MAX_QUEUED_PER_LEASE } from './admission.ts'
import { AssignedRuns } from './assigned-runs.ts'
import { BATCH_TASK_MS } from './batch-policy.ts'
import { endOfTurn, fn, JOB, lease, nodeParts, OWNER, ok, task } from './node.fixture.ts'

const Counter = fn('Counter')
const ACTOR = 'actor-1'

const creation = (attempt: number, maxConcurrency: number): Assignment => ({
  taskId: `create-${attempt}`,
  attempt,
  jobId: JOB,
  type: 'ACTOR_CREATION_TASK',
  functionId: Counter.functionId,
  name: 'Counter',
  funcName: 'Counter',
  args: [],
  numReturns: 1,
  units: { CPU: 10_000 },
  namespace: 'ns',
  actorId: ACTOR,
  actor: { className: 'Counter', maxConcurrency },
})

/** A node hosting one actor (incarnation 0), its creation ended. */
async function host(opts: { maxConcurrency?: number; batches?: boolean } = {}) {
  const p = nodeParts(opts)
  const assigned = new AssignedRuns(p.runs, p.send, () => 1 << 20)
  const actors = new ActorHost(p.runs, p.admission, assigned, p.send)
  actors.create(creation(0, opts.maxConcurrency ?? 1), Counter)
  p.workers.pending[0]?.end()
  await endOfTurn()
  const caller = (leaseId: string, incarnation = 0): Lease => lease(leaseId, { actor: { actorId: ACTOR, incarnation } })
  const call = (seq: number, id = `c${seq}`): PushedTask => task(id, Counter, { seq, method: 'inc' })
  const push = (l: Lease, calls: PushedTask[], route: Route = 'direct') =>
    actors.push(OWNER, { type: 'push', lease: l, namespace: 'ns', tasks: calls }, route)
  const cancel = (leaseId: string, taskId: string) => actors.cancel(OWNER, { type: 'cancel', leaseId, taskId, force: false })
  /** The calls handed to the actor's worker, one list per message. */
  const calls = () => p.workers.handed.filter((h) => h.kind !== 'create').map((h) => h.tasks.map((t) => t.taskId))
  const told = () => p.results().map((r) => `${r.taskId}:${r.ok ? 'ok' : r.error.code}`)
  /** Ends the oldest call (or batch) still running in the actor's worker. */
  const endOne = async (ms?: number) => {
    const h = p.workers.pending[0]
    h?.end(ms === undefined ? undefined : h.tasks.map(() => ok(ms)))
    await endOfTurn()
  }
  return { ...p, actors, assigned, caller, call, push, cancel, calls, told, endOne }
}

describe('ActorHost: each caller’s calls start in the order it made them', () => {
  it('a call that comes ahead of its turn waits for the ones before it, whichever way each came', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(2)], 'direct')
    n.push(L, [n.call(1)], 'direct')
    await endOfTurn()
    expect(n.calls()).toEqual([])
    n.push(L, [n.call(0)], 'relay')
    await endOfTurn()
    expect(n.calls()).toEqual([['c0']])
    await n.endOne()
    await n.endOne()
    await n.endOne()
    expect(n.calls()).toEqual([['c0'], ['c1'], ['c2']])
    expect(n.told()).toEqual(['c0:ok', 'c1:ok', 'c2:ok'])
    // The relayed call's result goes back through the coordinator, the others straight.
    expect(n.results().map((r) => r.route)).toEqual(['relay', 'direct', 'direct'])
  })

  it('a call sent again (after a lost link) runs once', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(0), n.call(1)])
    await endOfTurn()
    n.push(L, [n.call(0), n.call(1)], 'relay')
    await n.endOne()
    await n.endOne()
    await n.endOne()
    expect(n.calls()).toEqual([['c0'], ['c1']])
  })

  it('runs as many calls at once as its concurrency allows', async () => {
    const n = await host({ maxConcurrency: 2 })
    n.push(n.caller('C1'), [n.call(0), n.call(1), n.call(2)])
    await endOfTurn()
    expect(n.calls()).toEqual([['c0'], ['c1']])
    await n.endOne()
    expect(n.calls()).toEqual([['c0'], ['c1'], ['c2']])
  })

  it('an actor with short calls takes those waiting in one message, in order', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(0)])
    await endOfTurn()
    n.push(L, [n.call(1), n.call(2), n.call(3)])
    await n.endOne(BATCH_TASK_MS / 2)
    expect(n.calls()).toEqual([['c0'], ['c1', 'c2', 'c3']])
    await n.endOne()
    expect(n.told()).toEqual(['c0:ok', 'c1:ok', 'c2:ok', 'c3:ok'])
  })

  it(`refuses a push that would keep more than ${MAX_QUEUED_PER_LEASE} calls waiting under one lease`, async () => {
    const n = await host()
    const L = n.caller('C1')
    // Calls ahead of their turn wait too (seq 0 never came).
    n.push(
      L,
      Array.from({ length: MAX_QUEUED_PER_LEASE }, (_, i) => n.call(i + 1)),
    )
    await endOfTurn()
    n.push(L, [n.call(0)])
    await endOfTurn()
    expect(n.told()).toEqual(['c0:LEASE_INVALID'])
  })

  it('a call with no seq or method is refused; calls for another incarnation are not here', async () => {
    const n = await host()
    n.push(n.caller('C1'), [task('bad', Counter)])
    n.push(n.caller('C2', 1), [n.call(0, 'later')])
    await endOfTurn()
    expect(n.told()).toEqual(['later:' + ACTOR_NOT_HERE, 'bad:LEASE_INVALID'])
    expect(n.calls()).toEqual([])
  })
})

describe('ActorHost: cancel, death', () => {
  it('a call cancelled while it waits for a concurrency slot never runs, and is answered as cancelled', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(0), n.call(1), n.call(2)])
    await endOfTurn()
    expect(n.cancel('C1', 'c1')).toBe(true)
    await n.endOne()
    await n.endOne()
    expect(n.calls()).toEqual([['c0'], ['c2']])
    expect(n.told()).toEqual(['c1:TASK_CANCELLED', 'c0:ok', 'c2:ok'])
  })

  it('a call cancelled before its turn came is skipped (answered as cancelled) when it comes', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(1), n.call(2)])
    await endOfTurn()
    n.cancel('C1', 'c1')
    n.push(L, [n.call(0)])
    await n.endOne()
    await n.endOne()
    expect(n.calls()).toEqual([['c0'], ['c2']])
    expect(n.told()).toEqual(['c1:TASK_CANCELLED', 'c0:ok', 'c2:ok'])
  })

  it('a cancel from someone other than the caller is ignored', async () => {
    const n = await host()
    n.push(n.caller('C1'), [n.call(0), n.call(1)])
    await endOfTurn()
    expect(n.actors.cancel('stranger', { type: 'cancel', leaseId: 'C1', taskId: 'c1', force: false })).toBe(true)
    await n.endOne()
    await n.endOne()
    expect(n.told()).toEqual(['c0:ok', 'c1:ok'])
  })

  it('a running call is not interrupted; a cancel of a lease not in use here is not the actors’', async () => {
    const n = await host()
    n.push(n.caller('C1'), [n.call(0)])
    await endOfTurn()
    expect(n.cancel('C1', 'c0')).toBe(true)
    expect(n.cancel('worker-lease', 'x')).toBe(false)
    await n.endOne()
    expect(n.told()).toEqual(['c0:ok'])
    expect(n.workers.terminated).toEqual([])
  })

  it('its worker dying kills it: the coordinator is told, and later calls are not here', async () => {
    const n = await host()
    const L = n.caller('C1')
    n.push(L, [n.call(0)])
    await endOfTurn()
    const w = n.workers.pending[0]?.w
    n.actors.workerCrashed(w as never, 'out of memory')
    expect(n.toCoordinator.filter((m) => m.type === 'actor-died')).toEqual([
      { type: 'actor-died', actorId: ACTOR, attempt: 0, reason: 'out of memory' },
    ])
    expect(n.stats.running).toBe(0)
    n.push(L, [n.call(1)])
    await endOfTurn()
    expect(n.told()).toEqual([`c1:${ACTOR_NOT_HERE}`])
  })
})
