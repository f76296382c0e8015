/**
 * What Ray's own tests lean on (python/ray/_common/test_utils.py and the conftest fixtures), in our SDK's terms, so
 * the ported cases read like the originals, and the set-up the specs share. SignalActor and Semaphore are shipped to
 * workers as source: each is self-contained.
 */
import { afterEach, expect } from 'vitest'
import { type ActorHandle, ActorHandleBase, type Mesh, type ObjectRef, WorkerCrashedError } from '../../sdk/index.ts'
import type { TestCluster } from '../fixtures/cluster.ts'

/**
 * Ray's SignalActor: `wait()` blocks until `send()`. Ray's async actors default to max_concurrency 1000; ours to 1
 * (see the README), so every use of it says `maxConcurrency` — {@link signalActor} does.
 */
export class SignalActor {
  numWaiters = 0
  ready: Promise<void>
  release: () => void = () => {}
  constructor() {
    this.ready = new Promise((r) => {
      this.release = r
    })
  }
  send(clear = false) {
    this.release()
    if (clear) {
      this.ready = new Promise((r) => {
        this.release = r
      })
    }
  }
  async wait(shouldWait = true) {
    if (!shouldWait) return
    this.numWaiters += 1
    await this.ready
    this.numWaiters -= 1
  }
  curNumWaiters() {
    return this.numWaiters
  }
}

/** Ray's Semaphore test actor: `acquire()` blocks while the count is zero. */
export class Semaphore {
  value: number
  waiters: (() => void)[] = []
  constructor(value = 1) {
    this.value = value
  }
  async acquire() {
    while (this.value <= 0) await new Promise<void>((r) => this.waiters.push(r))
    this.value -= 1
  }
  release() {
    this.value += 1
    this.waiters.shift()?.()
  }
  locked() {
    return this.value <= 0
  }
}

/** `SignalActor.options(num_cpus=0).remote()` as Ray's tests make it: it must never hold a CPU or block its callers. */
export function signalActor(mesh: Mesh) {
  return mesh.remote(SignalActor).options({ maxConcurrency: 1000, numCpus: 0 }).remote()
}

export function semaphore(mesh: Mesh, value = 1) {
  return mesh.remote(Semaphore).options({ maxConcurrency: 1000, numCpus: 0 }).remote(value)
}

/** Ray's `wait_for_condition`: polls until `fn` is truthy, or fails naming what it waited for. */
export async function waitForCondition(fn: () => unknown | Promise<unknown>, what = 'the condition', timeoutMs = 20_000) {
  const end = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < end) {
    try {
      if (await fn()) return
    } catch (e) {
      last = e
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
}

/** `ray.get_runtime_context()` inside a task or actor method. */
export type { RuntimeContext } from '../../sdk/protocol/index.ts'

// Set-up the specs share. None of it may be called from a task or an actor method (those ship as source, alone).

/** Ray's `put_object(obj, use_ray_put)`: cases cover both ways an object is made (`_put` ships: self-contained). */
export function putObject<T>(m: Mesh, value: T, useRayPut: boolean): Promise<ObjectRef<T>> | ObjectRef<T> {
  if (useRayPut) return m.put(value)
  return m
    .remote(function _put(obj: T) {
      return obj
    })
    .remote(value) as ObjectRef<T>
}

/** A task that crashed its worker must fail with WorkerCrashedError, within 15 s so a hang fails the case only. */
export async function expectWorkerCrashed(m: Mesh, ref: ObjectRef): Promise<void> {
  const err = await m.get(ref, { timeout: 15_000 }).catch((e: unknown) => e)
  expect((err as { code?: string } | null)?.code, String(err)).toBe('WORKER_CRASHED')
  expect(err).toBeInstanceOf(WorkerCrashedError)
}

/** What a failed call rejects with, typed so that cases can check the SDK's `code`, `remoteName` and `cause`. */
export type Failure = Error & { code?: string; remoteName?: string; cause?: unknown }

/** The error a promise rejects with; throws if it resolves, so that no check on the error passes without one. */
export async function rejection(p: Promise<unknown>): Promise<Failure> {
  try {
    await p
  } catch (e) {
    return e as Failure
  }
  throw new Error('expected a rejection, but the promise resolved')
}

/** Kills every live actor (nested, other drivers' too): the cluster is shared, so a test must leave none behind. */
async function killAllActors(mesh: Mesh): Promise<void> {
  for (const a of await mesh.state.listActors()) {
    if (a.state !== 'DEAD') await mesh.kill(new ActorHandleBase(a.actorId as never, a.className, [], mesh)).catch(() => {})
  }
}

/** Actors hold a CPU until they die: after each test, kills those given to `keep` (with `everyActor`, all). */
export function useActorCleanup(mesh: () => Mesh, opts: { everyActor?: boolean } = {}) {
  const made: ActorHandle[] = []
  afterEach(async () => {
    const m = mesh()
    for (const h of made.splice(0)) await m.kill(h).catch(() => {})
    if (opts.everyActor) await killAllActors(m)
  })
  return <T extends ActorHandle>(h: T): T => {
    made.push(h)
    return h
  }
}

/**
 * Waits until no live node has a CPU held, read through `mesh`. Ray's cluster fixtures give each case a fresh cluster;
 * ours share one per file, where a lease the last case's owner let go of lingers a moment (LEASE_LINGER_MS).
 */
export function waitForFreeCpus(mesh: Mesh, when: string): Promise<void> {
  return waitForCondition(
    async () => (await mesh.state.listNodes()).every((n) => n.state === 'DEAD' || n.availableResources.CPU === n.resources.CPU),
    `every CPU to be free ${when}`,
    15_000,
  )
}

/** A job per test, closed after it (cancelling its tasks, killing its actors), as Ray gives each case its `ray.init`. */
export function useJobPerTest(cluster: () => TestCluster, opts: { waitForFreeCpus?: () => Mesh } = {}) {
  const jobs: Mesh[] = []
  afterEach(async () => {
    for (const m of jobs.splice(0)) await m.close()
    // With `waitForFreeCpus` (read through that connection): what a test left must not hold CPUs in the next one.
    const mesh = opts.waitForFreeCpus?.()
    if (mesh) await waitForFreeCpus(mesh, 'after the test').catch((e: Error) => console.warn(e.message))
  })
  return async (connectOpts?: Parameters<TestCluster['connect']>[0]): Promise<Mesh> => {
    const m = await cluster().connect(connectOpts)
    jobs.push(m)
    return m
  }
}

/** Ray's `os.kill(pid, SIGKILL)`: closes from outside the Web Worker with this worker id or hosting this actor. */
export async function killWorker(cluster: TestCluster, which: { workerId: string } | { actorId: string }): Promise<void> {
  const [key, id] = 'workerId' in which ? ['workerId', which.workerId] : ['actorId', which.actorId]
  for (const n of cluster.nodes) {
    for (const w of n.page.workers()) {
      const mine = await w.evaluate(`self.shoalContext?.${key} === ${JSON.stringify(id)}`).catch(() => false)
      if (!mine) continue
      await w.evaluate('setTimeout(() => self.close(), 0); 0').catch(() => {})
      return
    }
  }
  throw new Error(`no live worker with ${key} ${id}`)
}
