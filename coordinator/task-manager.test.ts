import { afterEach, describe, expect, it } from 'vitest'
import { decodeValue } from '../sdk/codec.ts'
import { fromUnits } from '../sdk/resources.ts'
import { Cluster } from './cluster.ts'
import { driver, node, ok, submit, task, tick, userError } from './test-harness.ts'

let cluster: Cluster
afterEach(() => cluster?.close())

const cpuFree = (c: Cluster, nodeId: string) => fromUnits(c.nodes.get(nodeId)?.available ?? {}).CPU

describe('task manager', () => {
  it('never over-commits a node, and gives back exactly what a task took (success, failure, retry)', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 2)
    const d = await driver(cluster)
    const specs = [task(d), task(d), task(d, { retryExceptions: true, maxRetries: 1 }), task(d)]
    submit(d, specs)
    await tick()
    expect(n.assignments()).toHaveLength(2)
    expect(cpuFree(cluster, n.nodeId)).toBe(0)

    const [a0, a1] = n.assignments()
    n.send({ type: 'task-results', results: [userError(a0!), ok(a1!)] })
    await tick()
    expect(n.assignments()).toHaveLength(4)
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    const [, , a2, a3] = n.assignments()
    n.send({ type: 'task-results', results: [userError(a2!), ok(a3!)] })
    await tick()
    // task 2 is retried (retryExceptions) on the freed slot
    const retry = n.assignments()[4]
    expect(retry?.taskId).toBe(specs[2]?.taskId)
    expect(retry?.attempt).toBe(1)
    n.send({ type: 'task-results', results: [ok(retry!)] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(2)
    const errors = d.objects().filter((o) => o.error)
    expect(errors.map((o) => o.objectId)).toEqual([specs[0]?.returnId])
    expect(d.objects()).toHaveLength(4)
  })

  it('ignores a duplicate or stale result: each result is delivered once', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    const t = task(d)
    submit(d, [t])
    await tick()
    const a = n.assignments()[0]!
    n.send({ type: 'task-results', results: [ok(a), ok(a), { ...ok(a), attempt: 7 }] })
    await tick()
    expect(d.objects()).toHaveLength(1)
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
  })

  it('retries the tasks of a dead node elsewhere, then fails them with NodeDiedError naming the node', async () => {
    cluster = new Cluster({ log: () => {} })
    const n1 = await node(cluster, 1)
    const d = await driver(cluster)
    const retried = task(d, { maxRetries: 1, resources: { CPU: 0.5 } })
    const once = task(d, { maxRetries: 0, resources: { CPU: 0.5 } })
    submit(d, [retried, once])
    await tick()
    expect(n1.assignments()).toHaveLength(2)
    n1.disconnect()
    await tick()
    const failed = d.objects().find((o) => o.objectId === once.returnId)
    expect(failed?.error?.code).toBe('NODE_DIED')
    expect(failed?.error?.message).toContain(n1.nodeId)
    const n2 = await node(cluster, 1)
    await tick()
    const a = n2.assignments()[0]!
    expect(a.taskId).toBe(retried.taskId)
    expect(a.attempt).toBe(1)
    // A late result from the dead node's attempt is ignored.
    n1.send({ type: 'task-results', results: [ok({ ...a, attempt: 0 })] })
    n2.send({ type: 'task-results', results: [ok(a)] })
    await tick()
    const done = d.objects().filter((o) => o.objectId === retried.returnId)
    expect(done).toHaveLength(1)
    expect(decodeValue(done[0]?.data as Uint8Array)).toBe(1)
  })

  it('holds a task no node could ever fit as infeasible, and runs it when a big enough node joins', async () => {
    cluster = new Cluster({ log: () => {} })
    await node(cluster, 2)
    const d = await driver(cluster)
    const big = task(d, { resources: { CPU: 8 } })
    submit(d, [big])
    await tick()
    expect(cluster.events.summarize().infeasible.map((t) => t.taskId)).toEqual([big.taskId])
    expect(cluster.status().infeasible).toHaveLength(1)
    const n2 = await node(cluster, 8)
    await tick()
    expect(n2.assignments().map((a) => a.taskId)).toEqual([big.taskId])
    expect(cluster.events.summarize().infeasible).toEqual([])
  })

  it('waits for ref arguments (PENDING_ARGS_AVAIL) and fails a task whose argument failed', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 4)
    const d = await driver(cluster)
    const producer = task(d)
    const consumer = task(d, { args: [{ ref: producer.returnId }] })
    submit(d, [producer, consumer])
    await tick()
    expect(n.assignments().map((a) => a.taskId)).toEqual([producer.taskId])
    expect(cluster.events.get(consumer.taskId)?.state).toBe('PENDING_ARGS_AVAIL')
    n.send({ type: 'task-results', results: [userError(n.assignments()[0]!)] })
    await tick()
    const failed = d.objects().find((o) => o.objectId === consumer.returnId)
    expect(failed?.error?.code).toBe('TASK_ERROR')
  })

  it('rejects a forged ref, a foreign task id and an unknown function without changing anything else', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    const other = await driver(cluster)
    const forged = task(d, { args: [{ ref: 'ab'.repeat(28) }] })
    const foreign = task(other)
    const unknownFn = task(d, { functionId: 'nope' })
    submit(d, [forged, foreign, unknownFn])
    await tick()
    const errs = d.objects()
    expect(errs.find((o) => o.objectId === forged.returnId)?.error?.message).toMatch(/unknown to this coordinator/)
    expect(errs.find((o) => o.objectId === unknownFn.returnId)?.error?.message).toMatch(/unknown function/)
    d.send({ type: 'submit', tasks: [{ junk: true }] })
    await tick()
    expect(
      d
        .of('error')
        .map((m) => m.error.message)
        .join('\n'),
    ).toMatch(/does not belong to this job[\s\S]*malformed task spec/)
    expect(n.assignments()).toHaveLength(0)
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
  })

  it('cancels a queued task and a running one; the job end cancels the rest', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    const running = task(d)
    const queued = task(d)
    const later = task(d)
    submit(d, [running, queued, later])
    await tick()
    d.send({ type: 'cancel', reqId: 5, objectId: queued.returnId, force: false })
    d.send({ type: 'cancel', reqId: 6, objectId: running.returnId, force: true })
    await tick()
    expect(n.of('cancel-task').map((m) => m.taskId)).toEqual([running.taskId])
    const codes = Object.fromEntries(d.objects().map((o) => [o.objectId, o.error?.code]))
    expect(codes[queued.returnId]).toBe('TASK_CANCELLED')
    expect(codes[running.returnId]).toBe('TASK_CANCELLED')
    expect(n.assignments().map((a) => a.taskId)).toEqual([running.taskId, later.taskId])
    d.disconnect()
    await tick()
    expect(cluster.jobs.get(d.jobId)?.state).toBe('FINISHED')
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
  })

  it('refuses a wrong token with a clear error and closes the connection', async () => {
    cluster = new Cluster({ token: 's3cret', log: () => {} })
    const d = await driver(cluster, { token: 'wrong' })
    expect(d.of('reply')[0]).toMatchObject({ ok: false, error: { code: 'CONNECTION', message: 'the coordinator refused the token' } })
    expect(d.closed?.code).toBe(4001)
    const good = await driver(cluster, { token: 's3cret' })
    expect(good.jobId).toMatch(/^[0-9a-f]{8}$/)
  })
})

describe('pipelining of short tasks', () => {
  it('queues short tasks at a busy node, promotes them in order, and never over-commits', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 2)
    const d = await driver(cluster)
    // Teach the coordinator that `f` is short: one quick task.
    submit(d, [task(d)])
    await tick()
    n.send({ type: 'task-results', results: [ok(n.assignments()[0]!)] })
    await tick()

    const specs = Array.from({ length: 10 }, () => task(d))
    submit(d, specs)
    await tick()
    const sent = n.assignments().slice(1)
    const backlogged = (a: { taskId: string }) => !!cluster.tasks.get(a.taskId)?.backlogged
    // 2 with resources, then up to 2 per CPU waiting in the node's queue; the rest wait at the coordinator.
    expect(sent.map(backlogged)).toEqual([false, false, true, true, true, true])
    expect(cpuFree(cluster, n.nodeId)).toBe(0)

    // The node finishes one: the first queued task takes its slot (it is already there: nothing new is sent for it),
    // and one more short task may join the node's queue.
    n.send({ type: 'task-results', results: [ok(sent[0]!)] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    const more = n.assignments().slice(7)
    expect(more.map(backlogged)).toEqual([true])
    for (const a of [...sent.slice(1), ...more]) {
      n.send({ type: 'task-results', results: [ok(a)] })
      await tick()
      expect(cpuFree(cluster, n.nodeId)).toBeGreaterThanOrEqual(0)
    }
    while (n.assignments().length < 11) await tick()
    for (const a of n.assignments().slice(8)) n.send({ type: 'task-results', results: [ok(a)] })
    await tick()
    expect(d.objects().filter((o) => specs.some((s) => s.returnId === o.objectId))).toHaveLength(10)
    expect(cpuFree(cluster, n.nodeId)).toBe(2)
  })

  it('never pipelines a function it has not seen finish quickly', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    submit(d, [task(d), task(d), task(d)])
    await tick()
    expect(n.assignments().map((a) => !!cluster.tasks.get(a.taskId)?.backlogged)).toEqual([false])
  })
})

describe('tasks blocked in get', () => {
  it('lend their CPU to the node while they wait, take it back after, and end with the node whole', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    const parent = task(d)
    submit(d, [parent])
    await tick()
    const pa = n.assignments()[0]!
    const child = task(d)
    submit(d, [child])
    await tick()
    expect(n.assignments()).toHaveLength(1) // no CPU for the child yet
    n.send({ type: 'task-blocked', taskId: pa.taskId as never, attempt: 0, blocked: true })
    await tick()
    expect(n.assignments().map((a) => a.taskId)).toEqual([parent.taskId, child.taskId])
    n.send({ type: 'task-results', results: [ok(n.assignments()[1]!)] })
    await tick()
    n.send({ type: 'task-blocked', taskId: pa.taskId as never, attempt: 0, blocked: false })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    n.send({ type: 'task-results', results: [ok(pa)] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
  })

  it('a task that finishes while still marked blocked gives back nothing twice', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 2)
    const d = await driver(cluster)
    submit(d, [task(d)])
    await tick()
    const a = n.assignments()[0]!
    n.send({ type: 'task-blocked', taskId: a.taskId as never, attempt: 0, blocked: true })
    n.send({ type: 'task-results', results: [ok(a)] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(2)
  })
})
