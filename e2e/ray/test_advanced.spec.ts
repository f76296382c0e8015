import { beforeAll, describe, expect, it } from 'vitest'
import { type Mesh, ObjectLostError, type ObjectRef, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { type Failure, type RuntimeContext, rejection, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_advanced.py, with the task/object basics of test_advanced_2.py, test_advanced_3.py
// and test_advanced_6.py (small enough to share this spec; the rest of those files is GPUs, logs and processes).
type TaskSelf = { shoal: Mesh; shoalContext: RuntimeContext }

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
const keep = useActorCleanup(() => mesh)

/** Ray's ObjectFreedError: an ObjectLostError whose code says it was freed on purpose. */
function expectFreed(err: Failure) {
  expect(err).toBeInstanceOf(ObjectLostError)
  expect(err.name).toBe('ObjectFreedError')
  expect(err.code).toBe('OBJECT_FREED')
}

// First in the file: Ray's version counts the actors and jobs of a fresh cluster.
describe('test_advanced_3.py', () => {
  it('test_advanced_3.py::test_global_state_api', async () => {
    const nodes = await mesh.state.listNodes()
    // Ray: one node with 5 CPUs; here the file's 2 nodes of 2.
    expect(nodes).toHaveLength(2)
    expect(nodes.reduce((s, n) => s + (n.resources.CPU ?? 0), 0)).toBe(4)
    // Objects made at start-up may exist: only check that listing them works.
    expect((await mesh.state.listObjects()).length).toBeGreaterThanOrEqual(0)
    const jobId = mesh.jobId

    const actor = keep(mesh.remote(class StateActor {}).remote())
    await waitForCondition(
      async () => (await mesh.state.listActors()).some((a) => a.actorId === actor.actorId && a.state === 'ALIVE'),
      'the actor to be created',
    )
    const actorTable = await mesh.state.listActors()
    expect(actorTable).toHaveLength(1)
    const [actorInfo] = actorTable
    expect(actorInfo?.jobId).toBe(jobId)
    // Ray's Address/OwnerAddress: where it runs.
    expect(nodes.map((n) => n.nodeId)).toContain(actorInfo?.nodeId)

    const jobTable = await mesh.state.listJobs()
    expect(jobTable).toHaveLength(1)
    expect(jobTable[0]?.jobId).toBe(jobId)
  })
})

describe('test_advanced.py', () => {
  it('test_advanced.py::test_internal_free', async () => {
    class Sampler {
      sample() {
        return [1, 2, 3, 4, 5]
      }
      sampleBig() {
        // Ray's is 8 MB; 1 MiB is well past the inline limit, so it lives in a node's object store.
        return new Float64Array(128 * 1024)
      }
    }
    const sampler = keep(mesh.remote(Sampler).remote())

    // Free deletes from in-memory store.
    const objRef = sampler.sample.remote()
    await mesh.get(objRef)
    await mesh.free([objRef])
    expectFreed(await rejection(mesh.get(objRef, { timeout: 5000 })))

    // Free deletes big objects from plasma store.
    const bigId = sampler.sampleBig.remote()
    await mesh.get(bigId)
    await mesh.free([bigId])
    expectFreed(await rejection(mesh.get(bigId, { timeout: 5000 })))
  })

  it('test_advanced.py::test_internal_free_non_owned', async () => {
    const genData = mesh.remote(async function genData() {
      return (self as unknown as TaskSelf).shoal.put(new Float64Array(128 * 1024))
    })
    const doFree = mesh.remote(async function doFree(refList: ObjectRef[]) {
      const shoal = (self as unknown as TaskSelf).shoal
      await shoal.free(refList)
      for (const ref of refList) {
        const err = await shoal.get(ref, { timeout: 5000 }).then(
          () => undefined,
          (e: Error) => e,
        )
        if (err?.name !== 'ObjectFreedError') throw new Error(`expected ObjectFreedError, got ${err ? err.name : 'the value'}`)
      }
      return null
    })

    // Can free locally owned objects from remote worker.
    const ref1 = await mesh.put(new Float64Array(128 * 1024))
    const ref2 = await mesh.put(new Float64Array(128 * 1024))
    expect(await mesh.get(doFree.remote([ref1, ref2]), { timeout: 20_000 })).toBeNull()

    // Can free remotely owned objects from local worker.
    const ref3 = await mesh.get(genData.remote())
    const ref4 = await mesh.get(genData.remote())
    await mesh.free([ref3, ref4])
    for (const ref of [ref3, ref4]) expectFreed(await rejection(mesh.get(ref, { timeout: 5000 })))

    // Memory was really freed: no node holds a copy of any of them.
    const ids = [ref1, ref2, ref3, ref4].map((r) => r.id as string)
    await waitForCondition(
      async () => !(await mesh.state.listObjects()).some((o) => ids.includes(o.objectId) && o.locations.length > 0),
      'the freed objects to leave every node',
      5000,
    )
  })

  it('test_advanced.py::test_multiple_waits_and_gets', async () => {
    const f = mesh.remote(function f() {
      return 1
    })
    const g = mesh.remote(async function g(inputList: ObjectRef[]) {
      // The argument inputList should be a list containing one object ref.
      await (self as unknown as TaskSelf).shoal.wait([inputList[0] as ObjectRef])
      return null
    })
    const h = mesh.remote(async function h(inputList: ObjectRef[]) {
      await (self as unknown as TaskSelf).shoal.get(inputList[0] as ObjectRef)
      return null
    })
    // Make sure that multiple wait requests involving the same object ref all return.
    let x = f.remote()
    await mesh.get([g.remote([x]), g.remote([x])], { timeout: 10_000 })
    // Make sure that multiple get requests involving the same object ref all return.
    x = f.remote()
    await mesh.get([h.remote([x]), h.remote([x])], { timeout: 10_000 })
  })

  it('test_advanced.py::test_identical_function_names', async () => {
    // Define a bunch of remote functions and make sure that we don't accidentally call an older version.
    const numCalls = 20
    const calls = (f: { remote(): ObjectRef<number> }) => Array.from({ length: numCalls }, () => f.remote())
    const results1 = calls(
      mesh.remote(function f() {
        return 1
      }),
    )
    const results2 = calls(
      mesh.remote(function f() {
        return 2
      }),
    )
    const results3 = calls(
      mesh.remote(function f() {
        return 3
      }),
    )
    const results4 = calls(
      mesh.remote(function f() {
        return 4
      }),
    )
    const results5 = calls(
      mesh.remote(function f() {
        return 5
      }),
    )
    expect(await mesh.get(results1)).toEqual(Array(numCalls).fill(1))
    expect(await mesh.get(results2)).toEqual(Array(numCalls).fill(2))
    expect(await mesh.get(results3)).toEqual(Array(numCalls).fill(3))
    expect(await mesh.get(results4)).toEqual(Array(numCalls).fill(4))
    expect(await mesh.get(results5)).toEqual(Array(numCalls).fill(5))

    let g = mesh.remote(function g(): number {
      return 1
    })
    g = mesh.remote(function g(): number {
      return 2
    })
    g = mesh.remote(function g(): number {
      return 3
    })
    g = mesh.remote(function g(): number {
      return 4
    })
    g = mesh.remote(function g(): number {
      return 5
    })
    expect(await mesh.get(calls(g))).toEqual(Array(numCalls).fill(5))
  })

  it('test_advanced.py::test_illegal_api_calls', async () => {
    // Verify that we cannot call put on an ObjectRef.
    const x = await mesh.put(1)
    await expect(mesh.put(x)).rejects.toThrow(ValidationError)
    // Verify that we cannot call get on a regular value.
    await expect(mesh.get(3 as never)).rejects.toThrow(ValidationError)
  })
})

describe('test_advanced_2.py', () => {
  it('test_advanced_2.py::test_zero_cpus', async () => {
    // Ray starts a cluster with no CPU at all; here every CPU is taken first, so only 0-CPU work can run.
    const Hog = mesh.remote(
      class CpuHog {
        ping() {
          return 1
        }
      },
    )
    const hogs = cluster().nodes.map((n) =>
      keep(Hog.options({ numCpus: 2, schedulingStrategy: { nodeId: n.nodeId, soft: false } }).remote()),
    )
    await mesh.get(
      hogs.map((h) => h.ping.remote()),
      { timeout: 10_000 },
    )

    // We should be able to execute a task that requires 0 CPU resources.
    const f = mesh
      .remote(function zeroCpuTask() {
        return 1
      })
      .options({ numCpus: 0 })
    expect(await mesh.get(f.remote(), { timeout: 10_000 })).toBe(1)

    // We should be able to create an actor that requires 0 CPU resources.
    const a = keep(
      mesh
        .remote(
          class ZeroCpuActor {
            method() {
              return null
            }
          },
        )
        .options({ numCpus: 0 })
        .remote(),
    )
    expect(await mesh.get(a.method.remote(), { timeout: 10_000 })).toBeNull()
  })
})

describe('test_advanced_6.py', () => {
  it('test_advanced_6.py::test_blocking_tasks', async () => {
    const g = mesh.remote(async function blockingG(i: number) {
      // Each instance of g submits and blocks on the result of another remote task.
      const shoal = (self as unknown as TaskSelf).shoal
      const f = shoal.remote(function f(i: number, j: number) {
        return [i, j]
      })
      return shoal.get([0, 1].map((j) => f.remote(i, j)))
    })
    const h = mesh.remote(async function blockingH(i: number) {
      // Each instance of h submits and blocks on the result of another remote task using wait.
      const shoal = (self as unknown as TaskSelf).shoal
      const f = shoal.remote(function f(i: number, j: number) {
        return [i, j]
      })
      const objectRefs = [0, 1].map((j) => f.remote(i, j))
      const { ready } = await shoal.wait(objectRefs, { numReturns: objectRefs.length })
      return ready.length
    })
    expect(
      await mesh.get(
        [0, 1, 2, 3].map((i) => h.remote(i)),
        { timeout: 20_000 },
      ),
    ).toEqual([2, 2, 2, 2])
    expect(
      await mesh.get(
        [0, 1, 2, 3].map((i) => g.remote(i)),
        { timeout: 20_000 },
      ),
    ).toEqual(
      [0, 1, 2, 3].map((i) => [
        [i, 0],
        [i, 1],
      ]),
    )

    const sleep = mesh.remote(async function blockingSleep() {
      // Each instance of sleep submits and blocks on the result of another remote task, which takes some time.
      const shoal = (self as unknown as TaskSelf).shoal
      const sleepTask = shoal.remote(async function _sleep(i: number) {
        await new Promise((r) => setTimeout(r, 10))
        return i
      })
      return shoal.get(Array.from({ length: 10 }, (_, i) => sleepTask.remote(i)))
    })
    expect(await mesh.get(sleep.remote(), { timeout: 20_000 })).toEqual(Array.from({ length: 10 }, (_, i) => i))
  })
})
