import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ActorDiedError, type ActorHandle, type Mesh, TaskError, ValidationError } from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

// The seed's "lifecycle of an actor": the counter, the async service, the actor table owned by the coordinator.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect({ namespace: 'seed' })
})
// Actors hold their CPU until they die (as in Ray): each test kills what it made, or the next would wait for CPUs.
const made: ActorHandle[] = []
afterEach(async () => {
  for (const h of made.splice(0)) await mesh.kill(h).catch(() => {})
})
const keep = <T extends ActorHandle>(h: T): T => {
  made.push(h)
  return h
}

class MyCounter {
  counter = 0
  log: number[] = []
  async increment() {
    await new Promise((r) => setTimeout(r, 3000))
    this.counter += 1
  }
  getCounter() {
    return this.counter
  }
  push(i: number) {
    this.log.push(i)
    return this.log.length
  }
  getLog() {
    return this.log
  }
  fail(msg: string) {
    throw new RangeError(msg)
  }
}

describe('seed: actors', () => {
  it('the counter: two 3-second increments run one at a time (≥ 6 s), then getCounter is 2', async () => {
    const Counter = mesh.remote(MyCounter)
    const handle = keep(Counter.remote())
    const t0 = performance.now()
    expect(await mesh.get([handle.increment.remote(), handle.increment.remote()])).toEqual([undefined, undefined])
    expect(performance.now() - t0).toBeGreaterThanOrEqual(6000)
    expect(await mesh.get(handle.getCounter.remote())).toBe(2)
    // Calls from one caller run in submission order.
    const refs = Array.from({ length: 50 }, (_, i) => handle.push.remote(i))
    await mesh.get(refs)
    expect(await mesh.get(handle.getLog.remote())).toEqual(Array.from({ length: 50 }, (_, i) => i))
  })

  it('the async service: with maxConcurrency, two 3-second calls overlap', async () => {
    const Service = mesh.remote(
      class MyAsyncService {
        fixedState = 1
        async run() {
          await new Promise((r) => setTimeout(r, 3000))
          return this.fixedState
        }
      },
    )
    const svc = keep(Service.options({ maxConcurrency: 10 }).remote())
    await mesh.get(svc.ready() as never)
    const t0 = performance.now()
    expect(await mesh.get([svc.run.remote(), svc.run.remote()])).toEqual([1, 1])
    const elapsed = performance.now() - t0
    expect(elapsed).toBeGreaterThanOrEqual(2900)
    expect(elapsed).toBeLessThan(5500)
  })

  it('a throwing method rejects that call with TaskError; the actor lives on with its state', async () => {
    const c = keep(mesh.remote(MyCounter).remote())
    await mesh.get(c.push.remote(7))
    const err = await mesh.get(c.fail.remote('nope')).catch((e) => e)
    expect(err).toBeInstanceOf(TaskError)
    expect(err.remoteName).toBe('RangeError')
    expect(err.message).toContain('MyCounter.fail')
    expect(await mesh.get(c.getLog.remote())).toEqual([7])
  })

  it('a named detached actor outlives its creator and is reached from another connection; kill frees it', async () => {
    const creator = await cluster().connect()
    const h = creator.remote(MyCounter).options({ name: 'shared-counter', namespace: 'team', lifetime: 'detached' }).remote()
    await creator.get(h.push.remote(1))
    await creator.close()

    const other = await cluster().connect()
    const same = await other.getActor<MyCounter>('shared-counter', { namespace: 'team' })
    expect(await other.get(same.push.remote(2))).toBe(2)
    // `other` named no namespace: it has an anonymous one of its own (as in Ray), where the name is not found.
    await expect(other.getActor('shared-counter')).rejects.toThrow(/no actor named 'shared-counter' in namespace 'anonymous-/)

    const cpuBefore = (await other.state.listNodes()).reduce((n, r) => n + (r.availableResources.CPU ?? 0), 0)
    await other.kill(same)
    const err = await other.get(same.push.remote(3)).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/killed/)
    const [row] = await other.state.listActors({ filters: [['name', '=', 'shared-counter']] })
    expect(row?.state).toBe('DEAD')
    // The actor held 1 CPU until it died.
    await eventually(
      async () => (await other.state.listNodes()).reduce((n, r) => n + (r.availableResources.CPU ?? 0), 0) === cpuBefore + 1,
      'the CPU to be free',
    )
    await expect(other.getActor('shared-counter', { namespace: 'team' })).rejects.toThrow(ValidationError)
  })

  it('a non-detached actor dies with its job', async () => {
    const owner = await cluster().connect()
    const h = owner.remote(MyCounter).options({ name: 'ephemeral' }).remote()
    await owner.get(h.push.remote(1))
    const actorId = h.actorId
    await owner.close()
    await eventually(
      async () => (await mesh.state.listActors({ filters: [['actorId', '=', actorId]] }))[0]?.state === 'DEAD',
      'the actor to die with its job',
    )
    const [row] = await mesh.state.listActors({ filters: [['actorId', '=', actorId]] })
    expect(row?.deathCause).toMatch(/job ended/)
  })

  it('a name taken in a namespace is an error unless getIfExists', async () => {
    const A = mesh.remote(MyCounter)
    const first = keep(A.options({ name: 'unique' }).remote())
    await mesh.get(first.push.remote(1))
    const dup = A.options({ name: 'unique' }).remote()
    const err = await mesh.get(dup.push.remote(1)).catch((e) => e)
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err.message).toMatch(/already exists in namespace 'seed'/)
    expect(await mesh.get(dup.ready() as never).catch((e: Error) => e.name)).toBe('ValidationError')
    const again = A.options({ name: 'unique', getIfExists: true }).remote()
    expect(await mesh.get(again.push.remote(2))).toBe(2)
  })

  it('handles are values: a task receives one and calls it through self.shoal', async () => {
    const c = keep(mesh.remote(MyCounter).remote())
    const useCounter = mesh.remote(async function useCounter(counter: ActorHandle<MyCounter>, n: number) {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const refs = []
      for (let i = 0; i < n; i++) refs.push(counter.push.remote(i))
      return shoal.get(refs)
    })
    expect(await mesh.get(useCounter.remote(c, 3))).toEqual([1, 2, 3])
    expect(await mesh.get(c.getLog.remote())).toEqual([0, 1, 2])
  })

  it('lists actors with their states, and actor tasks in listTasks', async () => {
    const c = keep(mesh.remote(MyCounter).options({ name: 'listed' }).remote())
    await mesh.get(c.push.remote(1))
    const [row] = await mesh.state.listActors({ filters: [['name', '=', 'listed']] })
    expect(row).toMatchObject({ className: 'MyCounter', namespace: 'seed', state: 'ALIVE', jobId: mesh.jobId, restarts: 0 })
    expect(cluster().nodes.map((n) => n.nodeId)).toContain(row?.nodeId)
    const tasks = await mesh.state.listTasks({ filters: [['actorId', '=', c.actorId]] })
    expect(tasks.map((t) => t.type).sort()).toEqual(['ACTOR_CREATION_TASK', 'ACTOR_TASK'])
    expect(tasks.find((t) => t.type === 'ACTOR_TASK')?.funcOrClassName).toBe('MyCounter.push')
  })

  it('restarts an actor whose node died (maxRestarts), then dies when none are left', async () => {
    const extra = await cluster().addNode(1)
    const h = keep(
      mesh
        .remote(MyCounter)
        .options({ maxRestarts: 1, schedulingStrategy: { nodeId: extra.nodeId, soft: true } })
        .remote(),
    )
    await mesh.get(h.push.remote(1))
    expect((await mesh.state.listActors({ filters: [['actorId', '=', h.actorId]] }))[0]?.nodeId).toBe(extra.nodeId)
    await extra.close()
    // A fresh instance on another node: state starts over, as in Ray.
    expect(await eventually(() => mesh.get(h.getLog.remote(), { timeout: 5000 }), 'the restarted actor to answer')).toEqual([])
    const [row] = await mesh.state.listActors({ filters: [['actorId', '=', h.actorId]] })
    expect(row).toMatchObject({ state: 'ALIVE', restarts: 1 })
  })
})
