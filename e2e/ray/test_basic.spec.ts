import { beforeAll, describe, expect, it } from 'vitest'
import { GetTimeoutError, type Mesh, ObjectRef, TaskError, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { type RuntimeContext, rejection, useActorCleanup, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_basic.py.
type TaskSelf = { shoal: Mesh; shoalContext: RuntimeContext }

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
const keep = useActorCleanup(() => mesh)

/** `.remote()` with numReturns > 1 returns one ref per return value. */
const many = (r: unknown) => r as ObjectRef[]
/** numpy's randint(lo, hi): an integer in [lo, hi). */
const randint = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo))
const fraction = () => Math.random() || 0.5
const totalCpus = async () =>
  (await mesh.state.listNodes()).filter((n) => n.state === 'ALIVE').reduce((s, n) => s + (n.resources.CPU ?? 0), 0)

describe('test_basic.py', () => {
  it('test_basic.py::test_submit_api', async () => {
    const f = mesh.remote(function f(n: number) {
      return Array.from({ length: n }, (_, i) => i)
    })
    // ray.get_gpu_ids() in a task that asked for no GPU.
    const g = mesh.remote(function g() {
      return [] as number[]
    })
    expect(await mesh.get(f.options({ numReturns: 1 }).remote(1))).toEqual([0])
    expect(await mesh.get(many(f.options({ numReturns: 2 }).remote(2)))).toEqual([0, 1])
    expect(await mesh.get(many(f.options({ numReturns: 3 }).remote(3)))).toEqual([0, 1, 2])
    expect(await mesh.get(g.options({ numCpus: 1 }).remote())).toEqual([])
    const infeasible = g.options({ resources: { NonexistentCustom: 1 } }).remote()
    expect(await mesh.get(g.remote())).toEqual([])
    const { ready, notReady } = await mesh.wait([infeasible], { timeout: 50 })
    expect(ready).toHaveLength(0)
    expect(notReady).toHaveLength(1)
    await mesh.cancel(infeasible)

    // Check mismatch with numReturns.
    const tooMany = await rejection(mesh.get(many(f.options({ numReturns: 2 }).remote(3))[0] as ObjectRef, { timeout: 10_000 }))
    expect(tooMany).not.toBeInstanceOf(GetTimeoutError)
    const tooFew = await rejection(mesh.get(many(f.options({ numReturns: 3 }).remote(2))[0] as ObjectRef, { timeout: 10_000 }))
    expect(tooFew).not.toBeInstanceOf(GetTimeoutError)

    class Actor {
      x: number
      y: number
      constructor(x: number, y = 0) {
        this.x = x
        this.y = y
      }
      method(a: string, b = 0) {
        return [this.x, this.y, a, b]
      }
    }
    class Actor2 {
      method() {
        return null
      }
    }
    const a = keep(mesh.remote(Actor).remote(0, 1))
    const a2 = keep(mesh.remote(Actor2).remote())
    await mesh.get(a2.method.remote())
    expect(await mesh.get(a.method.options({ numReturns: 4 }).remote('test', 2))).toEqual([0, 1, 'test', 2])

    // Ray: `f._remote([0], num_returns=0) is None` — a task with no return value gives no ref.
    expect(f.options({ numReturns: 0 }).remote(0)).toBeUndefined()
  })

  it('test_basic.py::test_invalid_arguments', async () => {
    // Ray validates these in @ray.remote(...); Shoal in .options(...), before anything is submitted.
    const g1 = mesh.remote(function g1() {
      return 1
    })
    for (const opt of [randint(-100, -1), fraction()]) {
      expect(() => g1.options({ numReturns: opt })).toThrow(ValidationError)
      expect(() => g1.options({ numReturns: opt })).toThrow(/numReturns/)
    }
    for (const opt of [randint(-100, -2), fraction()]) {
      expect(() => g1.options({ maxRetries: opt })).toThrow(ValidationError)
      expect(() => g1.options({ maxRetries: opt })).toThrow(/maxRetries/)
    }
    // max_calls: Shoal has no such option (workers are reused for the job's life).
    const A1 = mesh.remote(
      class A1 {
        x = 1
      },
    )
    for (const opt of [randint(-100, -2), fraction()]) {
      expect(() => A1.options({ maxRestarts: opt })).toThrow(ValidationError)
      expect(() => A1.options({ maxRestarts: opt })).toThrow(/maxRestarts/)
    }
    for (const opt of [randint(-100, -2), fraction()]) {
      expect(() => A1.options({ maxTaskRetries: opt })).toThrow(ValidationError)
      expect(() => A1.options({ maxTaskRetries: opt })).toThrow(/maxTaskRetries/)
    }
  })

  it('test_basic.py::test_wait_timing', async () => {
    const f = mesh.remote(async function waitTimingF() {
      await new Promise((r) => setTimeout(r, 1000))
    })
    const future = f.remote()
    const start = performance.now()
    const { ready, notReady } = await mesh.wait([future], { timeout: 200 })
    const elapsed = performance.now() - start
    expect(elapsed).toBeGreaterThanOrEqual(195)
    expect(elapsed).toBeLessThan(800)
    expect(ready).toHaveLength(0)
    expect(notReady).toHaveLength(1)
    await mesh.get(future)
  })

  it('test_basic.py::test_ray_options', async () => {
    // Ray checks ray.available_resources() from inside the task; here the state API's nodes, polled the same way.
    const foo = mesh
      .remote(async function foo(expectedCpu: number) {
        const shoal = (self as unknown as TaskSelf).shoal
        for (let retries = 10; retries >= 0; retries--) {
          const nodes = await shoal.state.listNodes()
          const cpu = nodes.filter((n) => n.state === 'ALIVE').reduce((s, n) => s + (n.availableResources.CPU ?? 0), 0)
          if (cpu === expectedCpu) return cpu
          await new Promise((r) => setTimeout(r, 100))
        }
        throw new Error('Number of retries exceeded')
      })
      .options({ numCpus: 2 })
    const total = await totalCpus()
    expect(await mesh.get(foo.remote(total - 2))).toBe(total - 2)
    expect(await mesh.get(foo.options({ numCpus: 1.5 }).remote(total - 1.5))).toBe(total - 1.5)
  })

  it('test_basic.py::test_nested_functions', async () => {
    // Ray's g() is a plain function defined beside f; a task ships alone, so it is defined inside.
    const f = mesh.remote(async function nestedF() {
      const shoal = (self as unknown as TaskSelf).shoal
      const g = () => 1
      const h = shoal.remote(function h() {
        return 2
      })
      return [g(), await shoal.get(h.remote())]
    })
    expect(await mesh.get(f.remote())).toEqual([1, 2])

    // A remote function that recursively calls itself.
    const factorial = mesh.remote(async function factorial(n: number): Promise<number> {
      if (n === 0) return 1
      const shoal = (self as unknown as TaskSelf).shoal
      return n * (await shoal.get(shoal.remote(factorial).remote(n - 1)))
    })
    for (const [n, value] of [
      [0, 1],
      [1, 1],
      [2, 2],
      [3, 6],
      [4, 24],
      [5, 120],
    ] as const)
      expect(await mesh.get(factorial.remote(n), { timeout: 30_000 })).toBe(value)
  })

  it('test_basic.py::test_putting_object_that_closes_over_object_ref', async () => {
    // Ray's Foo also has a method; functions are refused in values on purpose (README), so only the data part.
    const foo = { val: await mesh.put(0) }
    const ref = await mesh.put(foo)
    const back = await mesh.get(ref)
    expect(back.val).toBeInstanceOf(ObjectRef)
    expect(await mesh.get(back.val)).toBe(0)
  })

  it('test_basic.py::test_failed_task', async () => {
    const fct1 = mesh.remote(function throwExceptionFct1() {
      throw new Error('Test function 1 intentionally failed.')
    })
    const fct2 = mesh.remote(function throwExceptionFct2() {
      throw new Error('Test function 2 intentionally failed.')
    })
    const fct3 = mesh
      .remote(function throwExceptionFct3(_x: number) {
        throw new Error('Test function 3 intentionally failed.')
      })
      .options({ numReturns: 3 })

    const unobserved = [fct1.remote(), fct1.remote()]
    // Ray reads the two errors pushed to the driver; the state API holds the same for every failed task.
    await waitForCondition(async () => {
      const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'throwExceptionFct1']] })
      return rows.filter((r) => r.state === 'FAILED').length === 2
    }, 'the two failures of throwExceptionFct1')
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'throwExceptionFct1']] })
    for (const row of rows) expect(row.errorMessage).toContain('Test function 1 intentionally failed.')
    expect(unobserved).toHaveLength(2)

    const e2 = await rejection(mesh.get(fct2.remote()))
    expect(String(e2)).toContain('Test function 2 intentionally failed.')

    for (const ref of many(fct3.remote(1.0))) {
      const e3 = await rejection(mesh.get(ref, { timeout: 10_000 }))
      expect(String(e3)).toContain('Test function 3 intentionally failed.')
    }

    const f = mesh.remote(function customFailure() {
      class CustomException extends Error {
        field = 1
        constructor(msg: string) {
          super(msg)
          this.name = 'CustomException'
        }
        f() {
          return 2
        }
      }
      throw new CustomException('This function failed.')
    })
    const e = await rejection(mesh.get(f.remote()))
    expect(String(e)).toContain('This function failed.')
    expect(e).toBeInstanceOf(TaskError)
    expect(e.remoteName).toBe('CustomException')
    // Ray: isinstance(e, CustomException) and e.field == 1. The remote class does not exist here; the error rebuilt
    // from it is the TaskError's cause, with its name and own fields. (e.f() == 2: methods do not cross the wire.)
    const cause = e.cause as Error & { field?: number }
    expect(cause).toBeInstanceOf(Error)
    expect(cause.name).toBe('CustomException')
    expect(cause.message).toBe('This function failed.')
    expect(cause.field).toBe(1)
  })

  it('test_basic.py::test_grpc_message_size', async () => {
    const bar = mesh.remote(function bar(..._a: Uint8Array[]) {
      return null
    })
    // 50 KB, not enough to go to the object store, but will be inlined: a 10 MB task spec.
    const f = () => new Uint8Array(50_000)
    expect(await mesh.get(bar.remote(...Array.from({ length: 200 }, f)), { timeout: 30_000 })).toBeNull()
  })
})
