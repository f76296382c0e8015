import { beforeAll, describe, expect, it } from 'vitest'
import { ActorDiedError, GetTimeoutError, type Mesh, type ObjectRef, TaskError, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { type RuntimeContext, signalActor, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_asyncio.py (ray_start_regular_shared, scaled to 2 nodes × 2 CPUs). In JS every
// waiting method is async, so "async actor" here means an actor whose methods await.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  // Ray's test fixtures (conftest.py) start every driver in namespace 'default_test_namespace'.
  mesh = await cluster().connect({ namespace: 'default_test_namespace' })
})
useActorCleanup(() => mesh, { everyActor: true })

describe('test_asyncio.py', () => {
  it('test_asyncio.py::test_asyncio_actor', async () => {
    class AsyncBatcher {
      batch: number[] = []
      set: () => void = () => {}
      event = new Promise<void>((r) => {
        this.set = r
      })
      async add(x: number) {
        this.batch.push(x)
        if (this.batch.length >= 3) this.set()
        else await this.event
        return [...this.batch].sort((p, q) => p - q)
      }
    }
    // Differs from Ray on purpose: async actors default to maxConcurrency 1 in Shoal (README); Ray's default is 1000.
    const a = mesh.remote(AsyncBatcher).options({ maxConcurrency: 1000 }).remote()
    const x1 = a.add.remote(1)
    const x2 = a.add.remote(2)
    const x3 = a.add.remote(3)
    const r1 = await mesh.get(x1, { timeout: 10_000 })
    const r2 = await mesh.get(x2, { timeout: 10_000 })
    const r3 = await mesh.get(x3, { timeout: 10_000 })
    expect(r1).toEqual([1, 2, 3])
    expect(r2).toEqual(r1)
    expect(r3).toEqual(r1)
  })

  it('test_asyncio.py::test_asyncio_actor_same_thread', async () => {
    const Actor = mesh.remote(
      class Actor {
        syncThreadId() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
        async asyncThreadId() {
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
      },
    )
    const a = Actor.remote()
    const [syncId, asyncId] = await mesh.get([a.syncThreadId.remote(), a.asyncThreadId.remote()], { timeout: 10_000 })
    expect(syncId).toBe(asyncId)
  })

  it('test_asyncio.py::test_asyncio_actor_concurrency', async () => {
    const RecordOrder = mesh.remote(
      class RecordOrder {
        history: string[] = []
        async doWork() {
          this.history.push('STARTED')
          // Force a context switch.
          await new Promise((r) => setTimeout(r, 0))
          this.history.push('ENDED')
        }
        getHistory() {
          return this.history
        }
      },
    )
    const numCalls = 10
    const a = RecordOrder.options({ maxConcurrency: 1 }).remote()
    await mesh.get(
      Array.from({ length: numCalls }, () => a.doWork.remote()),
      { timeout: 10_000 },
    )
    const history = await mesh.get(a.getHistory.remote(), { timeout: 10_000 })
    // Only the ordered start-end-start-end sequence matters (coroutines may run out of their enqueued order).
    expect(history).toEqual(Array.from({ length: numCalls }, () => ['STARTED', 'ENDED']).flat())
  })

  it('test_asyncio.py::test_asyncio_actor_high_concurrency', async () => {
    // An actor handling more concurrent calls than Python's recursion limit (1000; 500 here).
    class AsyncConcurrencyBatcher {
      batch: number[] = []
      batchSize: number
      set: () => void = () => {}
      event = new Promise<void>((r) => {
        this.set = r
      })
      constructor(batchSize: number) {
        this.batchSize = batchSize
      }
      async add(x: number) {
        this.batch.push(x)
        if (this.batch.length >= this.batchSize) this.set()
        else await this.event
        return [...this.batch].sort((p, q) => p - q)
      }
    }
    const batchSize = 500
    const actor = mesh
      .remote(AsyncConcurrencyBatcher)
      .options({ maxConcurrency: batchSize * 2 })
      .remote(batchSize)
    const result = await mesh.get(
      Array.from({ length: batchSize }, (_, i) => actor.add.remote(i)),
      { timeout: 30_000 },
    )
    const expected = Array.from({ length: batchSize }, (_, i) => i)
    expect(result[0]).toEqual(expected)
    expect(result[batchSize - 1]).toEqual(expected)
  })

  it('test_asyncio.py::test_asyncio_get', async () => {
    // Ray awaits refs in an event loop; here `get` is the promise.
    const task = mesh.remote(function task() {
      return 1
    })
    expect(await mesh.get(task.remote(), { timeout: 10_000 })).toBe(1)

    const taskThrows = mesh.remote(function taskThrows() {
      throw new RangeError('division by zero')
    })
    await expect(mesh.get(taskThrows.remote(), { timeout: 10_000 })).rejects.toBeInstanceOf(TaskError)

    // Actor calls.
    const strLen = 200 * 1024
    const Actor = mesh.remote(
      class Actor {
        echo(i: number) {
          return i
        }
        bigObject(n: number) {
          // 100 KiB is the limit for inline values.
          return 'a'.repeat(n)
        }
        throwError() {
          throw new RangeError('division by zero')
        }
      },
    )
    const actor = Actor.remote()
    expect(await mesh.get(actor.echo.remote(2), { timeout: 10_000 })).toBe(2)
    expect(await mesh.get(actor.bigObject.remote(strLen), { timeout: 20_000 })).toBe('a'.repeat(strLen))
    await expect(mesh.get(actor.throwError.remote(), { timeout: 10_000 })).rejects.toBeInstanceOf(TaskError)

    // kill_actor_and_wait_for_failure
    await mesh.kill(actor)
    await waitForCondition(
      async () => (await mesh.state.listActors({ filters: [['actorId', '=', actor.actorId]] }))[0]?.state === 'DEAD',
      'the actor to die',
    )
    await expect(mesh.get(actor.echo.remote(1), { timeout: 10_000 })).rejects.toBeInstanceOf(ActorDiedError)
  })

  it('test_asyncio.py::test_asyncio_actor_async_get', async () => {
    const AsyncGetter = mesh.remote(
      class AsyncGetter {
        async get() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          const remoteTask = shoal.remote(function remoteTask() {
            return 1
          })
          return await shoal.get(remoteTask.remote())
        }
        async plasmaGet(plasmaObject: ObjectRef<number>[]) {
          return await (self as unknown as { shoal: Mesh }).shoal.get(plasmaObject[0] as ObjectRef<number>)
        }
      },
    )
    const plasmaObject = await mesh.put(2)
    const getter = AsyncGetter.remote()
    expect(await mesh.get(getter.get.remote(), { timeout: 10_000 })).toBe(1)
    expect(await mesh.get(getter.plasmaGet.remote([plasmaObject]), { timeout: 10_000 })).toBe(2)
  })

  it('test_asyncio.py::test_asyncio_double_await', async () => {
    const signal = signalActor(mesh)
    const waiting = signal.wait.remote()
    const err = await mesh.get(waiting, { timeout: 100 }).catch((e) => e)
    expect(err).toBeInstanceOf(GetTimeoutError)

    // Waiting several times on the same ref.
    await mesh.get(signal.send.remote(), { timeout: 10_000 })
    await mesh.get(waiting, { timeout: 10_000 })
    await mesh.get(waiting, { timeout: 10_000 })
  })

  it('test_asyncio.py::test_asyncio_actor_with_large_concurrency', async () => {
    // An actor with a very large maxConcurrency must not make a thread (here: a worker) per slot.
    const Actor = mesh.remote(
      class Actor {
        syncThreadId() {
          const end = Date.now() + 200
          while (Date.now() < end) {} // time.sleep: the worker is blocked
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
        async asyncThreadId() {
          const end = Date.now() + 200
          while (Date.now() < end) {}
          return (self as unknown as { shoalContext: RuntimeContext }).shoalContext.workerId
        }
      },
    )
    const a = Actor.options({ maxConcurrency: 100_000 }).remote()
    const [syncId, asyncId] = await mesh.get([a.syncThreadId.remote(), a.asyncThreadId.remote()], { timeout: 10_000 })
    expect(syncId).toBe(asyncId)
  })

  it('test_asyncio.py::test_wait_async_basic', async () => {
    const signal = signalActor(mesh)
    const blocked = mesh.remote(async function blocked(signal: { wait: { remote(): ObjectRef } }) {
      await (self as unknown as { shoal: Mesh }).shoal.get(signal.wait.remote())
      return 'ok'
    })
    const ref = blocked.remote(signal)
    // A pending ref is not ready yet.
    let { ready, notReady } = await mesh.wait([ref], { timeout: 100, fetchLocal: false })
    expect(ready).toEqual([])
    expect(notReady).toEqual([ref])

    // The event loop keeps progressing while waiting.
    let progressed = false
    const waitTask = mesh.wait([ref], { fetchLocal: false, timeout: 10_000 })
    await new Promise<void>((r) =>
      setTimeout(() => {
        progressed = true
        r()
      }, 50),
    )
    expect(progressed).toBe(true)

    await mesh.get(signal.send.remote(), { timeout: 10_000 })
    ;({ ready, notReady } = await waitTask)
    expect(ready).toEqual([ref])
    expect(notReady).toEqual([])
  })

  it('test_asyncio.py::test_wait_async_num_returns', async () => {
    const f = mesh.remote(function f(x: number) {
      return x
    })
    const refs = [0, 1, 2].map((i) => f.remote(i))
    const { ready, notReady } = await mesh.wait(refs, { numReturns: 2, fetchLocal: false, timeout: 10_000 })
    expect(ready).toHaveLength(2)
    expect(notReady).toHaveLength(1)
    expect(new Set([...ready, ...notReady])).toEqual(new Set(refs))
  })

  it('test_asyncio.py::test_wait_async_timeout_zero_ready_ref', async () => {
    const f = mesh.remote(function f() {
      return 1
    })
    const ref = f.remote()
    await mesh.get(ref, { timeout: 10_000 })
    const { ready, notReady } = await mesh.wait([ref], { timeout: 0, fetchLocal: false })
    expect(ready).toEqual([ref])
    expect(notReady).toEqual([])
  })

  it('test_asyncio.py::test_wait_async_rejects_invalid_args', async () => {
    const ref = await mesh.put(1)
    await expect(mesh.wait([ref, ref], { fetchLocal: false })).rejects.toThrow(ValidationError)
    await expect(mesh.wait([ref], { numReturns: 0, fetchLocal: false })).rejects.toThrow(ValidationError)
    await expect(mesh.wait(ref as never, { fetchLocal: false })).rejects.toThrow(ValidationError)
  })

  it('test_asyncio.py::test_wait_async_fetch_local_true_waits_for_value', async () => {
    const signal = signalActor(mesh)
    const blocked = mesh.remote(async function blocked(signal: { wait: { remote(): ObjectRef } }) {
      await (self as unknown as { shoal: Mesh }).shoal.get(signal.wait.remote())
      return 'ok'
    })
    const ref = blocked.remote(signal)
    let { ready, notReady } = await mesh.wait([ref], { timeout: 100, fetchLocal: true })
    expect(ready).toEqual([])
    expect(notReady).toEqual([ref])

    await mesh.get(signal.send.remote(), { timeout: 10_000 })
    ;({ ready, notReady } = await mesh.wait([ref], { fetchLocal: true, timeout: 10_000 }))
    expect(ready).toEqual([ref])
    expect(notReady).toEqual([])
    expect(await mesh.get(ref, { timeout: 10_000 })).toBe('ok')
  })

  it('test_asyncio.py::test_wait_async_fetch_local_true_local_plasma_object', async () => {
    // A 1 MiB return lives in a node's plasma store, not inline.
    const large = mesh.remote(function large() {
      return new Uint8Array(1024 * 1024).fill(120)
    })
    const ref = large.remote()
    expect((await mesh.get(ref, { timeout: 20_000 })).byteLength).toBe(1024 * 1024)
    const { ready, notReady } = await mesh.wait([ref], { timeout: 5000, fetchLocal: true })
    expect(ready).toEqual([ref])
    expect(notReady).toEqual([])
  })
})
