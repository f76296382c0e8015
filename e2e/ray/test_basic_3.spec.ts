import { beforeAll, describe, expect, it } from 'vitest'
import { ActorDiedError, GetTimeoutError, type Mesh } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { type RuntimeContext, rejection, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_basic_3.py and test_basic_4.py (two small files, one spec). test_actor_killing is
// in today's test_basic_4.py; test_actor_scheduling, test_job_id_consistency and test_fair_queueing in earlier ones.
type TaskSelf = { shoal: Mesh; shoalContext: RuntimeContext; close(): void }

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
const keep = useActorCleanup(() => mesh)

const availableCpus = async () =>
  (await mesh.state.listNodes()).filter((n) => n.state === 'ALIVE').reduce((s, n) => s + (n.availableResources.CPU ?? 0), 0)

describe('test_basic_3.py', () => {
  it('test_basic_3.py::test_many_fractional_resources', async () => {
    // Ray also draws random GPU and custom resources; nodes here have CPUs only.
    const originalAvailable = await availableCpus()
    const checkAssignedResources = mesh.remote(async function checkAssignedResources(block: boolean, expected: { CPU: number }) {
      const shoal = (self as unknown as TaskSelf).shoal
      // Ray: ray.get_runtime_context().get_assigned_resources()
      const assigned = (self as unknown as TaskSelf).shoalContext.assignedResources
      // Have some tasks block to release their occupied resources to further stress the scheduler.
      if (block)
        await shoal.get(
          shoal
            .remote(function g() {
              return 1
            })
            .remote(),
        )
      if (Math.abs((assigned.CPU ?? 0) - expected.CPU) > 1e-4)
        throw new Error(`Mismatched resources. Expected: ${JSON.stringify(expected)} Assigned: ${JSON.stringify(assigned)}`)
      return null
    })
    const randResourceVal = () => Math.floor(Math.random() * 10000) / 10000
    // Submit many tasks with random resource requirements and assert that they are assigned the correct resources.
    const resultIds = []
    for (let i = 0; i < 10; i++) {
      const resources = { CPU: randResourceVal() }
      for (const block of [false, true]) resultIds.push(checkAssignedResources.options({ numCpus: resources.CPU }).remote(block, resources))
    }
    await mesh.get(resultIds, { timeout: 30_000 })
    // Check that the available resources are reset to their original values (exactly, as Ray's fixed point does).
    await waitForCondition(async () => (await availableCpus()) === originalAvailable, 'the available CPUs to be restored', 5000)
  })
})

describe('test_basic_4.py', () => {
  it('test_basic_4.py::test_actor_killing', async () => {
    // Ray runs this on a 1-CPU cluster: the second actor fits only once the first one's CPU is free. Here an actor
    // takes all of one node's CPUs, pinned there.
    const nodeId = cluster().nodes[0]?.nodeId as string
    const Actor = mesh.remote(
      class KillMe {
        foo() {
          return null
        }
      },
    )
    const Pinned = Actor.options({ numCpus: 2, schedulingStrategy: { nodeId, soft: false } })
    let worker1 = keep(Pinned.remote())
    await mesh.kill(worker1)
    let worker2 = keep(Pinned.remote())
    expect(await mesh.get(worker2.foo.remote(), { timeout: 10_000 })).toBeNull()
    await mesh.kill(worker2)

    worker1 = keep(Pinned.options({ maxRestarts: 1, maxTaskRetries: -1 }).remote())
    await mesh.kill(worker1, { noRestart: false })
    expect(await mesh.get(worker1.foo.remote(), { timeout: 10_000 })).toBeNull()

    await mesh.kill(worker1, { noRestart: false })
    worker2 = keep(Pinned.remote())
    expect(await mesh.get(worker2.foo.remote(), { timeout: 10_000 })).toBeNull()
  })

  it('test_basic_4.py::test_actor_scheduling', async () => {
    // Ray's ray.actor.exit_actor(): the actor's worker ends itself (self.close() in a Web Worker).
    class A {
      runFail() {
        ;(self as unknown as TaskSelf).close()
      }
      get() {
        return 1
      }
    }
    const a = keep(mesh.remote(A).remote())
    a.runFail.remote()
    const err = await rejection(mesh.get([a.get.remote()], { timeout: 10_000 }))
    expect(err).not.toBeInstanceOf(GetTimeoutError)
    expect(err).toBeInstanceOf(ActorDiedError)
  })

  it('test_basic_4.py::test_job_id_consistency', async () => {
    // Ray runs verify() in the task's thread and again in a new thread; a JS worker has one thread.
    const verifyJobId = mesh.remote(async function verifyJobId(jobId: string) {
      const shoal = (self as unknown as TaskSelf).shoal
      const ctx = (self as unknown as TaskSelf).shoalContext
      // Ids carry their job as Ray's do: a task id ends with it, an object id is a task id plus an index.
      const jobOfObject = (id: string) => id.slice(40, 48)
      const check = (what: string, got: string) => {
        if (got !== jobId) throw new Error(`${what} has job ${got}, expected ${jobId}`)
      }
      check('the current task', ctx.jobId)
      check('the current task id', ctx.taskId.slice(40, 48))
      const obj1 = shoal
        .remote(function foo() {
          return 'bar'
        })
        .remote()
      check('a submitted task’s object', jobOfObject(obj1.id))
      const obj2 = await shoal.put(1)
      check('a put object', jobOfObject(obj2.id))
      const a = shoal
        .remote(
          class Foo {
            ping() {
              return 'pong'
            }
          },
        )
        .options({ numCpus: 0 })
        .remote()
      check('an actor', a.actorId.slice(-8))
      const obj3 = a.ping.remote()
      check('an actor task’s object', jobOfObject(obj3.id))
      await shoal.get([obj1, obj3])
      await shoal.kill(a)
      return null
    })
    expect(await mesh.get(verifyJobId.remote(mesh.jobId), { timeout: 10_000 })).toBeNull()
  })

  it('test_basic_4.py::test_fair_queueing', async () => {
    // Ray: 1000 chains f → g → h on one CPU, which never finish without fair queueing; 40 here, on the file's
    // 4 CPUs.
    const f = mesh.remote(async function fairF() {
      const shoal = (self as unknown as TaskSelf).shoal
      const g = shoal.remote(async function fairG() {
        const sh = (self as unknown as TaskSelf).shoal
        const h = sh.remote(function fairH() {
          return 0
        })
        return sh.get(h.remote())
      })
      return shoal.get(g.remote())
    })
    const { ready } = await mesh.wait(
      Array.from({ length: 40 }, () => f.remote()),
      { timeout: 30_000, numReturns: 40 },
    )
    expect(ready).toHaveLength(40)
  })
})
