import { beforeAll, describe, expect, it } from 'vitest'
import { type ActorHandle, ActorHandleBase, type Mesh, type ObjectRef, type RemoteFunction, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { type RuntimeContext, type SignalActor, signalActor, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_actor.py (ray_start_regular_shared / ray_start_10_cpus, scaled to 2 nodes × 2 CPUs).
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  // Ray's test fixtures (conftest.py) start every driver in namespace 'default_test_namespace'.
  mesh = await cluster().connect({ namespace: 'default_test_namespace' })
})
// Actors hold their CPU until they die: every test leaves no actor alive, including those made inside tasks and actors.
useActorCleanup(() => mesh, { everyActor: true })

/** Extra helper: an actor's state in the state API. */
async function actorState(actorId: string) {
  return (await mesh.state.listActors({ filters: [['actorId', '=', actorId]] }))[0]?.state
}

describe('test_actor.py', () => {
  it('test_actor.py::test_actor_init_error_propagated', async () => {
    const Actor = mesh.remote(
      class Actor {
        constructor(error = false) {
          if (error) throw new Error('oops')
        }
        foo() {
          return 'OK'
        }
      },
    )
    const ok = Actor.remote(false)
    expect(await mesh.get(ok.foo.remote(), { timeout: 10_000 })).toBe('OK')

    const bad = Actor.remote(true)
    await expect(mesh.get(bad.foo.remote(), { timeout: 10_000 })).rejects.toThrow(/oops/)
  })

  it('test_actor.py::test_options_num_returns', async () => {
    const Foo = mesh.remote(
      class Foo {
        method() {
          return [1, 2]
        }
      },
    )
    const f = Foo.remote()
    expect(await mesh.get(f.method.remote(), { timeout: 10_000 })).toEqual([1, 2])
    const [obj1, obj2] = f.method.options({ numReturns: 2 }).remote()
    expect(await mesh.get([obj1 as ObjectRef, obj2 as ObjectRef], { timeout: 10_000 })).toEqual([1, 2])
  })

  it('test_actor.py::test_define_actor', async () => {
    const Test = mesh.remote(
      class Test {
        x: number
        constructor(x: number) {
          this.x = x
        }
        f(y: number) {
          return this.x + y
        }
      },
    )
    const t = Test.remote(2)
    expect(await mesh.get(t.f.remote(1), { timeout: 10_000 })).toBe(3)
    // Calling an actor method directly raises an exception.
    expect(() => (t.f as unknown as (y: number) => unknown)(1)).toThrow()
  })

  it('test_actor.py::test_actor_deletion', async () => {
    // Ray waits for the actor's process to exit once its handle goes out of scope; here the actor table says DEAD.
    const Actor = mesh.remote(
      class Actor {
        getpid() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
      },
    )
    const one = async () => {
      const a = Actor.remote()
      await mesh.get(a.getpid.remote(), { timeout: 10_000 })
      return a.actorId
    }
    const id = await one()
    await cluster().collectGarbage()
    await waitForCondition(async () => (await actorState(id)) === 'DEAD', 'the actor to end once its only handle is gone', 10_000)

    const many = async () => {
      const actors = Array.from({ length: 3 }, () => Actor.remote())
      await mesh.get(
        actors.map((a) => a.getpid.remote()),
        { timeout: 10_000 },
      )
      return actors.map((a) => a.actorId)
    }
    const ids = await many()
    await cluster().collectGarbage()
    for (const i of ids) await waitForCondition(async () => (await actorState(i)) === 'DEAD', `actor ${i} to end`, 10_000)
  })

  it('test_actor.py::test_actor_method_deletion', async () => {
    const Actor = mesh.remote(
      class Actor {
        method() {
          return 1
        }
      },
    )
    // The handle is dropped at once: the actor must not be killed before the method runs.
    const ref = Actor.remote().method.remote()
    await cluster().collectGarbage()
    expect(await mesh.get(ref, { timeout: 10_000 })).toBe(1)
  })

  it('test_actor.py::test_distributed_actor_handle_deletion', async () => {
    class Actor {
      method() {
        return 1
      }
      getpid() {
        return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
      }
    }
    const f = mesh.remote(async function f(actor: ActorHandle<Actor>, signal: ActorHandle<SignalActor>) {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      await shoal.get(signal.wait.remote())
      return shoal.get(actor.method.remote())
    })
    const signal = signalActor(mesh)
    const start = async () => {
      const a = mesh.remote(Actor).remote()
      await mesh.get(a.getpid.remote(), { timeout: 10_000 })
      // Pass the handle to another task that cannot run yet, then drop the original.
      return { xId: f.remote(a, signal), actorId: a.actorId }
    }
    const { xId, actorId } = await start()
    await cluster().collectGarbage()
    // The actor is not killed yet: the task still holds a handle.
    expect(await actorState(actorId)).toBe('ALIVE')

    await mesh.get(signal.send.remote(), { timeout: 10_000 })
    expect(await mesh.get(xId, { timeout: 10_000 })).toBe(1)
    // Once the task has finished, the actor goes.
    await cluster().collectGarbage()
    await waitForCondition(async () => (await actorState(actorId)) === 'DEAD', 'the actor to end after the task', 10_000)
  })

  it('test_actor.py::test_multiple_actors', async () => {
    const Counter = mesh.remote(
      class Counter {
        value: number
        constructor(value: number) {
          this.value = value
        }
        increase() {
          this.value += 1
          return this.value
        }
        reset() {
          this.value = 0
        }
      },
    )
    const numActors = 3
    const numIncreases = 20
    const actors = Array.from({ length: numActors }, (_, i) => Counter.remote(i))
    let results = []
    for (let i = 0; i < numActors; i++)
      for (let k = 0; k < numIncreases; k++) results.push((actors[i] as (typeof actors)[0]).increase.remote())
    let values = await mesh.get(results, { timeout: 20_000 })
    for (let i = 0; i < numActors; i++) {
      expect(values.slice(numIncreases * i, numIncreases * (i + 1))).toEqual(Array.from({ length: numIncreases }, (_, k) => i + 1 + k))
    }

    // Reset the actor values, then interweave the method calls on the different actors.
    for (const a of actors) a.reset.remote()
    results = []
    for (let j = 0; j < numIncreases; j++) results.push(...actors.map((a) => a.increase.remote()))
    values = await mesh.get(results, { timeout: 20_000 })
    for (let j = 0; j < numIncreases; j++) {
      expect(values.slice(numActors * j, numActors * (j + 1))).toEqual(Array(numActors).fill(j + 1))
    }
  })

  it('test_actor.py::test_remote_function_within_actor', async () => {
    const val1 = 1
    const val2 = 2
    const Actor = mesh.remote(
      class Actor {
        x: number
        y: number
        objectRefs: ObjectRef<number>[]
        values2: Promise<number[]>
        fFn: RemoteFunction<(x: number, v: number) => number>
        gFn: RemoteFunction<(x: number, v: number) => Promise<number>>
        constructor(x: number, v1: number, v2: number) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          this.fFn = shoal.remote(function f(x: number, v: number) {
            return v + x
          })
          this.gFn = shoal.remote(async function g(x: number, v: number) {
            const s = (self as unknown as { shoal: Mesh }).shoal
            const f = s.remote(function f(x: number, v: number) {
              return v + x
            })
            return s.get(f.remote(x, v))
          })
          this.x = x
          this.y = v2
          this.objectRefs = [0, 1, 2, 3, 4].map((i) => this.fFn.remote(i, v1))
          // A constructor cannot block in JS: the values are awaited by the first method that needs them.
          this.values2 = shoal.get([0, 1, 2, 3, 4].map((i) => this.fFn.remote(i, v1)))
          this.values2.catch(() => {})
        }
        async getValues() {
          return [this.x, this.y, this.objectRefs, await this.values2] as const
        }
        f() {
          return [0, 1, 2, 3, 4].map((i) => this.fFn.remote(i, 1))
        }
        g() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          return shoal.get([0, 1, 2, 3, 4].map((i) => this.gFn.remote(i, 1)))
        }
        h(objectRefs: ObjectRef<number>[]) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          return shoal.get(objectRefs)
        }
      },
    )
    const fOut = mesh.remote(function f(x: number, v: number) {
      return v + x
    })
    const actor = Actor.remote(1, val1, val2)
    const values = await mesh.get(actor.getValues.remote(), { timeout: 20_000 })
    expect(values[0]).toBe(1)
    expect(values[1]).toBe(val2)
    expect(await mesh.get(values[2] as ObjectRef<number>[], { timeout: 10_000 })).toEqual([1, 2, 3, 4, 5])
    expect(values[3]).toEqual([1, 2, 3, 4, 5])

    expect(await mesh.get(await mesh.get(actor.f.remote(), { timeout: 10_000 }), { timeout: 10_000 })).toEqual([1, 2, 3, 4, 5])
    expect(await mesh.get(actor.g.remote(), { timeout: 20_000 })).toEqual([1, 2, 3, 4, 5])
    expect(await mesh.get(actor.h.remote([0, 1, 2, 3, 4].map((i) => fOut.remote(i, val1))), { timeout: 10_000 })).toEqual([1, 2, 3, 4, 5])
  })

  it('test_actor.py::test_use_actor_within_actor', async () => {
    const Actor2 = mesh.remote(
      class Actor2 {
        x: number
        actor1: { getVal: { remote(): ObjectRef<number> } }
        constructor(x: number, y: number) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          this.x = x
          this.actor1 = shoal
            .remote(
              class Actor1 {
                x: number
                constructor(x: number) {
                  this.x = x
                }
                getVal() {
                  return this.x
                }
              },
            )
            .remote(y)
        }
        async getValues(_z: number) {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          return [this.x, await shoal.get(this.actor1.getVal.remote())]
        }
      },
    )
    const actor2 = Actor2.remote(3, 4)
    expect(await mesh.get(actor2.getValues.remote(5), { timeout: 20_000 })).toEqual([3, 4])
  })

  it('test_actor.py::test_use_actor_twice', async () => {
    class Actor1 {
      count = 0
      inc() {
        this.count += 1
        return this.count
      }
    }
    const Actor2 = mesh.remote(
      class Actor2 {
        inc(handle: ActorHandle<Actor1>) {
          return (self as unknown as { shoal: Mesh }).shoal.get(handle.inc.remote())
        }
      },
    )
    const a = mesh.remote(Actor1).remote()
    const a2 = Actor2.remote()
    expect(await mesh.get(a2.inc.remote(a), { timeout: 10_000 })).toBe(1)
    expect(await mesh.get(a2.inc.remote(a), { timeout: 10_000 })).toBe(2)
  })

  it('test_actor.py::test_define_actor_within_remote_function', async () => {
    const f = mesh.remote(async function f(x: number, n: number) {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const Actor1 = shoal.remote(
        class Actor1 {
          x: number
          constructor(x: number) {
            this.x = x
          }
          getValue() {
            return this.x
          }
        },
      )
      const actor = Actor1.remote(x)
      return shoal.get(Array.from({ length: n }, () => actor.getValue.remote()))
    })
    expect(await mesh.get(f.remote(3, 1), { timeout: 20_000 })).toEqual([3])
    expect(
      await mesh.get(
        Array.from({ length: 2 }, (_, i) => f.remote(i, 5)),
        { timeout: 20_000 },
      ),
    ).toEqual(Array.from({ length: 2 }, (_, i) => Array(5).fill(i)))
  })

  it('test_actor.py::test_actor_exit_from_task', async () => {
    const f = mesh.remote(function f() {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const Actor = shoal.remote(
        class Actor {
          f() {
            return 0
          }
        },
      )
      const a = Actor.remote()
      const xId = a.f.remote()
      return [xId]
    })
    const [xId] = await mesh.get(f.remote(), { timeout: 10_000 })
    // This should not hang.
    expect(await mesh.get(xId as ObjectRef<number>, { timeout: 10_000 })).toBe(0)
  })

  it('test_actor.py::test_get_non_existing_named_actor', async () => {
    await expect(mesh.getActor('non_existing_actor')).rejects.toThrow(ValidationError)
  })

  it('test_actor.py::test_actor_namespace', async () => {
    const Actor = mesh.remote(
      class Actor {
        f() {
          return 'ok'
        }
      },
    )
    Actor.options({ name: 'foo', namespace: 'f1' }).remote()
    await expect(mesh.getActor('foo', { namespace: 'f2' })).rejects.toThrow(ValidationError)
    const a1 = await mesh.getActor<{ f(): string }>('foo', { namespace: 'f1' })
    expect(await mesh.get(a1.f.remote(), { timeout: 10_000 })).toBe('ok')
  })

  it('test_actor.py::test_named_actor_cache', async () => {
    class Counter {
      count = 0
      incAndGet() {
        this.count += 1
        return this.count
      }
    }
    const C = mesh.remote(Counter).options({ maxRestarts: -1 })
    const a = C.options({ name: 'hi' }).remote()
    const firstGet = await mesh.getActor<Counter>('hi')
    expect(await mesh.get(firstGet.incAndGet.remote(), { timeout: 10_000 })).toBe(1)
    const secondGet = await mesh.getActor<Counter>('hi')
    expect(await mesh.get(secondGet.incAndGet.remote(), { timeout: 10_000 })).toBe(2)
    await mesh.kill(a, { noRestart: true })

    await waitForCondition(
      () =>
        mesh.getActor('hi').then(
          () => false,
          (e) => e instanceof ValidationError,
        ),
      'the name to be released',
    )

    const getAfterRestart = C.options({ name: 'hi' }).remote()
    expect(await mesh.get(getAfterRestart.incAndGet.remote(), { timeout: 10_000 })).toBe(1)
    const getByName = await mesh.getActor<Counter>('hi')
    expect(await mesh.get(getByName.incAndGet.remote(), { timeout: 10_000 })).toBe(2)
  })

  it('test_actor.py::test_wrapped_actor_handle', async () => {
    const A = mesh.remote(
      class A {
        b: unknown
        constructor() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          this.b = shoal
            .remote(
              class B {
                doit() {
                  return 2
                }
              },
            )
            .remote()
        }
        getActorRef() {
          return [this.b]
        }
      },
    )
    const a = A.remote()
    const bList = (await mesh.get(a.getActorRef.remote(), { timeout: 10_000 })) as ActorHandle<{ doit(): number }>[]
    expect(bList[0]).toBeInstanceOf(ActorHandleBase)
    expect(await mesh.get((bList[0] as ActorHandle<{ doit(): number }>).doit.remote(), { timeout: 10_000 })).toBe(2)
  })

  it('test_actor.py::test_return_actor_handle_from_actor', async () => {
    const Outer = mesh.remote(
      class Outer {
        inner: unknown
        constructor() {
          this.inner = (self as unknown as { shoal: Mesh }).shoal
            .remote(
              class Inner {
                ping() {
                  return 'pong'
                }
              },
            )
            .remote()
        }
        getRef() {
          return this.inner
        }
      },
    )
    const outer = Outer.remote()
    const inner = (await mesh.get(outer.getRef.remote(), { timeout: 10_000 })) as ActorHandle<{ ping(): string }>
    expect(await mesh.get(inner.ping.remote(), { timeout: 10_000 })).toBe('pong')
  })
})
