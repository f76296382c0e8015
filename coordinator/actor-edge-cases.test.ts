import { createHmac } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeValue } from '../sdk/codec.ts'
import { type JobId, newActorId, newPutObjectId } from '../sdk/ids.ts'
import { type Lease, leaseSigningText, type TaskSpec } from '../sdk/protocol/index.ts'
import { actorCallFields } from '../sdk/task-spec.fixture.ts'
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
  const call = (a: TaskSpec['args'] = [{ v: encodeValue(1, 'x') }]) => task(d, { ...actorCallFields(actorId), args: a })
  return { actorId, creation, call }
}

/** The actor states told to a caller for one actor, in order. */
const statesOf = (d: D, actorId: string) => d.of('actor-state').filter((m) => m.actorId === actorId)

/** A live actor on a 1-CPU node, created by `d`. */
async function liveActor(over: Partial<NonNullable<TaskSpec['actor']>> = {}) {
  const n1 = await node(cluster, 1)
  const d = await driver(cluster)
  const specs = actorSpecs(d, over)
  submit(d, [specs.creation])
  await tick()
  n1.send({ type: 'task-results', results: [ok(n1.assignments()[0]!)] })
  await tick()
  return { n1, d, ...specs }
}

describe('actor calls go from the caller to the actor node (the coordinator gives actor leases)', () => {
  it('a caller gets an actor lease signed for the actor node, and the coordinator refuses calls submitted to it', async () => {
    cluster = new Cluster({ log: () => {} })
    const { n1, d, actorId, call } = await liveActor()
    d.send({ type: 'actor-lease-request', actorId: actorId as never })
    await tick()
    const [alive] = statesOf(d, actorId)
    expect(alive?.state).toBe('ALIVE')
    const lease = alive?.state === 'ALIVE' ? alive.lease : undefined
    expect(lease).toMatchObject({ nodeId: n1.nodeId, owner: d.peerId, jobId: d.jobId, units: {}, actor: { actorId, incarnation: 0 } })
    const key = n1.of('welcome')[0]?.leaseKey as string
    const { sig, ...unsigned } = lease as Lease
    expect(createHmac('sha256', Buffer.from(key, 'hex')).update(leaseSigningText(unsigned)).digest('hex')).toBe(sig)
    // The old way through the coordinator is closed: the call's return holds why.
    const c = call()
    submit(d, [c])
    await tick()
    expect(d.objects().find((o) => o.objectId === c.returnId)?.error?.message).toMatch(/actor calls go to the actor's node/)
    expect(n1.assignments().filter((a) => a.taskId === c.taskId)).toHaveLength(0)
  })

  it("the node's results under an actor lease reach its caller through the relay, and no one else", async () => {
    cluster = new Cluster({ log: () => {} })
    const { n1, d, actorId, call } = await liveActor()
    const other = await driver(cluster)
    d.send({ type: 'actor-lease-request', actorId: actorId as never })
    await tick()
    const alive = statesOf(d, actorId)[0]
    const lease = (alive?.state === 'ALIVE' && alive.lease) as Lease
    const c = call()
    relayResults(n1, lease, [{ taskId: c.taskId, attempt: 0, ok: true, returns: [{ stored: 300_000 }] }])
    // Under the lease but to someone else: dropped.
    n1.send({ type: 'peer-send', to: other.peerId, msgs: [{ type: 'results', leaseId: lease.leaseId, results: [] }] })
    await tick()
    const got = d.of('peer-recv').flatMap((m) => m.msgs) as { registered?: boolean }[]
    expect(got).toHaveLength(1)
    expect(got[0]?.registered).toBe(true) // a stored return: entered in the directory for its owner
    expect(cluster.objects.read(c.returnId as never)?.locations?.has(n1.nodeId)).toBe(true)
    expect(other.of('peer-recv')).toHaveLength(0)
  })

  it('callers hear RESTARTING when the worker dies, then ALIVE with a new lease on the new node; the old node dying later changes nothing', async () => {
    cluster = new Cluster({ log: () => {} })
    const { n1, d, actorId, creation } = await liveActor({ maxRestarts: 1, maxTaskRetries: 1 })
    d.send({ type: 'actor-lease-request', actorId: actorId as never })
    await tick()
    const n2 = await node(cluster, 1)
    requestLeases(d, { CPU: 1 }, 1, { nodeId: n1.nodeId, soft: false }) // a lease takes n1's CPU: the restart goes to n2
    n1.send({ type: 'actor-died', actorId: actorId as never, attempt: 0, reason: 'worker crashed' })
    await tick()
    expect(statesOf(d, actorId).map((m) => m.state)).toEqual(['ALIVE', 'RESTARTING'])
    const restarting = statesOf(d, actorId)[1]
    expect(restarting?.state === 'RESTARTING' && restarting.maxTaskRetries).toBe(1)
    const re = n2.assignments().find((x) => x.taskId === creation.taskId)!
    n2.send({ type: 'task-results', results: [ok(re)] })
    await tick()
    const again = statesOf(d, actorId)[2]
    expect(again?.state === 'ALIVE' && again.lease.nodeId).toBe(n2.nodeId)
    expect(again?.state === 'ALIVE' && again.lease.actor?.incarnation).toBe(1)
    n1.disconnect()
    await tick()
    expect(statesOf(d, actorId)).toHaveLength(3)
  })

  it('a caller of a dead or unknown actor hears DEAD with why, and callers of a killed actor are told', async () => {
    cluster = new Cluster({ log: () => {} })
    const { d, actorId } = await liveActor()
    d.send({ type: 'actor-lease-request', actorId: actorId as never })
    const unknown = newActorId(d.jobId as JobId)
    d.send({ type: 'actor-lease-request', actorId: unknown as never })
    await tick()
    const gone = statesOf(d, unknown)[0]
    expect(gone?.state === 'DEAD' && gone.error.message).toMatch(/no actor .* exists/)
    d.send({ type: 'kill-actor', reqId: 3, actorId: actorId as never, noRestart: true })
    await tick()
    const dead = statesOf(d, actorId).at(-1)
    expect(dead?.state === 'DEAD' && dead.error.code).toBe('ACTOR_DIED')
    expect(dead?.state === 'DEAD' && dead.error.message).toMatch(/killed by mesh.kill/)
  })
})

describe('actor and relay edge cases', () => {
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
