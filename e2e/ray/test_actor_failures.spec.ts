import { beforeAll, describe, expect, it } from 'vitest'
import { ActorDiedError, type ActorHandle, type Mesh, type ObjectRef } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { killWorker, type RuntimeContext, SignalActor, signalActor, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_actor_failures.py, and (merged here, it is one small test) from
// python/ray/tests/test_actor_lifetime.py. 2 nodes × 2 CPUs; the node-failure cases add a node or come last.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  // Ray's test fixtures (conftest.py) start every driver in namespace 'default_test_namespace'.
  mesh = await cluster().connect({ namespace: 'default_test_namespace' })
})
useActorCleanup(() => mesh, { everyActor: true })

/** Extra helper: an actor's row in the state API. */
async function actorRow(actorId: string) {
  return (await mesh.state.listActors({ filters: [['actorId', '=', actorId]] }))[0]
}

describe('test_actor_failures.py', () => {
  it('test_actor_failures.py::test_actor_restart', async () => {
    class RestartableActor {
      value = 0
      increase(exit = false) {
        if (exit) {
          ;(self as unknown as { close(): void }).close()
          return new Promise<number>(() => {})
        }
        this.value += 1
        return this.value
      }
    }
    const R = mesh.remote(RestartableActor).options({ maxRestarts: 1 })
    const actor = R.remote()
    const isActorDied = (e: unknown) => e instanceof ActorDiedError
    // Submit some tasks and kill on a task midway through.
    const results: ObjectRef<number>[] = Array.from({ length: 20 }, (_, i) => actor.increase.remote(i === 10))
    // All tasks were executed in order before the actor's death.
    let i = 1
    while (results.length) {
      try {
        const r = await mesh.get(results[0] as ObjectRef<number>, { timeout: 10_000 })
        if (r !== i) break // the actor restarted at this task with no failed tasks in between
        results.shift()
        i += 1
      } catch (e) {
        if (isActorDied(e)) break
        throw e
      }
    }
    // Skip any tasks that errored.
    while (results.length) {
      try {
        await mesh.get(results[0] as ObjectRef<number>, { timeout: 10_000 })
        break
      } catch (e) {
        if (!isActorDied(e)) throw e
        results.shift()
      }
    }
    // Check all tasks that executed after the restart.
    if (results.length) {
      i = 1
      let r = 0
      while (results.length) {
        r = await mesh.get(results.shift() as ObjectRef<number>, { timeout: 10_000 })
        expect(r).toBe(i)
        i += 1
      }
      // The actor can still be called.
      expect(await mesh.get(actor.increase.remote(), { timeout: 10_000 })).toBe(r + 1)
    } else {
      // Wait for the actor to restart.
      await waitForCondition(
        () =>
          mesh.get(actor.increase.remote(), { timeout: 5000 }).then(
            () => true,
            () => false,
          ),
        'the actor to restart',
      )
    }

    // The actor has restarted. Kill the actor process one more time.
    actor.increase.remote(true)
    // The actor has exceeded max restarts. All tasks fail.
    for (let k = 0; k < 10; k++) {
      await expect(mesh.get(actor.increase.remote(), { timeout: 10_000 })).rejects.toBeInstanceOf(ActorDiedError)
    }
  })

  it('test_actor_failures.py::test_actor_restart_with_retry', async () => {
    class RestartableActor {
      async sleepAndEcho(value: number, delay = 0) {
        await new Promise((r) => setTimeout(r, delay))
        return value
      }
      getPid() {
        return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
      }
    }
    const actor = mesh.remote(RestartableActor).options({ maxRestarts: 1, maxTaskRetries: -1 }).remote()
    await mesh.get(actor.getPid.remote(), { timeout: 10_000 })
    let results = Array.from({ length: 20 }, (_, i) => actor.sleepAndEcho.remote(i, 20))
    // Kill the actor process while the above tasks are still being executed.
    await killWorker(cluster(), { actorId: actor.actorId })
    // All tasks are executed successfully.
    expect(await mesh.get(results, { timeout: 20_000 })).toEqual(Array.from({ length: 20 }, (_, i) => i))

    // Kill the actor process one more time.
    results = Array.from({ length: 20 }, (_, i) => actor.sleepAndEcho.remote(i))
    await mesh.get(actor.getPid.remote(), { timeout: 10_000 })
    await killWorker(cluster(), { actorId: actor.actorId })
    // The actor has exceeded max restarts: this task fails.
    await expect(mesh.get(actor.sleepAndEcho.remote(0), { timeout: 10_000 })).rejects.toBeInstanceOf(ActorDiedError)
  })

  it('test_actor_failures.py::test_named_actor_max_task_retries', async () => {
    // Differs from Ray on purpose: async actors default to maxConcurrency 1 in Shoal (README); Ray's default is 1000.
    const Counter = mesh
      .remote(
        class Counter {
          count = 0
          waiters: (() => void)[] = []
          increment() {
            this.count += 1
            for (const w of this.waiters.splice(0)) w()
          }
          async waitForCount(count: number) {
            while (this.count < count) await new Promise<void>((r) => this.waiters.push(r))
          }
        },
      )
      .options({ numCpus: 0, maxConcurrency: 1000 })
    type CounterH = ActorHandle<{ increment(): void }>
    class ActorToKill {
      constructor(counter: CounterH) {
        counter.increment.remote()
      }
      async run(counter: CounterH, signal: ActorHandle<SignalActor>) {
        counter.increment.remote()
        await (self as unknown as { shoal: Mesh }).shoal.get(signal.wait.remote())
      }
    }
    const CallingActor = mesh.remote(
      class CallingActor {
        actor: Promise<ActorHandle<ActorToKill>>
        constructor() {
          this.actor = (self as unknown as { shoal: Mesh }).shoal.getActor<ActorToKill>('a')
          this.actor.catch(() => {})
        }
        async callOther(counter: CounterH, signal: ActorHandle<SignalActor>) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          return shoal.get((await this.actor).run.remote(counter, signal))
        }
      },
    )
    const initCounter = Counter.remote()
    const runCounter = Counter.remote()
    const signal = signalActor(mesh)

    // Start the two actors, wait for ActorToKill's constructor to run.
    const a = mesh.remote(ActorToKill).options({ name: 'a', maxRestarts: -1, maxTaskRetries: -1 }).remote(initCounter)
    const c = CallingActor.remote()
    await mesh.get(initCounter.waitForCount.remote(1), { timeout: 10_000 })

    // The CallingActor calls ActorToKill; once that call runs, kill ActorToKill (letting it restart). Its constructor
    // runs a second time and the run method begins a second time.
    const ref = c.callOther.remote(runCounter, signal)
    await mesh.get(runCounter.waitForCount.remote(1), { timeout: 10_000 })
    await mesh.kill(a, { noRestart: false })
    await mesh.get(initCounter.waitForCount.remote(2), { timeout: 10_000 })
    await mesh.get(runCounter.waitForCount.remote(2), { timeout: 10_000 })

    // Signal the run method to finish: the CallingActor returns.
    signal.send.remote()
    await mesh.get(ref, { timeout: 10_000 })
  })

  it('test_actor_failures.py::test_caller_actor_restart', async () => {
    class Actor {
      value = 0
      increase() {
        this.value += 1
        return this.value
      }
    }
    class RestartableActor {
      actor: ActorHandle<Actor>
      constructor(actor: ActorHandle<Actor>) {
        this.actor = actor
      }
      increase() {
        return (self as unknown as { shoal: Mesh }).shoal.get(this.actor.increase.remote())
      }
      getPid() {
        return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
      }
    }
    const remoteActor = mesh.remote(Actor).options({ maxRestarts: 1 }).remote()
    const actor = mesh.remote(RestartableActor).options({ maxRestarts: 1, maxTaskRetries: -1 }).remote(remoteActor)
    // Call increase 3 times.
    for (let i = 0; i < 3; i++) await mesh.get(actor.increase.remote(), { timeout: 10_000 })

    // Kill the caller actor.
    await mesh.get(actor.getPid.remote(), { timeout: 10_000 })
    await killWorker(cluster(), { actorId: actor.actorId })

    // It can still be called, and its calls reach the same receiving actor.
    expect(await mesh.get(actor.increase.remote(), { timeout: 20_000 })).toBe(4)
  })

  it('test_actor_failures.py::test_caller_task_reconstruction', async () => {
    class Actor {
      value = 0
      increase() {
        this.value += 1
        return this.value
      }
    }
    const RetryableTask = mesh
      .remote(async function RetryableTask(actor: ActorHandle<Actor>) {
        const value = await (self as unknown as { shoal: Mesh }).shoal.get(actor.increase.remote())
        if (value > 2) return value
        ;(self as unknown as { close(): void }).close()
        return new Promise<number>(() => {})
      })
      .options({ maxRetries: 5 })
    const remoteActor = mesh.remote(Actor).options({ maxRestarts: 1 }).remote()
    expect(await mesh.get(RetryableTask.remote(remoteActor), { timeout: 20_000 })).toBe(3)
  })

  it('test_actor_failures.py::test_recreate_child_actor', async () => {
    // Differs from Ray on purpose: `ready` is reserved on Shoal handles (handle.ready()), so the methods are renamed.
    const Parent = mesh.remote(
      class Parent {
        child: ActorHandle<{ isReady(): void }>
        constructor() {
          this.child = (self as unknown as { shoal: Mesh }).shoal
            .remote(
              class Actor {
                isReady() {}
              },
            )
            .remote()
        }
        isReady() {
          return (self as unknown as { shoal: Mesh }).shoal.get(this.child.isReady.remote())
        }
        pid() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
      },
    )
    const p = Parent.options({ maxRestarts: -1, maxTaskRetries: -1 }).remote()
    await mesh.get(p.pid.remote(), { timeout: 10_000 })
    await killWorker(cluster(), { actorId: p.actorId })
    await mesh.get(p.isReady.remote(), { timeout: 20_000 })
  })

  it('test_actor_failures.py::test_utf8_actor_exception', async () => {
    const FlakyActor = mesh.remote(
      class FlakyActor {
        constructor() {
          throw new Error('你好呀，祝你有个好心情！')
        }
        ping() {
          return true
        }
      },
    )
    const actor = FlakyActor.remote()
    const err = await mesh.get(actor.ping.remote(), { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toContain('你好呀，祝你有个好心情！')
  })

  it('test_actor_failures.py::test_failure_during_dependency_resolution', async () => {
    const Actor = mesh.remote(
      class Actor {
        async dep() {
          await new Promise(() => {})
        }
        foo(x: unknown) {
          return x
        }
      },
    )
    const a = Actor.remote()
    // Check that the actor is alive.
    expect(await mesh.get(a.foo.remote(1), { timeout: 10_000 })).toBe(1)

    await mesh.kill(a, { noRestart: false })
    const dep = a.dep.remote()
    const ref = a.foo.remote(dep)
    await expect(mesh.get(ref, { timeout: 10_000 })).rejects.toBeInstanceOf(ActorDiedError)
  })

  it('test_actor_failures.py::test_actor_restart_and_actor_received_task', async () => {
    class RestartableActor {
      counter = 0
      async increment(signal1: ActorHandle<SignalActor>, signal2: ActorHandle<SignalActor>) {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        await shoal.get(signal1.send.remote())
        await shoal.get(signal2.wait.remote())
        this.counter += 1
        return this.counter
      }
      getPid() {
        return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
      }
    }
    const actor = mesh.remote(RestartableActor).options({ maxRestarts: 1, maxTaskRetries: 1 }).remote()
    await mesh.get(actor.getPid.remote(), { timeout: 10_000 })

    const signal1 = signalActor(mesh)
    const signal2 = signalActor(mesh)
    const ref = actor.increment.remote(signal1, signal2)
    // Wait for the actor to be running `increment`, then kill its process.
    await mesh.get(signal1.wait.remote(), { timeout: 10_000 })
    await killWorker(cluster(), { actorId: actor.actorId })

    await mesh.get(signal2.send.remote(), { timeout: 10_000 })
    // The call is resubmitted to the restarted actor and succeeds there.
    expect(await mesh.get(ref, { timeout: 20_000 })).toBe(1)
  })

  it('test_actor_failures.py::test_actor_restart_and_partial_task_not_completed', async () => {
    class RestartableActor {
      echo(value: number) {
        return value
      }
      async waitAndEcho(value: number, signal1: ActorHandle<SignalActor>, signal2: ActorHandle<SignalActor>) {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        await shoal.get(signal1.send.remote())
        await shoal.get(signal2.wait.remote())
        return value
      }
      getPid() {
        return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
      }
    }
    const actor = mesh.remote(RestartableActor).options({ maxRestarts: 1, maxTaskRetries: 1 }).remote()
    await mesh.get(actor.getPid.remote(), { timeout: 10_000 })
    expect(
      await mesh.get(
        [0, 1, 2].map((i) => actor.echo.remote(i)),
        { timeout: 10_000 },
      ),
    ).toEqual([0, 1, 2])

    const signal1 = signalActor(mesh)
    const signal2 = signalActor(mesh)
    const refs = [actor.waitAndEcho.remote(3, signal1, signal2)]
    await mesh.get(signal1.wait.remote(), { timeout: 10_000 })
    refs.push(actor.echo.remote(4), actor.echo.remote(5))

    await killWorker(cluster(), { actorId: actor.actorId })
    await mesh.get(signal2.send.remote(), { timeout: 10_000 })
    expect(await mesh.get(refs, { timeout: 20_000 })).toEqual([3, 4, 5])
  })

  it('test_actor_failures.py::test_actor_failure_per_type', async () => {
    const Actor = mesh.remote(
      class Actor {
        a: unknown
        checkAlive() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
        createActor() {
          this.a = (self as unknown as { shoal: Mesh }).shoal
            .remote(
              class Actor {
                checkAlive() {
                  return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
                }
              },
            )
            .remote()
          return this.a
        }
      },
    )

    // An actor killed by kill().
    let a = Actor.remote()
    await mesh.kill(a)
    let err = await mesh.get(a.checkAlive.remote(), { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/kill/)
    expect(err.actorId).toBe(a.actorId)

    // An actor killed because its worker died.
    a = Actor.remote()
    await mesh.get(a.checkAlive.remote(), { timeout: 10_000 })
    await killWorker(cluster(), { actorId: a.actorId })
    err = await mesh.get(a.checkAlive.remote(), { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/worker/)
    expect(err.actorId).toBe(a.actorId)

    // An actor killed because its owner died.
    const owner = Actor.remote()
    const child = (await mesh.get(owner.createActor.remote(), { timeout: 10_000 })) as ActorHandle<{ checkAlive(): string }>
    await mesh.kill(owner)
    err = await mesh.get(child.checkAlive.remote(), { timeout: 10_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/owner/)
    expect(err.actorId).toBe(child.actorId)

    // An actor killed because its node died.
    const nodeToKill = await cluster().addNode(1)
    a = Actor.options({ schedulingStrategy: { nodeId: nodeToKill.nodeId, soft: false } }).remote()
    await mesh.get(a.checkAlive.remote(), { timeout: 10_000 })
    await nodeToKill.close()
    err = await mesh.get(a.checkAlive.remote(), { timeout: 20_000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/node/)
    expect(err.actorId).toBe(a.actorId)
  })
})

describe('test_actor_lifetime.py', () => {
  // Ray's `_default_actor_lifetime` (a ray.init option) has no Shoal equivalent: only its `None` variants are ported.
  for (const childActorLifetime of [undefined, 'detached', 'non_detached'] as const) {
    it(`test_actor_lifetime.py::test_default_actor_lifetime — default_actor_lifetime=None, child_actor_lifetime=${childActorLifetime ?? 'None'}`, async () => {
      class OwnerActor {
        child: unknown
        async createChildActor(childActorLifetime: 'detached' | 'non_detached' | null) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          // Differs from Ray on purpose: `ready` is reserved on Shoal handles (handle.ready()), so it is `isReady`.
          const ChildActor = shoal.remote(
            class ChildActor {
              isReady() {
                return 'ok'
              }
            },
          )
          const child = childActorLifetime === null ? ChildActor.remote() : ChildActor.options({ lifetime: childActorLifetime }).remote()
          this.child = child
          if ((await shoal.get(child.isReady.remote())) !== 'ok') throw new Error('the child is not ready')
          return child
        }
        getPid() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
      }
      // 1. Create the owner and have it create a child actor.
      const owner = mesh.remote(OwnerActor).remote()
      const child = (await mesh.get(owner.createChildActor.remote(childActorLifetime ?? null), { timeout: 10_000 })) as ActorHandle<{
        isReady(): string
      }>
      expect(await mesh.get(child.isReady.remote(), { timeout: 10_000 })).toBe('ok')
      // 2. Kill the owner's process and make sure it is dead.
      await mesh.get(owner.getPid.remote(), { timeout: 10_000 })
      await killWorker(cluster(), { actorId: owner.actorId })
      await waitForCondition(async () => (await actorRow(owner.actorId))?.state === 'DEAD', 'the owner to be dead', 10_000)
      // 3. The child outlives its owner only if it is detached.
      if (childActorLifetime === 'detached') {
        expect(await mesh.get(child.isReady.remote(), { timeout: 10_000 })).toBe('ok')
      } else {
        await waitForCondition(
          () =>
            mesh.get(child.isReady.remote(), { timeout: 5000 }).then(
              () => false,
              (e) => e instanceof ActorDiedError,
            ),
          'the child to die with its owner',
          10_000,
        )
      }
    })
  }
})

describe('test_actor_failures.py (node failure, last)', () => {
  it('test_actor_failures.py::test_actor_restart_on_node_failure', async () => {
    // The actor's node is the cluster's second node (this is the last test of the file); the signal actor lives on
    // the first, where the actor restarts (Ray adds a fresh node for it instead).
    const actorNode = cluster().nodes[1]
    const signalNode = cluster().nodes[0]
    if (!actorNode || !signalNode) throw new Error('the cluster has two nodes')
    class RestartableActor {
      signal: ActorHandle<SignalActor>
      constructor(signal: ActorHandle<SignalActor>) {
        this.signal = signal
      }
      async echo(value: number) {
        if (value >= 5) await (self as unknown as { shoal: Mesh }).shoal.get(this.signal.wait.remote())
        return value
      }
    }
    const signal = mesh
      .remote(SignalActor)
      .options({ maxConcurrency: 1000, numCpus: 0, schedulingStrategy: { nodeId: signalNode.nodeId, soft: false } })
      .remote()
    const actor = mesh
      .remote(RestartableActor)
      .options({
        numCpus: 1,
        maxRestarts: 1,
        maxTaskRetries: -1,
        lifetime: 'detached',
        schedulingStrategy: { nodeId: actorNode.nodeId, soft: true },
      })
      .remote(signal)
    await mesh.get(actor.ready() as ObjectRef, { timeout: 10_000 })
    expect((await actorRow(actor.actorId))?.nodeId).toBe(actorNode.nodeId)
    const results = Array.from({ length: 10 }, (_, i) => actor.echo.remote(i))
    // Kill the actor's node while the above calls are still being executed.
    await actorNode.close()
    await mesh.get(signal.send.remote(), { timeout: 10_000 })
    // All calls are executed successfully, in order.
    expect(await mesh.get(results, { timeout: 30_000 })).toEqual(Array.from({ length: 10 }, (_, i) => i))
  })
})
