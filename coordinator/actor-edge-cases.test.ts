import { afterEach, describe, expect, it } from 'vitest'
import { encodeValue } from '../sdk/codec.ts'
import { type JobId, newActorId, newPutObjectId } from '../sdk/ids.ts'
import type { TaskSpec } from '../sdk/protocol/index.ts'
import { Cluster } from './cluster.ts'
import { driver, leasesOf, node, ok, relayResults, requestLeases, submit, task, tick } from './test-harness.ts'

let cluster: Cluster
afterEach(() => cluster?.close())

type D = Awaited<ReturnType<typeof driver>>
function actorSpecs(d: D, over: Partial<NonNullable<TaskSpec['actor']>> = {}, args: TaskSpec['args'] = []) {
  const actorId = newActorId(d.jobId as JobId)
  const creation = task(d, {
    type: 'ACTOR_CREATION_TASK',
    name: 'A.__init__',
    funcName: 'A.__init__',
    actorId,
    maxRetries: 0,
    args,
    actor: {
      className: 'A',
      methods: ['m'],
      namespace: 'default',
      getIfExists: false,
      detached: false,
      maxConcurrency: 1,
      maxRestarts: 0,
      maxTaskRetries: 0,
      ...over,
    },
  })
  const call = (a: TaskSpec['args'] = [{ v: encodeValue(1, 'x') }]) =>
    task(d, {
      type: 'ACTOR_TASK',
      functionId: '',
      name: 'A.m',
      funcName: 'A.m',
      actorId,
      method: 'm',
      resources: {},
      maxRetries: 0,
      args: a,
    })
  return { actorId, creation, call }
}

// Regression tests for bugs found in review (each hung a user's get, or freed what a restart needed).
/** A live actor on a 2-CPU node, and two calls: c1 waits for a normal task's result (dep), c2 is ready. */
async function actorWithTwoCalls() {
  const n = await node(cluster, 2)
  const d = await driver(cluster)
  const { creation, call } = actorSpecs(d)
  submit(d, [creation])
  await tick()
  n.send({ type: 'task-results', results: [ok(n.assignments()[0]!)] })
  await tick()
  // A plain task of the driver's (it owns it: the coordinator knows its return once published, pending).
  const dep = task(d, { maxRetries: 0, resources: { CPU: 1 } })
  d.send({ type: 'publish', objects: [{ objectId: dep.returnId }] })
  await tick()
  const c1 = call([{ ref: dep.returnId }])
  const c2 = call()
  submit(d, [c1, c2])
  await tick()
  return { n, d, dep, c1, c2 }
}

describe('actor and relay edge cases', () => {
  it('an actor call queued behind a call whose argument failed still runs', async () => {
    cluster = new Cluster({ log: () => {} })
    const { n, d, dep, c1, c2 } = await actorWithTwoCalls()
    expect(n.assignments().filter((a) => a.type === 'ACTOR_TASK')).toHaveLength(0) // c2 waits behind c1: ok
    // The dep failed at its owner, which publishes the error.
    const error = { name: 'TaskError', code: 'TASK_ERROR', message: 'boom', data: { remoteName: 'Error' } }
    d.send({ type: 'publish', objects: [{ objectId: dep.returnId, error }] })
    await tick()
    await tick()
    // c1 fails with dep's error (correct) ...
    expect(d.objects().find((o) => o.objectId === c1.returnId)?.error).toBeTruthy()
    // ... but c2, whose args are ready, is never sent to the actor:
    expect(n.assignments().filter((a) => a.taskId === c2.taskId)).toHaveLength(1)
  })

  it('an actor call queued behind a cancelled call still runs', async () => {
    cluster = new Cluster({ log: () => {} })
    const { n, d, c1, c2 } = await actorWithTwoCalls()
    d.send({ type: 'cancel', reqId: 5, objectId: c1.returnId as never, force: false })
    await tick()
    expect(n.assignments().filter((a) => a.taskId === c2.taskId)).toHaveLength(1)
  })

  it('a fetch that joins a relay mid-stream gets the whole object (a second upload)', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d1 = await driver(cluster)
    const d2 = await driver(cluster)
    const t = task(d1)
    requestLeases(d1)
    await tick()
    const [lease] = leasesOf(d1)
    const total = 3 * 256 * 1024
    // A large return of a task pushed under the lease: its result goes through the coordinator, which registers it.
    relayResults(n, lease!, [{ taskId: t.taskId, attempt: 0, ok: true, returns: [{ stored: total }] }])
    await tick()
    d1.send({ type: 'fetch-objects', objectIds: [t.returnId as never] })
    await tick()
    expect(n.of('upload-object')).toHaveLength(1)
    const chunk = (offset: number) => ({
      type: 'object-chunk' as const,
      objectId: t.returnId as never,
      offset,
      total,
      data: new Uint8Array(256 * 1024),
    })
    n.send(chunk(0))
    await tick()
    d2.send({ type: 'subscribe', objectIds: [t.returnId as never] })
    d2.send({ type: 'fetch-objects', objectIds: [t.returnId as never] })
    await tick()
    n.send(chunk(256 * 1024))
    n.send(chunk(512 * 1024))
    await tick()
    const got = d2.of('object-chunk').map((c) => c.offset)
    expect(got).toEqual([]) // d2 did not get a tail it could not assemble...
    expect(n.of('upload-object')).toHaveLength(2) // ...but a second upload, from offset 0
    n.send(chunk(0))
    n.send(chunk(256 * 1024))
    n.send(chunk(512 * 1024))
    await tick()
    expect(d2.of('object-chunk').map((c) => c.offset)).toEqual([0, 262144, 524288])
  })

  it('an actor call retried after a worker crash survives the old node dying later', async () => {
    cluster = new Cluster({ log: () => {} })
    const n1 = await node(cluster, 1)
    const d = await driver(cluster)
    const { actorId, creation, call } = actorSpecs(d, { maxRestarts: 1, maxTaskRetries: 1 })
    submit(d, [creation])
    await tick()
    n1.send({ type: 'task-results', results: [ok(n1.assignments()[0]!)] })
    await tick()
    const c = call()
    submit(d, [c])
    await tick()
    expect(n1.assignments().filter((x) => x.taskId === c.taskId)).toHaveLength(1)
    // n1 is busy with something else long-running so the restart goes elsewhere
    const n2 = await node(cluster, 1)
    requestLeases(d, { CPU: 1 }, 1, { nodeId: n1.nodeId, soft: false }) // a lease takes n1's CPU
    n1.send({ type: 'actor-died', actorId: actorId as never, attempt: 0, reason: 'worker crashed' })
    await tick()
    const re = n2.assignments().find((x) => x.taskId === creation.taskId)!
    expect(re).toBeTruthy()
    n2.send({ type: 'task-results', results: [ok(re)] })
    await tick()
    const c2 = n2.assignments().find((x) => x.taskId === c.taskId)!
    expect(c2.attempt).toBe(1)
    // n1 dies while the retried call runs on n2
    n1.disconnect()
    await tick()
    n2.send({ type: 'task-results', results: [ok(c2)] })
    await tick()
    expect(d.objects().find((o) => o.objectId === c.returnId)).toBeTruthy()
  })

  it('an actor keeps its constructor arguments for restarts, and frees them when it dies', async () => {
    cluster = new Cluster({ log: () => {} })
    const n1 = await node(cluster, 1)
    const d = await driver(cluster)
    // a small put; the driver drops its ref after the actor is created
    const put = newPutObjectId(d.jobId as JobId)
    d.send({ type: 'put', reqId: 9, objectId: put as never, data: encodeValue({ big: 'config' }, 'x') })
    const { creation } = actorSpecs(d, { maxRestarts: 1 }, [{ ref: put }])
    submit(d, [creation])
    await tick()
    n1.send({ type: 'task-results', results: [ok(n1.assignments()[0]!)] })
    await tick()
    d.send({ type: 'release', objectIds: [put as never] })
    await tick()
    const n2 = await node(cluster, 1)
    n1.disconnect()
    await tick()
    const re = n2.assignments().find((x) => x.taskId === creation.taskId)!
    expect(re).toBeTruthy()
    // the object is gone from the directory: the arg becomes {ref, size: 0, locations: []} -> node cannot get it
    expect(cluster.objects.has(put)).toBe(true)
    expect(re.args[0]).toBeInstanceOf(Uint8Array)
    d.send({ type: 'kill-actor', reqId: 10, actorId: creation.actorId as never, noRestart: true })
    await tick()
    expect(cluster.objects.has(put)).toBe(false)
  })
})

describe('borrowed refs', () => {
  it('a ref found inside a value keeps its object alive for the connection that holds it', async () => {
    cluster = new Cluster({ log: () => {} })
    const a = await driver(cluster)
    const b = await driver(cluster)
    const inner = newPutObjectId(a.jobId as JobId)
    const outer = newPutObjectId(a.jobId as JobId)
    a.send({ type: 'put', reqId: 1, objectId: inner as never, data: encodeValue('inner', 'x') })
    a.send({ type: 'put', reqId: 2, objectId: outer as never, data: encodeValue(['holds a ref'], 'x'), nestedRefs: [inner as never] })
    b.send({ type: 'borrow', objectIds: [inner as never] }) // b decoded the outer value and holds the inner ref
    a.send({ type: 'release', objectIds: [inner as never, outer as never] })
    await tick()
    expect(cluster.objects.has(outer)).toBe(false)
    expect(cluster.objects.has(inner)).toBe(true)
    b.send({ type: 'unborrow', objectIds: [inner as never] })
    await tick()
    expect(cluster.objects.has(inner)).toBe(false)
  })

  it('what a connection borrowed is released when it closes', async () => {
    cluster = new Cluster({ log: () => {} })
    const a = await driver(cluster)
    const b = await driver(cluster)
    const id = newPutObjectId(a.jobId as JobId)
    a.send({ type: 'put', reqId: 1, objectId: id as never, data: encodeValue(1, 'x') })
    b.send({ type: 'borrow', objectIds: [id as never, id as never] })
    a.send({ type: 'release', objectIds: [id as never] })
    await tick()
    expect(cluster.objects.has(id)).toBe(true)
    b.disconnect()
    await tick()
    expect(cluster.objects.has(id)).toBe(false)
  })
})
