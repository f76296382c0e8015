import { beforeAll, describe, expect, it } from 'vitest'
import { type ActorHandle, GetTimeoutError, type Mesh, type ObjectRef, TaskCancelledError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { rejection, type SignalActor, signalActor, useJobPerTest, waitForCondition } from './helpers.ts'

// Ported from Ray's python/ray/tests/test_cancel.py. Ray's fixtures start 1 node with 1–4 CPUs; here 2 nodes × 2 CPUs.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})

// Each test runs in a job of its own, ended after it: ending a job cancels its tasks and kills its actors, so a task a
// test could not cancel (an infinite loop, a waiter never released) does not hold CPUs in the next test.
const newJob = useJobPerTest(cluster, { waitForFreeCpus: () => mesh })

/**
 * Ray's `valid_exceptions(use_force)`: a plain cancel surfaces as TaskCancelledError (Ray's RayTaskError(TaskCancelledError)
 * is one); a forced one may also surface as the task's error or as its crashed worker.
 */
function expectCancelled(err: Error | undefined, force: boolean): void {
  if (force) expect(['TaskError', 'TaskCancelledError', 'WorkerCrashedError']).toContain(err?.name)
  else expect(err).toBeInstanceOf(TaskCancelledError)
}

/** Ray's `random` with a fixed seed, so a failure can be replayed. */
function seededRandom(seed: number): () => number {
  let s = seed
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  }
}

/** Ray's `wait_for(t)`: `ray.get(t[0])` inside a task (the ref comes nested in a list, so it is not a dependency). */
async function waitFor(t: ObjectRef[]) {
  const shoal = (self as unknown as { shoal: Mesh }).shoal
  return shoal.get(t[0] as ObjectRef)
}

const T = 10_000 // every get is bounded: a hang fails the test instead of the file

describe('test_cancel.py', () => {
  for (const force of [true, false]) {
    it(`test_cancel.py::test_cancel_chain — use_force=${force}`, async () => {
      const m = await newJob()
      const signaler = signalActor(m)
      const wait = m.remote(waitFor)

      let obj1 = wait.remote([signaler.wait.remote()])
      let obj2 = wait.remote([obj1])
      let obj3 = wait.remote([obj2])
      let obj4 = wait.remote([obj3])

      expect((await m.wait([obj1], { timeout: 100 })).ready).toHaveLength(0)
      await m.cancel(obj1, { force })
      for (const ob of [obj1, obj2, obj3, obj4]) expectCancelled(await rejection(m.get(ob, { timeout: T })), force)

      const signaler2 = signalActor(m)
      obj1 = wait.remote([signaler2.wait.remote()])
      obj2 = wait.remote([obj1])
      obj3 = wait.remote([obj2])
      obj4 = wait.remote([obj3])

      expect((await m.wait([obj3], { timeout: 100 })).ready).toHaveLength(0)
      await m.cancel(obj3, { force })
      for (const ob of [obj3, obj4]) expectCancelled(await rejection(m.get(ob, { timeout: T })), force)

      expect(await rejection(m.get(obj1, { timeout: 100 }))).toBeInstanceOf(GetTimeoutError)
      expect(await rejection(m.get(obj2, { timeout: 100 }))).toBeInstanceOf(GetTimeoutError)

      signaler2.send.remote()
      await m.get(obj1, { timeout: T })
    })
  }

  for (const force of [true, false]) {
    it(`test_cancel.py::test_cancel_multiple_dependents — use_force=${force}`, async () => {
      const m = await newJob()
      const signaler = signalActor(m)
      const wait = m.remote(waitFor)

      const head = wait.remote([signaler.wait.remote()])
      const deps = Array.from({ length: 3 }, () => wait.remote([head]))

      expect((await m.wait([head], { timeout: 100 })).ready).toHaveLength(0)
      await m.cancel(head, { force })
      for (const d of deps) expectCancelled(await rejection(m.get(d, { timeout: T })), force)

      const head2 = wait.remote([signaler.wait.remote()])
      const deps2 = Array.from({ length: 3 }, () => wait.remote([head]))
      for (const d of deps2) await m.cancel(d, { force })
      for (const d of deps2) expectCancelled(await rejection(m.get(d, { timeout: T })), force)

      signaler.send.remote()
      await m.get(head2, { timeout: T })
    })
  }

  for (const force of [true, false]) {
    it(`test_cancel.py::test_comprehensive — use_force=${force}`, async () => {
      const m = await newJob()
      const signaler = signalActor(m)
      const wait = m.remote(async function waitFor(t: ObjectRef[]) {
        await (self as unknown as { shoal: Mesh }).shoal.get(t[0] as ObjectRef)
        return 'Result'
      })
      const combine = m.remote(function combine(a: unknown, b: unknown) {
        return String(a) + String(b)
      })

      const a = wait.remote([signaler.wait.remote()])
      const b = wait.remote([signaler.wait.remote()])
      const combo = combine.remote(a, b)
      const a2 = wait.remote([a])

      expect((await m.wait([a, b, a2, combo], { timeout: 300 })).ready).toHaveLength(0)

      await m.cancel(a, { force })
      expectCancelled(await rejection(m.get(a, { timeout: T })), force)
      expectCancelled(await rejection(m.get(a2, { timeout: T })), force)

      signaler.send.remote()
      expectCancelled(await rejection(m.get(combo, { timeout: T })), force)
    })
  }

  // Ray runs this one with use_force=True only ("with use_force==False is flaky"), on 1 CPU with 100 tasks; 20 here.
  it('test_cancel.py::test_stress — use_force=true', async () => {
    const force = true
    const m = await newJob()
    const random = seededRandom(7)
    const infiniteSleep = m.remote(async function infiniteSleep(y: boolean) {
      if (y) {
        while (true) await new Promise((r) => setTimeout(r, 100))
      }
    })

    const first = infiniteSleep.remote(true)
    const sleepOrNo = Array.from({ length: 20 }, () => random() < 0.5)
    const tasks = sleepOrNo.map((y) => infiniteSleep.remote(y))
    const cancelled = new Set<ObjectRef>()

    // Randomly cancel queued tasks (infinitely sleeping or not).
    for (const t of tasks) {
      if (random() > 0.5) {
        await m.cancel(t, { force })
        cancelled.add(t)
      }
    }
    await m.cancel(first, { force })
    cancelled.add(first)

    for (const done of cancelled) expectCancelled(await rejection(m.get(done, { timeout: T })), force)

    // Cancel every infinitely sleeping task (queued or not).
    for (const [i, t] of tasks.entries()) {
      if (sleepOrNo[i]) {
        await m.cancel(t, { force })
        cancelled.add(t)
      }
    }
    for (const t of tasks) {
      if (cancelled.has(t)) expectCancelled(await rejection(m.get(t, { timeout: T })), force)
      else await m.get(t, { timeout: T })
    }
  })

  // Ray: 100 fast tasks cancelled as they go, then 5000 tasks on one signal with 5% cancelled; 20 and 200 here.
  for (const force of [true, false]) {
    it(`test_cancel.py::test_fast — use_force=${force}`, async () => {
      const m = await newJob()
      const random = seededRandom(force ? 11 : 12)
      const fast = m.remote(function fast(y: string) {
        return y
      })
      const signaler = signalActor(m)
      const ids: ObjectRef[] = []
      for (let i = 0; i < 20; i++) {
        const x = fast.remote('a')
        // Pacing, as Ray's 0.1 s: the cancels land while the tasks are queued, running or done.
        await new Promise((r) => setTimeout(r, 20))
        await m.cancel(x, { force })
        ids.push(x)
      }

      const wait = m.remote(function waitFor(y: unknown) {
        return y
      })
      const sig = signaler.wait.remote()
      for (let i = 0; i < 200; i++) ids.push(wait.remote(sig))

      for (let idx = 20; idx < 220; idx++) if (random() > 0.95) await m.cancel(ids[idx] as ObjectRef, { force })
      signaler.send.remote()
      // As Ray's: a get may succeed (the cancel came too late); one that fails must fail as a cancel does.
      for (const ref of ids) await m.get(ref, { timeout: T }).catch((err: Error) => expectCancelled(err, force))
    })
  }

  // Ray places the two tasks on two worker nodes (custom resources) so they cannot share a worker process.
  for (const force of [true, false]) {
    it(`test_cancel.py::test_remote_cancel — use_force=${force}`, async () => {
      const m = await newJob()
      const [node0, node1] = cluster().nodes.map((n) => n.nodeId)
      const signaler = signalActor(m)
      const remoteWait = m.remote(function remoteWait(sg: ObjectRef[], nodeId: string) {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        const waitFor = shoal.remote(async function waitFor(y: ObjectRef[]) {
          return (self as unknown as { shoal: Mesh }).shoal.get(y[0] as ObjectRef)
        })
        return [waitFor.options({ schedulingStrategy: { nodeId, soft: false } }).remote([sg[0] as ObjectRef])]
      })

      const sig = signaler.wait.remote()
      const outer = remoteWait.options({ schedulingStrategy: { nodeId: node0 as string, soft: false } }).remote([sig], node1 as string)
      const [inner] = (await m.get(outer, { timeout: T })) as ObjectRef[]
      if (!inner) throw new Error('remoteWait returned no ref')

      expect(await rejection(m.get(inner, { timeout: 300 }))).toBeInstanceOf(GetTimeoutError)
      await m.cancel(inner, { force })
      expectCancelled(await rejection(m.get(inner, { timeout: T })), force)
    })
  }

  // Ray: 2 CPUs, `outer` (1 CPU) starts `inner` (1 CPU); cancelling outer must cancel inner too (recursive is the
  // default), which frees both CPUs for a 2-CPU task. Here all three are pinned to node 0 (2 CPUs).
  for (const force of [true, false]) {
    it(`test_cancel.py::test_recursive_cancel — use_force=${force}`, async () => {
      const m = await newJob()
      const nodeId = cluster().nodes[0]?.nodeId as string
      const pinned = { schedulingStrategy: { nodeId, soft: false } }
      const outer = m
        .remote(async function outer(signal: ActorHandle<SignalActor>, nodeId: string) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          const inner = shoal.remote(async function inner(signal: ActorHandle<SignalActor>) {
            signal.send.remote()
            while (true) await new Promise((r) => setTimeout(r, 100))
          })
          inner.options({ numCpus: 1, schedulingStrategy: { nodeId, soft: false } }).remote(signal)
          while (true) await new Promise((r) => setTimeout(r, 100))
        })
        .options({ numCpus: 1, ...pinned })
      const manyResources = m
        .remote(function manyResources() {
          return true
        })
        .options({ numCpus: 2, ...pinned })

      const signal = signalActor(m)
      const outerFut = outer.remote(signal, nodeId)
      // Wait until both inner and outer are running.
      await m.get(signal.wait.remote(), { timeout: T })
      const manyFut = manyResources.remote()
      expect(await rejection(m.get(manyFut, { timeout: 300 }))).toBeInstanceOf(GetTimeoutError)
      await m.cancel(outerFut, { force })
      expectCancelled(await rejection(m.get(outerFut, { timeout: T })), force)

      expect(await m.get(manyFut, { timeout: T })).toBe(true)
    })
  }

  it('test_cancel.py::test_recursive_cancel_actor_task', async () => {
    const m = await newJob()
    const Semaphore = m
      .remote(
        class Semaphore {
          async wait() {
            await new Promise((r) => setTimeout(r, 600_000))
          }
        },
      )
      .options({ numCpus: 0 })
    const Actor2 = m
      .remote(
        class Actor2 {
          obj: ObjectRef
          constructor(obj: [ObjectRef]) {
            this.obj = obj[0]
          }
          cancel() {
            return (self as unknown as { shoal: Mesh }).shoal.cancel(this.obj)
          }
        },
      )
      .options({ numCpus: 0 })
    const task = m.remote(async function task(sema: ActorHandle<{ wait(): Promise<void> }>) {
      return (self as unknown as { shoal: Mesh }).shoal.get(sema.wait.remote())
    })
    const rows = (name: string) =>
      mesh.state.listTasks({
        filters: [
          ['funcOrClassName', '=', name],
          ['jobId', '=', m.jobId],
        ],
      })

    const sema = Semaphore.remote()
    const t = task.remote(sema)
    await waitForCondition(async () => (await rows('Semaphore.wait'))[0]?.state === 'RUNNING', 'Semaphore.wait to run')

    // Make sure this will not crash (Ray's issue #31398): a cancel sent from inside an actor.
    const a2 = Actor2.remote([t])
    a2.cancel.remote()

    expect(await rejection(m.get(t, { timeout: T }))).toBeInstanceOf(TaskCancelledError)

    expect(await rows('Semaphore.wait')).toHaveLength(1)
    expect(await rows('task')).toHaveLength(1)
    await waitForCondition(async () => {
      const [waitState] = await rows('Semaphore.wait')
      const [taskState] = await rows('task')
      // Ray asserts FINISHED for the cancelled task (its worker turns the interrupt into the task's end); what matters
      // is that it ended while the actor call it waited on runs on: a cancel never reaches into an actor's calls.
      return ['FINISHED', 'FAILED'].includes(String(taskState?.state)) && waitState?.state === 'RUNNING'
    }, 'the task to end and Semaphore.wait to keep running')
  })

  for (const force of [true, false]) {
    it(`test_cancel.py::test_cancel_with_dependency — use_force=${force}`, async () => {
      const m = await newJob()
      const waitForeverTask = m.remote(async function waitForeverTask() {
        while (true) await new Promise((r) => setTimeout(r, 1000))
      })
      const square = m.remote(function square(x: number) {
        return x * x
      })

      const waitForeverObj = waitForeverTask.remote()
      const waitForeverAsDep = square.remote(waitForeverObj as ObjectRef<number>)
      await m.cancel(waitForeverAsDep, { force })
      expectCancelled(await rejection(m.get(waitForeverAsDep, { timeout: T })), force)
    })
  }
})
