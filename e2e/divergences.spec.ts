import { beforeAll, describe, expect, it, vi } from 'vitest'
import {
  type ActorHandle,
  GetTimeoutError,
  type Mesh,
  ObjectFreedError,
  type ObjectRef,
  TaskCancelledError,
  TaskError,
  ValidationError,
  WorkerCrashedError,
} from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'
import { SignalActor, signalActor } from './ray/helpers.ts'

// Where Shoal hung or diverged from Ray when people and programs that did not write it tried it. One test per case;
// each failed before its fix. (The Ray-ported suite in e2e/ray/ covers the same ground case by case.)
const cluster = useCluster({ nodes: 2, cpus: 2 })
let mesh: Mesh
beforeAll(async () => {
  mesh = await cluster().connect()
})
const T = 15_000
const rejection = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: Error) => e,
  )

describe('divergences from Ray, each fixed', () => {
  it('a Node driver runs its tasks while a browser driver that used every worker stays connected', async () => {
    const page = await cluster().driverPage()
    await page.evaluate(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      window.pageMesh = await connect()
      const warm = window.pageMesh.remote(async function warm() { await new Promise((r) => setTimeout(r, 200)); return 0 })
      return window.pageMesh.get(Array.from({ length: 12 }, () => warm.remote()))
    })()`)
    const other = await cluster().connect()
    const f = other.remote(async function nodeTask(i: number) {
      return i * 2
    })
    expect(
      await other.get(
        Array.from({ length: 20 }, (_, i) => f.remote(i)),
        { timeout: T },
      ),
    ).toEqual(Array.from({ length: 20 }, (_, i) => i * 2))
    await eventually(
      async () => (await other.state.listNodes()).every((n) => n.state === 'DEAD' || n.availableResources.CPU === n.resources.CPU),
      'every CPU to be free again',
    )
    await page.evaluate('window.pageMesh.close()')
    await other.close()
  })

  it("a concurrent actor's out-of-order completions all arrive (Ray's SignalActor)", async () => {
    const signal = signalActor(mesh) as ActorHandle<SignalActor>
    const waiting = signal.wait.remote()
    expect(await mesh.get(signal.send.remote(), { timeout: T })).toBeUndefined()
    expect(await mesh.get(waiting, { timeout: T })).toBeUndefined()
    const Adder = mesh.remote(
      class Adder {
        async add(x: number) {
          await new Promise((r) => setTimeout(r, 300 - x * 100))
          return x
        }
      },
    )
    const adder = Adder.options({ maxConcurrency: 3, numCpus: 0 }).remote()
    expect(
      await mesh.get(
        [1, 2, 3].map((x) => adder.add.remote(x)),
        { timeout: T },
      ),
    ).toEqual([1, 2, 3])
    await mesh.kill(signal)
    await mesh.kill(adder)
  })

  it('get(list) rejects as soon as one of them has failed, while others are still pending', async () => {
    const signal = signalActor(mesh) as ActorHandle<SignalActor>
    const slow = mesh.remote(async function slow(s: ActorHandle<SignalActor>) {
      await (self as unknown as { shoal: Mesh }).shoal.get(s.wait.remote())
      return 'slow'
    })
    const boom = mesh.remote(function boom() {
      throw new RangeError('boom')
    })
    const t0 = performance.now()
    const err = await rejection(mesh.get([slow.remote(signal), boom.options({ maxRetries: 0 }).remote()], { timeout: T }))
    expect(err).toBeInstanceOf(TaskError)
    expect(performance.now() - t0).toBeLessThan(T / 2)
    await mesh.get(signal.send.remote())
    await mesh.kill(signal)
  })

  it('a ref nested inside an argument is passed as a ref, not waited for: the task can cancel it and run at once', async () => {
    const forever = mesh.remote(async function forever() {
      await new Promise(() => {})
    })
    const inner = forever.options({ numCpus: 0 }).remote()
    const canceller = mesh.remote(async function canceller(refs: ObjectRef[]) {
      await (self as unknown as { shoal: Mesh }).shoal.cancel(refs[0] as ObjectRef)
      return 'ran'
    })
    expect(await mesh.get(canceller.remote([inner]), { timeout: T })).toBe('ran')
    expect(await rejection(mesh.get(inner, { timeout: T }))).toBeInstanceOf(TaskCancelledError)
  })

  it("dependents fail with the same error class; a remote error's own fields survive as cause", async () => {
    const forever = mesh.remote(async function forever() {
      await new Promise(() => {})
    })
    const pass = mesh.remote(function pass(x: unknown) {
      return x
    })
    const a = forever.options({ numCpus: 0 }).remote()
    const b = pass.remote(a)
    const c = pass.remote(b)
    await mesh.cancel(a)
    for (const r of [a, b, c]) expect(await rejection(mesh.get(r, { timeout: T }))).toBeInstanceOf(TaskCancelledError)

    const custom = mesh.remote(function custom() {
      throw Object.assign(new RangeError('out of range'), { code: 'E_RANGE', field: 'x', detail: { max: 3 } })
    })
    const err = (await rejection(mesh.get(custom.options({ maxRetries: 0 }).remote(), { timeout: T }))) as TaskError
    expect(err).toBeInstanceOf(TaskError)
    expect(err.cause).toBeInstanceOf(Error)
    expect(err.cause.name).toBe('RangeError')
    expect(err.cause.message).toBe('out of range')
    expect(err.cause).toMatchObject({ code: 'E_RANGE', field: 'x', detail: { max: 3 } })
  })

  it('a worker that dies mid-task is a system failure: retried within maxRetries, else WorkerCrashedError', async () => {
    const dies = mesh.remote(async function dies(times: number) {
      if ((self as unknown as { shoalContext: { attempt: number } }).shoalContext.attempt < times) {
        self.close()
        await new Promise(() => {})
      }
      return 'survived'
    })
    expect(await mesh.get(dies.options({ maxRetries: 1 }).remote(1), { timeout: T })).toBe('survived')
    const err = await rejection(mesh.get(dies.options({ maxRetries: 0 }).remote(1), { timeout: T }))
    expect(err).toBeInstanceOf(WorkerCrashedError)
    const [row] = await mesh.state.listTasks({
      filters: [
        ['funcOrClassName', '=', 'dies'],
        ['errorType', '=', 'WORKER_DIED'],
      ],
    })
    expect(row?.errorName).toBe('WorkerCrashedError')
  })

  it('wait([]) answers at once; an empty namespace is refused; a task no node can fit is reported once, by name', async () => {
    expect(await mesh.wait([])).toEqual({ ready: [], notReady: [] })
    await expect(cluster().connect({ namespace: '' })).rejects.toThrow(ValidationError)
    expect(() => mesh.remote(SignalActor).options({ namespace: '' })).toThrow(ValidationError)

    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const huge = mesh.remote(function huge() {
        return 1
      })
      const refs = [huge.options({ numCpus: 64 }).remote(), huge.options({ numCpus: 64 }).remote()]
      const err = await rejection(mesh.get(refs[0] as ObjectRef, { timeout: 1500 }))
      expect(err).toBeInstanceOf(GetTimeoutError)
      expect((err as Error).message).toMatch(/cannot be scheduled: it requires \{CPU: 64\}/)
      const lines = warn.mock.calls.map((c) => String(c[0])).filter((l) => l.includes("'huge'"))
      expect(lines).toHaveLength(1) // once for the shape, not once per task
      expect(lines[0]).toMatch(/task 'huge' \([0-9a-f]{48}\) cannot be scheduled: it requires \{CPU: 64\}/)
      for (const r of refs) await mesh.cancel(r)
    } finally {
      warn.mockRestore()
    }
  })

  it("listTasks has one row per attempt with Ray's errorType; free deletes at once and get says so", async () => {
    const flaky = mesh.remote(function flaky() {
      if ((self as unknown as { shoalContext: { attempt: number } }).shoalContext.attempt < 2) throw new Error('not yet')
      return 'ok'
    })
    const ref = flaky.options({ maxRetries: 2, retryExceptions: true }).remote()
    expect(await mesh.get(ref, { timeout: T })).toBe('ok')
    const rows = await mesh.state.listTasks({ filters: [['taskId', '=', ref.id.slice(0, 48)]] })
    expect(rows.map((r) => [r.attempt, r.state, r.errorType]).sort()).toEqual([
      [0, 'FAILED', 'TASK_EXECUTION_EXCEPTION'],
      [1, 'FAILED', 'TASK_EXECUTION_EXCEPTION'],
      [2, 'FINISHED', null],
    ])

    const big = await mesh.put(new Uint8Array(512 * 1024).fill(7))
    expect(await mesh.get(big)).toHaveLength(512 * 1024)
    await mesh.free([big])
    expect(await rejection(mesh.get(big))).toBeInstanceOf(ObjectFreedError)
    await eventually(
      async () => !(await mesh.state.listObjects()).some((o) => o.objectId === big.id && o.locations.length),
      'every copy gone',
    )
  })

  it('objects live while a task, an actor or a containing object needs them, and are freed once nothing does', async () => {
    const MiB = 1024 * 1024
    // A browser driver's put, passed nested in a list: the page lets go of its ref before the task reads it.
    const page = await cluster().driverPage()
    const fromPage = page.evaluate(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const m = window.refMesh = await connect()
      const reader = m.remote(async function reader(refs) {
        await new Promise((r) => setTimeout(r, 500))
        return (await self.shoal.get(refs[0])).byteLength
      })
      let big = await m.put(new Uint8Array(${2 * MiB}).fill(3))
      window.out = reader.remote([big])
      big = undefined
    })()`)
    await fromPage
    await cluster().collectGarbage()
    expect(await page.evaluate('window.refMesh.get(window.out)')).toBe(2 * MiB)

    // An actor that keeps a borrowed ref can read it after the driver let go of its own.
    const Keeper = mesh.remote(
      class Keeper {
        kept: ObjectRef<Uint8Array>[] = []
        keep(refs: ObjectRef<Uint8Array>[]) {
          this.kept.push(...refs)
        }
        async size() {
          const values = (await (self as unknown as { shoal: Mesh }).shoal.get(this.kept)) as Uint8Array[]
          return values.reduce((n, v) => n + v.byteLength, 0)
        }
      },
    )
    const keeper = Keeper.options({ numCpus: 0 }).remote()
    let held: ObjectRef<Uint8Array> | undefined = await mesh.put(new Uint8Array(MiB))
    const heldId = held.id
    await mesh.get(keeper.keep.remote([held]))
    held = undefined
    await cluster().collectGarbage()
    expect(await mesh.get(keeper.size.remote(), { timeout: T })).toBe(MiB)

    // Returned nested inside a result: alive while the result is; then everything is freed, the kept one with the actor.
    const maker = mesh.remote(async function maker() {
      return [await (self as unknown as { shoal: Mesh }).shoal.put(new Uint8Array(1024 * 1024).fill(1))]
    })
    let outer: ObjectRef | undefined = maker.remote()
    const [inner] = (await mesh.get(outer as ObjectRef<ObjectRef<Uint8Array>[]>, { timeout: T })) as ObjectRef<Uint8Array>[]
    const innerId = (inner as ObjectRef).id
    outer = undefined
    await cluster().collectGarbage()
    expect(await mesh.get(inner as ObjectRef<Uint8Array>)).toHaveLength(MiB)
    await mesh.kill(keeper)
    await page.evaluate('window.refMesh.close()')
    await cluster().collectGarbage()
    const ids = () => mesh.state.listObjects().then((rows) => new Set(rows.map((r) => r.objectId)))
    await eventually(async () => !(await ids()).has(heldId), "the actor's borrowed object to be freed after its kill")
    expect((await ids()).has(innerId)).toBe(true) // still referenced by `inner`
  })

  it('fractional CPUs come back exactly after many tasks (fixed point, as Ray)', async () => {
    const tenth = mesh.remote(function tenth() {
      return 0
    })
    await mesh.get(
      Array.from({ length: 100 }, () => tenth.options({ numCpus: 0.1 }).remote()),
      { timeout: T },
    )
    await eventually(
      async () =>
        (await mesh.state.listNodes()).filter((n) => n.state === 'ALIVE').every((n) => n.availableResources.CPU === n.resources.CPU),
      'every node whole',
    )
    for (const n of await mesh.state.listNodes()) if (n.state === 'ALIVE') expect(n.availableResources.CPU).toBe(2)
  })

  it('a job without a namespace has its own; an actor whose every handle is gone ends', async () => {
    const a = await cluster().connect()
    const b = await cluster().connect()
    expect(a.namespace).not.toBe(b.namespace)
    class Named {
      ping() {
        return 'pong'
      }
    }
    const first = a.remote(Named).options({ name: 'same-name', lifetime: 'detached', numCpus: 0 }).remote()
    const second = b.remote(Named).options({ name: 'same-name', lifetime: 'detached', numCpus: 0 }).remote()
    expect(await a.get(first.ping.remote())).toBe('pong')
    expect(await b.get(second.ping.remote())).toBe('pong')
    await a.kill(first)
    await b.kill(second)

    let handle: ActorHandle<Named> | undefined = a.remote(Named).options({ numCpus: 0 }).remote()
    const actorId = handle.actorId
    expect(await a.get(handle.ping.remote())).toBe('pong')
    handle = undefined
    await cluster().collectGarbage()
    await eventually(async () => {
      const [row] = await a.state.listActors({ filters: [['actorId', '=', actorId]] })
      return row?.state === 'DEAD' && /all references to the actor were removed/.test(row.deathCause ?? '')
    }, 'the unreferenced actor to end')
    await a.close()
    await b.close()
  })
})
