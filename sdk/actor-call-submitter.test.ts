import { describe, expect, it } from 'vitest'
import { ActorCallSubmitter } from './actor-call-submitter.ts'
import { decodeValue, encodeValue } from './codec.ts'
import { type ActorId, type JobId, newActorId, newNodeId, newTaskId, type ObjectId, objectIdOf, type TaskId } from './ids.ts'
import type { TaskScheduling } from './owned-tasks.ts'
import { ownerWiring } from './owner.fixture.ts'
import { ACTOR_NOT_HERE, type Lease, type PeerMessageOf, type PushedTask, type TaskResult, type TaskSpec } from './protocol/index.ts'
import { actorCallFields, taskSpec } from './task-spec.fixture.ts'

const JOB = '0000002b' as JobId
const CALLER = `d-${'1'.repeat(54)}`

async function turn(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

let nextLease = 1
function actorLease(actorId: string, nodeId: string, incarnation = 0): Lease {
  return {
    leaseId: (nextLease++).toString(16).padStart(32, '0'),
    nodeId,
    owner: CALLER,
    jobId: JOB,
    units: {},
    actor: { actorId, incarnation },
    sig: '0'.repeat(64),
  }
}

/** A caller as `Mesh` wires it (see ownerWiring), the coordinator and the actor's node played by the test. */
function caller() {
  const { objects, control, peer, refs, tm, links } = ownerWiring()
  const ac = new ActorCallSubmitter(
    {
      namespace: 'ns',
      objects,
      links,
      requestLease: (actorId) => control.push({ type: 'actor-lease-request', actorId }),
      pushBudget: () => 1 << 20,
    },
    tm,
  )
  tm.actorCalls = ac
  tm.scheduling = {} as TaskScheduling
  const held: unknown[] = []
  const actorId = newActorId(JOB) as ActorId
  const o = {
    tm,
    ac,
    actorId,
    objects,
    control,
    /** `handle.m.remote(x)`, or with a ref argument. */
    call(arg: { v: unknown } | { ref: ObjectId } = { v: 1 }): TaskSpec {
      const s = taskSpec(JOB, '', {
        ...actorCallFields(actorId),
        args: ['ref' in arg ? { ref: arg.ref } : { v: encodeValue(arg.v, 'x') }],
      })
      const id = objectIdOf(s.taskId as TaskId, 1)
      held.push(refs.own(id))
      objects.expect(id)
      tm.submit(s)
      return s
    },
    alive(nodeId: string = newNodeId(), incarnation = 0, maxTaskRetries = 0): Lease {
      const lease = actorLease(actorId, nodeId, incarnation)
      ac.onActorState({ type: 'actor-state', actorId, state: 'ALIVE', lease, maxTaskRetries })
      return lease
    },
    pushed: (lease?: Lease): PushedTask[] =>
      peer
        .map((p) => p.msg)
        .filter((m): m is PeerMessageOf<'push'> => m.type === 'push' && (!lease || m.lease.leaseId === lease.leaseId))
        .flatMap((m) => m.tasks),
    cancels: () => peer.map((p) => p.msg).filter((m) => m.type === 'cancel'),
    results(lease: Lease, results: TaskResult[]): void {
      ac.onResults(lease.nodeId, { type: 'results', leaseId: lease.leaseId, results }, 'direct')
    },
    value: (s: TaskSpec) => {
      const data = objects.read(objectIdOf(s.taskId as TaskId, 1))?.data
      return data && decodeValue(data)
    },
    error: (s: TaskSpec) => objects.read(objectIdOf(s.taskId as TaskId, 1))?.error,
  }
  return o
}

const okResult = (t: PushedTask, v: unknown = t.seq): TaskResult => ({
  taskId: t.taskId as never,
  attempt: t.attempt,
  ok: true,
  returns: [encodeValue(v, 'r')],
})

describe('ActorCallSubmitter (direct actor calls, caller side)', () => {
  it('asks the coordinator once, then pushes calls in the order made, numbered from 0 per lease', async () => {
    const c = caller()
    const calls = [c.call({ v: 'a' }), c.call({ v: 'b' }), c.call({ v: 'c' })]
    await turn()
    expect(c.control.filter((m) => m.type === 'actor-lease-request')).toHaveLength(1)
    expect(c.pushed()).toHaveLength(0) // not callable yet
    const lease = c.alive()
    await turn()
    expect(c.pushed(lease).map((t) => [t.taskId, t.seq, t.method])).toEqual(calls.map((s, i) => [s.taskId, i, 'm']))
    c.results(
      lease,
      c.pushed(lease).map((t) => okResult(t)),
    )
    expect(calls.map((s) => c.value(s))).toEqual([0, 1, 2])
  })

  it('a call waiting for its argument holds back the later calls of its caller; a failed argument fails only its call', async () => {
    const c = caller()
    const dep = objectIdOf(newTaskId(JOB), 1)
    c.objects.expect(dep)
    const first = c.call({ ref: dep })
    const second = c.call()
    const lease = c.alive()
    await turn()
    expect(c.pushed(lease)).toHaveLength(0)
    c.objects.resolve(dep, { error: { name: 'TaskError', code: 'TASK_ERROR', message: 'boom' } })
    await turn()
    expect(c.error(first)?.message).toBe('boom')
    expect(c.pushed(lease).map((t) => [t.taskId, t.seq])).toEqual([[second.taskId, 0]])
  })

  it('a cancelled call not yet pushed never goes; a pushed one is asked of the node, which answers it', async () => {
    const c = caller()
    const a = c.call()
    const b = c.call()
    await turn()
    c.tm.cancel(a.taskId, false)
    const lease = c.alive()
    await turn()
    expect(c.error(a)?.code).toBe('TASK_CANCELLED')
    expect(c.pushed(lease).map((t) => [t.taskId, t.seq])).toEqual([[b.taskId, 0]])
    c.tm.cancel(b.taskId, false)
    expect(c.cancels()).toHaveLength(1)
    expect(c.error(b)).toBeUndefined() // the node says whether it ran
    c.results(lease, [okResult(c.pushed(lease)[0] as PushedTask, 'ran')])
    expect(c.value(b)).toBe('ran')
  })

  it('on RESTARTING, calls in flight run again on the next incarnation within maxTaskRetries, first and in order', async () => {
    const c = caller()
    const calls = [c.call(), c.call()]
    const l1 = c.alive(newNodeId(), 0, 1)
    await turn()
    c.ac.onActorState({ type: 'actor-state', actorId: c.actorId, state: 'RESTARTING', reason: 'node x died', maxTaskRetries: 1 })
    const later = c.call()
    await turn()
    const l2 = c.alive(newNodeId(), 1, 1)
    await turn()
    expect(c.pushed(l2).map((t) => [t.taskId, t.attempt, t.seq])).toEqual([
      [calls[0]?.taskId, 1, 0],
      [calls[1]?.taskId, 1, 1],
      [later.taskId, 0, 2],
    ])
    // A late answer from the old incarnation is not taken.
    c.results(l1, [okResult(c.pushed(l1)[0] as PushedTask, 'old')])
    expect(c.value(calls[0] as TaskSpec)).toBeUndefined()
    // Lost again with no retries left: it fails, saying why.
    c.ac.onActorState({ type: 'actor-state', actorId: c.actorId, state: 'RESTARTING', reason: 'worker crashed', maxTaskRetries: 1 })
    expect(c.error(calls[0] as TaskSpec)?.message).toMatch(/worker crashed while this call ran/)
  })

  it('while it restarts with maxTaskRetries 0, a new call fails at once (Ray fast-fails it)', async () => {
    const c = caller()
    const first = c.call()
    c.alive()
    await turn()
    c.ac.onActorState({ type: 'actor-state', actorId: c.actorId, state: 'RESTARTING', reason: 'node x died', maxTaskRetries: 0 })
    expect(c.error(first)?.message).toMatch(/node x died while this call ran/)
    const s = c.call()
    expect(c.error(s)?.code).toBe('ACTOR_DIED')
  })

  it('on DEAD, every call pending fails with the reason, and later calls too', async () => {
    const c = caller()
    const a = c.call()
    c.alive()
    await turn()
    const error = { name: 'ActorDiedError', code: 'ACTOR_DIED', message: 'The actor died: killed by mesh.kill()' }
    c.ac.onActorState({ type: 'actor-state', actorId: c.actorId, state: 'DEAD', error })
    const b = c.call()
    expect(c.error(a)?.message).toBe(error.message)
    expect(c.error(b)?.message).toBe(error.message)
  })

  it('a node that does not host the actor refuses: the caller asks again and resends in order, then gives up', async () => {
    const c = caller()
    const calls = [c.call(), c.call()]
    const l1 = c.alive()
    await turn()
    const error = { name: 'ValidationError', code: ACTOR_NOT_HERE, message: 'not here' }
    const refuse = (l: Lease) =>
      c.results(
        l,
        c.pushed(l).map((t) => ({ taskId: t.taskId as never, attempt: t.attempt, ok: false as const, error, userError: false })),
      )
    refuse(l1)
    await new Promise((r) => setTimeout(r, 60))
    expect(c.control.filter((m) => m.type === 'actor-lease-request')).toHaveLength(2)
    let lease = c.alive()
    await turn()
    expect(c.pushed(lease).map((t) => [t.taskId, t.seq])).toEqual(calls.map((s, i) => [s.taskId, i]))
    for (let i = 0; i < 3; i++) {
      refuse(lease)
      lease = c.alive()
      await turn()
    }
    expect(c.error(calls[0] as TaskSpec)?.message).toMatch(/kept refusing/)
  })

  it('a call lost on its way (its frame refused) fails; the calls after it go again in order under a new lease', async () => {
    const c = caller()
    const calls = [c.call({ v: 'a' }), c.call({ v: 'b' }), c.call({ v: 'c' })]
    const l1 = c.alive()
    await turn()
    expect(c.pushed(l1)).toHaveLength(3)
    c.tm.lost(calls[1]?.taskId as string, { name: 'ValidationError', message: 'frame refused' } as never)
    expect(c.error(calls[1] as TaskSpec)?.message).toBe('frame refused')
    await turn()
    expect(c.control.filter((m) => m.type === 'actor-lease-request')).toHaveLength(2)
    const l2 = c.alive()
    await turn()
    expect(c.pushed(l2)).toEqual([]) // the call before the lost one is still in flight under the old lease
    c.results(l1, [okResult(c.pushed(l1)[0] as PushedTask, 'a')])
    await turn()
    // Only the call after the lost one goes again (the one before it reached the node), numbered from 0.
    expect(c.pushed(l2).map((t) => [t.taskId, t.seq])).toEqual([[calls[2]?.taskId, 0]])
    c.results(l2, [okResult(c.pushed(l2)[0] as PushedTask, 'c')])
    expect([c.value(calls[0] as TaskSpec), c.value(calls[2] as TaskSpec)]).toEqual(['a', 'c'])
  })
})
