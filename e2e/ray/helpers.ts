/**
 * What Ray's own tests lean on (python/ray/_common/test_utils.py and the conftest fixtures), in our SDK's terms, so
 * the ported cases read like the originals. Classes and functions here are shipped to workers as source: each is
 * self-contained.
 */
import type { Mesh } from '../../sdk/index.ts'

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
export type RuntimeContext = { jobId: string; taskId: string; attempt: number; nodeId: string; workerId: string; actorId: string | null }
