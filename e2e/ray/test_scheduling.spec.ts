import { beforeAll, describe, expect, it } from 'vitest'
import { type ActorHandle, GetTimeoutError, type Mesh, ShoalError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import {
  type RuntimeContext,
  rejection,
  type Semaphore,
  SignalActor,
  semaphore,
  signalActor,
  useActorCleanup,
  waitForCondition,
  waitForFreeCpus,
} from './helpers.ts'

// Ported from python/ray/tests/test_scheduling.py and test_scheduling_2.py: the hybrid policy, SPREAD and node
// affinity (placement groups, custom-resource locality and the autoscaler's demand reports are out of scope).
type TaskSelf = { shoal: Mesh; shoalContext: RuntimeContext }

let mesh: Mesh
// 4 CPUs per node, so "half a node" (the hybrid policy's threshold) is more than one task.
const cluster = useCluster({ nodes: 2, cpus: 4 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
const keep = useActorCleanup(() => mesh)

const counts = (xs: string[]) => {
  const m = new Map<string, number>()
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1)
  return [...m.values()]
}
/** Ray's NodeID.from_random().hex(): a node id no node has. */
const randomNodeId = () => Array.from({ length: 56 }, () => '0123456789abcdef'[Math.floor(Math.random() * 16)]).join('')
const getNodeIdFn = function getNodeId() {
  return (self as unknown as TaskSelf).shoalContext.nodeId
}

describe('test_scheduling.py', () => {
  it('test_scheduling.py::test_hybrid_policy', async () => {
    // Ray: 2 nodes × 10 CPUs and batches of 5, 10, 20; here 2 × 4 and batches of 2, 4, 8.
    // `blockTask` ensures that scheduled tasks do not return until all are running.
    const blockTask = keep(semaphore(mesh, 0))
    // `blockDriver` ensures that the driver does not allow tasks to continue until all are running.
    const blockDriver = keep(semaphore(mesh, 0))
    const getNode = mesh.remote(async function getNode(bt: ActorHandle<Semaphore>, bd: ActorHandle<Semaphore>) {
      const shoal = (self as unknown as TaskSelf).shoal
      const nodeId = (self as unknown as TaskSelf).shoalContext.nodeId
      // Ray adds a `memory=1` resource because the CPU is released in ray.get; Shoal has no memory resource, so
      // the task keeps its CPU by not reporting its waits (the @internal hook behind CPU lending).
      shoal.blockingHooks = undefined
      await shoal.get(bd.release.remote())
      await shoal.get(bt.acquire.remote())
      return nodeId
    })
    const batch = async (n: number) => {
      const refs = Array.from({ length: n }, () => getNode.remote(blockTask, blockDriver))
      await mesh.get(
        refs.map(() => blockDriver.acquire.remote()),
        { timeout: 10_000 },
      )
      await mesh.get(refs.map(() => blockTask.release.remote()))
      return mesh.get(refs, { timeout: 10_000 })
    }
    // Below the hybrid threshold we pack one node first.
    let nodes = await batch(2)
    expect(new Set(nodes).size).toBe(1)
    // We pack the second node to the hybrid threshold.
    nodes = await batch(4)
    expect(counts(nodes)).toEqual([2, 2])
    // Once all nodes are past the hybrid threshold we round robin.
    nodes = await batch(8)
    expect(counts(nodes)).toEqual([4, 4])
  })

  it('test_scheduling.py::test_spread_scheduling_overrides_locality_aware_scheduling', async () => {
    // Ray pins non_local() with a custom resource only the remote node has; here with hard node affinity. Its result
    // is large, so it stays in that node's object store (Ray sets max_direct_call_object_size to 0 for this).
    const [localNode, remoteNode] = cluster().nodes.map((n) => n.nodeId) as [string, string]
    const nonLocal = mesh
      .remote(function nonLocal() {
        return new Uint8Array(200 * 1024)
      })
      .options({ schedulingStrategy: { nodeId: remoteNode, soft: false } })
    const f = mesh
      .remote(function spreadF(_x: Uint8Array) {
        return (self as unknown as TaskSelf).shoalContext.nodeId
      })
      .options({ schedulingStrategy: 'SPREAD' })
    // Round robin skips a node with no CPU free: the last case's leases must be gone, as in Ray's fresh cluster.
    await waitForFreeCpus(mesh, 'before spreading')
    // Test that task f() runs on the local node as well even though remote node has the dependencies.
    const obj1 = nonLocal.remote()
    const obj2 = nonLocal.remote()
    expect(new Set([await mesh.get(f.remote(obj1)), await mesh.get(f.remote(obj2))])).toEqual(new Set([localNode, remoteNode]))
  })
})

describe('test_scheduling_2.py', () => {
  it('test_scheduling_2.py::test_spread_scheduling_strategy', async () => {
    // Ray: a 0-CPU head and 2 workers of 8 CPUs; here the file's 2 nodes of 4.
    const workerNodeIds = new Set(cluster().nodes.map((n) => n.nodeId))
    const signal = keep(signalActor(mesh))
    // Ray's task1 waits on a KV flag the driver clears; here on a signal.
    const task1 = mesh
      .remote(async function task1(sig: ActorHandle<SignalActor>) {
        const nodeId = (self as unknown as TaskSelf).shoalContext.nodeId
        await (self as unknown as TaskSelf).shoal.get(sig.wait.remote())
        return nodeId
      })
      .options({ schedulingStrategy: 'SPREAD' })
    const task2 = mesh.remote(function task2() {
      return (self as unknown as TaskSelf).shoalContext.nodeId
    })
    const locations = [task1.remote(signal)]
    await waitForCondition(async () => (await mesh.get(signal.curNumWaiters.remote())) === 1, 'task1 to run')
    locations.push(task2.options({ schedulingStrategy: 'SPREAD' }).remote())
    await mesh.get(locations[1] as never, { timeout: 10_000 })
    await mesh.get(signal.send.remote())
    expect(new Set(await mesh.get(locations, { timeout: 10_000 }))).toEqual(workerNodeIds)

    // Make sure actors can be spread as well (Ray: 8 actors of 1 CPU on 2 × 8 CPUs; here 4 on 2 × 4).
    class SpreadActor {
      ping() {
        return (self as unknown as TaskSelf).shoalContext.nodeId
      }
    }
    const actorLocations: string[] = []
    for (let i = 0; i < 4; i++) {
      const actor = keep(mesh.remote(SpreadActor).options({ numCpus: 1, schedulingStrategy: 'SPREAD' }).remote())
      actorLocations.push(await mesh.get(actor.ping.remote(), { timeout: 10_000 }))
    }
    expect(actorLocations.sort()).toEqual([...workerNodeIds, ...workerNodeIds].sort())
  })

  // Last in the file: it adds a node and kills it.
  it('test_scheduling_2.py::test_node_affinity_scheduling_strategy', async () => {
    const [headNodeId, workerNodeId] = cluster().nodes.map((n) => n.nodeId) as [string, string]
    const getNodeId = mesh.remote(getNodeIdFn)
    const hard = (nodeId: string) => ({ schedulingStrategy: { nodeId, soft: false } })
    const soft = (nodeId: string) => ({ schedulingStrategy: { nodeId, soft: true } })

    expect(await mesh.get(getNodeId.options(hard(workerNodeId)).remote(), { timeout: 10_000 })).toBe(workerNodeId)
    expect(await mesh.get(getNodeId.options(hard(headNodeId)).remote(), { timeout: 10_000 })).toBe(headNodeId)
    // Doesn't fail when the node doesn't exist since soft is true.
    await mesh.get(getNodeId.options(soft(randomNodeId())).remote(), { timeout: 10_000 })
    // (Ray's "soft affinity to a node that cannot fit it" uses a custom resource only one node has: not portable.)

    // Fail when the node doesn't exist (Ray: TaskUnschedulableError; Shoal has no such class, so: any Shoal error
    // that is not a timeout).
    const noNode = await rejection(mesh.get(getNodeId.options(hard(randomNodeId())).remote(), { timeout: 5000 }))
    expect(noNode).not.toBeInstanceOf(GetTimeoutError)
    expect(noNode).toBeInstanceOf(ShoalError)

    // A task with soft affinity to a node that crashes while it runs is retried elsewhere.
    const crashedWorkerNode = await cluster().addNode(2)
    const crashedWorkerNodeId = crashedWorkerNode.nodeId
    // Signals live on the head node, so they survive the crash (Ray uses the GCS's KV store).
    const Signal = mesh.remote(SignalActor).options({ maxConcurrency: 1000, numCpus: 0, ...hard(headNodeId) })
    const started = keep(Signal.remote())
    const never = keep(Signal.remote())
    const crashedGetNodeId = mesh
      .remote(async function crashedGetNodeId(target: string, s: ActorHandle<SignalActor>, n: ActorHandle<SignalActor>) {
        const shoal = (self as unknown as TaskSelf).shoal
        const nodeId = (self as unknown as TaskSelf).shoalContext.nodeId
        if (nodeId === target) {
          await shoal.get(s.send.remote())
          await shoal.get(n.wait.remote())
        }
        return nodeId
      })
      .options({ maxRetries: -1, ...soft(crashedWorkerNodeId) })
    const r = crashedGetNodeId.remote(crashedWorkerNodeId, started, never)
    await mesh.get(started.wait.remote(), { timeout: 10_000 })
    await crashedWorkerNode.close()
    expect([headNodeId, workerNodeId]).toContain(await mesh.get(r, { timeout: 10_000 }))

    class WhereActor {
      getNodeId() {
        return (self as unknown as TaskSelf).shoalContext.nodeId
      }
    }
    const Actor = mesh.remote(WhereActor).options({ numCpus: 1 })
    let actor = keep(Actor.options(hard(workerNodeId)).remote())
    expect(await mesh.get(actor.getNodeId.remote(), { timeout: 10_000 })).toBe(workerNodeId)
    actor = keep(Actor.options(hard(headNodeId)).remote())
    expect(await mesh.get(actor.getNodeId.remote(), { timeout: 10_000 })).toBe(headNodeId)
    // (Ray's "wait until the target node becomes available" case needs a custom resource: not portable.)
    // Doesn't fail when the node doesn't exist since soft is true.
    actor = keep(Actor.options(soft(randomNodeId())).remote())
    expect(await mesh.get(actor.getNodeId.remote(), { timeout: 10_000 })).toBeTruthy()
    // Fail when the node doesn't exist (Ray: ActorUnschedulableError).
    actor = keep(Actor.options(hard(randomNodeId())).remote())
    const noNodeActor = await rejection(mesh.get(actor.getNodeId.remote(), { timeout: 5000 }))
    expect(noNodeActor).not.toBeInstanceOf(GetTimeoutError)
    expect(noNodeActor).toBeInstanceOf(ShoalError)

    // Fail when the node is infeasible: hard affinity to a node that can never fit the task (Ray:
    // TaskUnschedulableError / ActorUnschedulableError at once, not a wait).
    const infeasible = getNodeId.options({ ...hard(headNodeId), resources: { not_exist: 1 } }).remote()
    try {
      const err = await rejection(mesh.get(infeasible, { timeout: 5000 }))
      expect(err).not.toBeInstanceOf(GetTimeoutError)
      expect(err).toBeInstanceOf(ShoalError)
    } finally {
      await mesh.cancel(infeasible).catch(() => {})
    }
    actor = keep(Actor.options({ ...hard(workerNodeId), resources: { not_exist: 1 } }).remote())
    const infeasibleActor = await rejection(mesh.get(actor.getNodeId.remote(), { timeout: 5000 }))
    expect(infeasibleActor).not.toBeInstanceOf(GetTimeoutError)
    expect(infeasibleActor).toBeInstanceOf(ShoalError)
  })
})
