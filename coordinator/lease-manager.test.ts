import { createHmac } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { encodeValue } from '../sdk/codec.ts'
import { type JobId, newTaskId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { leaseSigningText } from '../sdk/protocol/index.ts'
import { fromUnits } from '../sdk/resources.ts'
import { Cluster } from './cluster.ts'
import { driver, leasesOf, node, relayResults, requestLeases, tick } from './test-harness.ts'

let cluster: Cluster
afterEach(() => cluster?.close())

const cpuFree = (c: Cluster, nodeId: string) => fromUnits(c.nodes.get(nodeId)?.available ?? {}).CPU ?? 0

describe('worker leases', () => {
  it('grants what fits, signed with the node key, and never over-commits; a return frees exactly what it held', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 2)
    const d = await driver(cluster)
    const shape = requestLeases(d, { CPU: 1 }, 3)
    await tick()
    const granted = leasesOf(d, shape)
    expect(granted).toHaveLength(2)
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    const key = Buffer.from(n.of('welcome')[0]?.leaseKey ?? '', 'hex')
    for (const l of granted) {
      expect(l).toMatchObject({ nodeId: n.nodeId, owner: d.peerId, jobId: d.jobId })
      expect(createHmac('sha256', key).update(leaseSigningText(l)).digest('hex')).toBe(l.sig)
    }
    // The third waits; a return gives it the freed CPU, and the node is told the returned lease ended.
    d.send({ type: 'lease-return', leaseIds: [granted[0]!.leaseId] })
    await tick()
    expect(leasesOf(d, shape)).toHaveLength(3)
    expect(n.of('lease-ended').flatMap((m) => m.leaseIds)).toEqual([granted[0]!.leaseId])
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    // A second return of the same lease, or a return by someone else, changes nothing.
    const other = await driver(cluster)
    d.send({ type: 'lease-return', leaseIds: [granted[0]!.leaseId] })
    other.send({ type: 'lease-return', leaseIds: [granted[1]!.leaseId] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    d.send({ type: 'lease-return', leaseIds: leasesOf(d, shape).map((l) => l.leaseId) })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(2)
    expect(cluster.leases.count).toBe(0)
  })

  it('warns once of a shape no node can fit, and grants it when a big enough node joins', async () => {
    cluster = new Cluster({ log: () => {} })
    await node(cluster, 2)
    const d = await driver(cluster)
    const shape = requestLeases(d, { CPU: 8 })
    requestLeases(d, { CPU: 8 })
    await tick()
    const warnings = d.of('warning')
    expect(warnings).toHaveLength(2) // one per shape
    expect(warnings[0]).toMatchObject({ shapeId: shape })
    expect(warnings[0]?.message).toMatch(/requires \{CPU: 8\}.*the largest has \{CPU: 2\}/)
    const big = await node(cluster, 8)
    await tick()
    expect(leasesOf(d, shape)[0]?.nodeId).toBe(big.nodeId)
  })

  it('fails a request with hard affinity to a node that is gone', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    n.disconnect()
    const shape = requestLeases(d, { CPU: 1 }, 1, { nodeId: n.nodeId, soft: false })
    await tick()
    expect(d.of('lease-failed')[0]).toMatchObject({ shapeId: shape, error: { code: 'TASK_UNSCHEDULABLE' } })
  })

  it("revokes a dead node's leases to their owners, and ends a dead owner's leases on their nodes (kill)", async () => {
    cluster = new Cluster({ log: () => {} })
    const n1 = await node(cluster, 1)
    const n2 = await node(cluster, 1)
    const d = await driver(cluster)
    requestLeases(d, { CPU: 1 }, 2)
    await tick()
    const [l1, l2] = leasesOf(d)
    const onN1 = [l1, l2].find((l) => l?.nodeId === n1.nodeId)!
    const onN2 = [l1, l2].find((l) => l?.nodeId === n2.nodeId)!
    n1.disconnect()
    await tick()
    expect(d.of('lease-revoked')).toEqual([expect.objectContaining({ leaseIds: [onN1.leaseId], nodeId: n1.nodeId })])
    d.disconnect()
    await tick()
    expect(n2.of('lease-ended')).toEqual([{ type: 'lease-ended', leaseIds: [onN2.leaseId], kill: true }])
    expect(cpuFree(cluster, n2.nodeId)).toBe(1)
    expect(cluster.leases.count).toBe(0)
  })

  it('lends a blocked lease back to the node and takes it back after; the node ends whole', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    requestLeases(d)
    await tick()
    const [l] = leasesOf(d)
    n.send({ type: 'lease-blocked', leaseId: l!.leaseId, blocked: true })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
    n.send({ type: 'lease-blocked', leaseId: l!.leaseId, blocked: false })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(0)
    // Returned while blocked: nothing is given back twice.
    n.send({ type: 'lease-blocked', leaseId: l!.leaseId, blocked: true })
    d.send({ type: 'lease-return', leaseIds: [l!.leaseId] })
    await tick()
    expect(cpuFree(cluster, n.nodeId)).toBe(1)
  })

  it('two owners share a full cluster: the one holding more is asked to give some back (fair share)', async () => {
    cluster = new Cluster({ log: () => {} })
    await node(cluster, 4)
    const a = await driver(cluster)
    const b = await driver(cluster)
    requestLeases(a, { CPU: 1 }, 4)
    await tick()
    expect(leasesOf(a)).toHaveLength(4)
    requestLeases(b, { CPU: 1 }, 4)
    await tick()
    const reclaimed = a.of('lease-reclaim').flatMap((m) => m.leaseIds)
    expect(reclaimed.length).toBeGreaterThanOrEqual(2)
    a.send({ type: 'lease-return', leaseIds: reclaimed })
    await tick()
    expect(leasesOf(b).length).toBe(reclaimed.length)
    // Once even, nobody is asked again.
    const before = a.of('lease-reclaim').length + b.of('lease-reclaim').length
    await tick()
    expect(a.of('lease-reclaim').length + b.of('lease-reclaim').length).toBe(before)
  })

  it('on one slot, an owner holding the only lease is asked back for one holding none (owners take turns)', async () => {
    cluster = new Cluster({ log: () => {} })
    await node(cluster, 1)
    const a = await driver(cluster)
    const b = await driver(cluster)
    requestLeases(a, { CPU: 1 }, 1)
    await tick()
    expect(leasesOf(a)).toHaveLength(1)
    requestLeases(b, { CPU: 1 }, 1)
    await tick()
    const reclaimed = a.of('lease-reclaim').flatMap((m) => m.leaseIds)
    expect(reclaimed).toEqual(leasesOf(a).map((l) => l.leaseId))
    a.send({ type: 'lease-return', leaseIds: reclaimed })
    await tick()
    expect(leasesOf(b)).toHaveLength(1)
    // Now a waits: b's lease is asked back in turn.
    requestLeases(a, { CPU: 1 }, 1)
    await tick()
    expect(b.of('lease-reclaim').flatMap((m) => m.leaseIds)).toEqual(leasesOf(b).map((l) => l.leaseId))
  })
})

describe('the peer relay', () => {
  it("registers a relayed result's large returns for its owner, and refuses results for a lease the node does not hold", async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const other = await node(cluster, 1)
    const d = await driver(cluster)
    requestLeases(d)
    await tick()
    const [lease] = leasesOf(d)
    const onN = lease!.nodeId === n.nodeId ? n : other
    const notN = onN === n ? other : n
    const taskId = newTaskId(d.jobId as JobId)
    const id = objectIdOf(taskId as TaskId, 1)
    // Another node cannot speak for this lease: dropped (and its stored return deleted there).
    relayResults(notN, lease!, [{ taskId, attempt: 0, ok: true, returns: [{ stored: 1000 }] }])
    await tick()
    expect(d.of('peer-recv')).toHaveLength(0)
    expect(notN.of('delete-objects').flatMap((m) => m.objectIds)).toEqual([id])
    relayResults(onN, lease!, [{ taskId, attempt: 0, ok: true, returns: [{ stored: 1000 }] }])
    await tick()
    const [recv] = d.of('peer-recv')
    expect(recv).toMatchObject({ from: onN.nodeId, msgs: [{ type: 'results', registered: true }] })
    expect(cluster.objects.read(id)).toMatchObject({ size: 1000 })
    expect([...(cluster.objects.read(id)?.locations ?? [])]).toEqual([onN.nodeId])
    // The owner lets go: the node is told to delete its copy.
    d.send({ type: 'release', objectIds: [id] })
    await tick()
    expect(onN.of('delete-objects').flatMap((m) => m.objectIds)).toEqual([id])
  })

  it('passes plain inline results on unregistered (nothing kept), beside the ones the directory must count', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    requestLeases(d)
    await tick()
    const [lease] = leasesOf(d)
    const plain = newTaskId(d.jobId as JobId)
    const large = newTaskId(d.jobId as JobId)
    relayResults(n, lease!, [
      { taskId: plain, attempt: 0, ok: true, returns: [new Uint8Array([1])] },
      { taskId: large, attempt: 0, ok: true, returns: [{ stored: 1000 }] },
    ])
    await tick()
    const msgs = d.of('peer-recv').flatMap((m) => m.msgs) as { registered?: true; results: { taskId: string }[] }[]
    expect(msgs.map((m) => [m.registered ?? false, m.results.map((r) => r.taskId)])).toEqual([
      [true, [large]],
      [false, [plain]],
    ])
    expect(cluster.objects.read(objectIdOf(plain as TaskId, 1))).toBeUndefined()
    expect(cluster.objects.read(objectIdOf(large as TaskId, 1))).toMatchObject({ size: 1000 })
  })

  it('lets a node relay only results, and a driver write only to nodes', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    const e = await driver(cluster)
    n.send({
      type: 'peer-send',
      to: d.peerId as never,
      msgs: [{ type: 'cancel', leaseId: '0'.repeat(32), taskId: '0'.repeat(48), force: true }],
    })
    d.send({ type: 'peer-send', to: e.peerId as never, msgs: [{ type: 'results', leaseId: '0'.repeat(32), results: [] }] })
    await tick()
    expect(n.of('error')[0]?.error.message).toMatch(/a node may relay only results/)
    expect(d.of('error')[0]?.error.message).toMatch(/go to nodes only/)
    expect(e.of('peer-recv')).toHaveLength(0)
  })
})

describe('task events from owners and nodes', () => {
  it('counts the events owners and nodes dropped from their bounded buffers in the task summary', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    d.send({ type: 'task-events', events: [], dropped: 7 })
    n.send({ type: 'task-events', events: [], dropped: 5 })
    await tick()
    expect(cluster.events.summarize().droppedEvents).toBe(12)
  })

  it('keeps one row per attempt from reports in any order, and fails the rows of an owner that leaves', async () => {
    cluster = new Cluster({ log: () => {} })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    requestLeases(d)
    await tick()
    const taskId = newTaskId(d.jobId as JobId)
    const t0 = Date.now()
    // The node's RUNNING arrives before the owner's batch.
    n.send({ type: 'task-events', events: [{ taskId, attempt: 0, state: 'RUNNING', time: t0 + 2 }] })
    const task = { name: 'f', funcName: 'f', type: 'NORMAL_TASK' as const, resources: { CPU: 1 } }
    d.send({
      type: 'task-events',
      events: [
        { taskId, attempt: 0, state: 'PENDING_ARGS_AVAIL', time: t0, task },
        { taskId, attempt: 0, state: 'SUBMITTED_TO_WORKER', time: t0 + 1, nodeId: n.nodeId },
      ],
    })
    await tick()
    const row = cluster.events.get(taskId)
    expect(row).toMatchObject({ name: 'f', state: 'RUNNING', nodeId: n.nodeId, jobId: d.jobId })
    expect(row?.events.map((e) => e.state)).toEqual(['PENDING_ARGS_AVAIL', 'SUBMITTED_TO_WORKER', 'RUNNING'])
    // Another job's driver cannot write this job's rows; a node without a lease of the job cannot either.
    const intruder = await driver(cluster)
    intruder.send({ type: 'task-events', events: [{ taskId, attempt: 0, state: 'FINISHED', time: t0 + 3 }] })
    const stranger = await node(cluster, 1)
    stranger.send({ type: 'task-events', events: [{ taskId: newTaskId(d.jobId as JobId), attempt: 0, state: 'RUNNING', time: t0 }] })
    await tick()
    expect(cluster.events.get(taskId)?.state).toBe('RUNNING')
    expect(cluster.events.live).toBe(1)
    d.disconnect()
    await tick()
    expect(cluster.events.get(taskId)).toMatchObject({ state: 'FAILED', errorName: 'TaskCancelledError' })
  })

  it("forwards a cancel of another connection's task of the same tenant to its owner", async () => {
    cluster = new Cluster({ log: () => {} })
    const d = await driver(cluster)
    const worker = await driver(cluster)
    const taskId = newTaskId(d.jobId as JobId)
    const task = { name: 'f', funcName: 'f', type: 'NORMAL_TASK' as const, resources: {} }
    d.send({ type: 'task-events', events: [{ taskId, attempt: 0, state: 'PENDING_ARGS_AVAIL', time: Date.now(), task }] })
    await tick()
    worker.send({ type: 'cancel', reqId: 3, objectId: objectIdOf(taskId as TaskId, 1), force: true })
    await tick()
    // Another job of the same tenant may cancel it, as any holder of a ref may in Ray: its owner is asked to.
    expect(worker.of('reply')[0]).toMatchObject({ ok: true })
    expect(d.of('cancel-owned')).toEqual([{ type: 'cancel-owned', taskId, force: true }])
    d.send({ type: 'cancel', reqId: 4, objectId: objectIdOf(taskId as TaskId, 1), force: true })
    await tick()
    expect(d.of('cancel-owned')).toHaveLength(1) // its own task: the SDK cancels it locally
  })

  it("refuses to publish another job's object", async () => {
    cluster = new Cluster({ log: () => {} })
    const a = await driver(cluster)
    const b = await driver(cluster)
    const id = objectIdOf(newTaskId(a.jobId as JobId) as TaskId, 1)
    b.send({ type: 'publish', objects: [{ objectId: id, data: encodeValue('forged', 'x') }] })
    await tick()
    expect(b.of('error')[0]?.error.message).toMatch(/not of this job/)
    expect(cluster.objects.has(id)).toBe(false)
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
