import * as Comlink from 'comlink'
import { newWorkerId } from '../sdk/ids.ts'
import type { BatchItem, ExecResult, ExecTask, ExecutorApi, ExecutorContext } from '../sdk/protocol/index.ts'
import { isWorkerToPage, type PageToWorker } from '../sdk/protocol/index.ts'
import type { NodeWorkers, WorkerSlot } from './node/ports.ts'

/** One dedicated Web Worker. A worker belongs to one job from its first task on, and an actor's worker to that actor. */
export interface PooledWorker extends WorkerSlot {
  api: Comlink.Remote<ExecutorApi<MessagePort>>
  worker: Worker
  /** Frames from the coordinator for this worker's channels go here. */
  down: MessagePort
  /** This worker's relay channels (one per job it served). */
  channels: Set<string>
  /** Stopped on purpose (cancel, kill, job change): its death is not a crash. */
  stopping: boolean
}

/**
 * The node's pool of workers (Ray's worker pool): idle workers are reused by the same job; a worker of another
 * job is replaced rather than reused, so one job's code never shares a worker with another's. A worker that dies
 * while it works (it called `self.close()`, it crashed) is reported through `onCrash`, never left to hang a task.
 */
export class WorkerPool implements NodeWorkers {
  private workers: PooledWorker[] = []
  onCrash: (w: WorkerSlot, reason: string) => void = () => {}
  onRelay: (channel: string, frame: Uint8Array) => void = () => {}
  onChannelsClosed: (channels: string[]) => void = () => {}
  /** A running batch's first results, ahead of the rest (see runMany). */
  onBatchResults: (w: WorkerSlot, from: number, results: ExecResult[]) => void = () => {}

  constructor(
    private readonly ctx: Omit<ExecutorContext, 'workerId'>,
    private prewarm: number,
    /** Makes room in the plasma store before a worker writes a large result into it. */
    private readonly reserve: (bytes: number) => Promise<void>,
    /** A task in a worker started or stopped waiting in get/wait. */
    private readonly blocked: (taskId: string, blocked: boolean) => void,
  ) {
    for (let i = 0; i < prewarm; i++) this.spawn()
  }

  get size(): number {
    return this.workers.length
  }

  private spawn(): PooledWorker {
    const worker = new Worker(new URL('./executor.worker.ts', import.meta.url), { type: 'module', name: 'shoal-worker' })
    const id = newWorkerId()
    const api = Comlink.wrap<ExecutorApi<MessagePort>>(worker)
    const { port1: down, port2: workerDown } = new MessageChannel()
    const w: PooledWorker = { id, api, worker, down, channels: new Set(), busy: false, stopping: false }
    const lockName = `shoal-worker-${id}`
    void api
      .init(
        { ...this.ctx, workerId: id },
        Comlink.transfer(workerDown, [workerDown]),
        lockName,
        Comlink.proxy(this.reserve),
        Comlink.proxy(this.blocked),
      )
      .then(() => this.watch(w, lockName))
      .catch(() => {})
    worker.addEventListener('message', (ev) => {
      const m = ev.data
      if (!isWorkerToPage(m)) return
      if (m.__shoal === 'up') {
        w.channels.add(m.channel)
        this.onRelay(m.channel, m.frame)
      } else if (m.__shoal === 'close') {
        w.channels.delete(m.channel)
        this.onChannelsClosed([m.channel])
      } else if (m.__shoal === 'results') this.onBatchResults(w, m.from, m.results as ExecResult[])
      else this.died(w, m.reason)
    })
    worker.addEventListener('error', (ev) => {
      ev.preventDefault()
      this.died(w, `uncaught error: ${ev.message || 'unknown'}`)
    })
    this.workers.push(w)
    return w
  }

  /**
   * Waits on the worker's life lock (see holdLifeLock in the executor): it is granted here only when the worker is
   * gone. Without Web Locks (a page not on https or localhost) only `self.close()` and uncaught errors are seen.
   */
  private watch(w: PooledWorker, lockName: string): void {
    const locks = (navigator as { locks?: LockManager }).locks
    void locks?.request(lockName, () => this.died(w, 'it stopped (self.close(), out of memory, or a crash)'))
  }

  private died(w: PooledWorker, reason: string): void {
    if (w.stopping) return
    this.onCrash(w, `its worker died: ${reason}`)
    this.terminate(w)
  }

  /**
   * An idle worker for this job: one it already used, else a fresh one. An idle worker of another live job is
   * replaced only if it owns nothing (no channel): what a worker made and what it submitted share its fate (as in
   * Ray), so a worker that owns things lives until its job ends.
   */
  acquire(jobId: string, taskId: string): PooledWorker {
    let w = this.workers.find((x) => !x.busy && !x.actorId && x.jobId === jobId)
    w ??= this.workers.find((x) => !x.busy && !x.actorId && x.jobId === undefined)
    if (!w) {
      const other = this.workers.find((x) => !x.busy && !x.actorId && !x.channels.size)
      if (other && this.workers.length >= this.prewarm) this.terminate(other)
      w = this.spawn()
    }
    w.busy = true
    w.jobId = jobId
    w.taskId = taskId
    return w
  }

  release(w: WorkerSlot): void {
    w.busy = false
    w.taskId = undefined
  }

  /** A worker of its own for an actor, for the actor's whole life. */
  spawnForActor(actorId: string, jobId: string): PooledWorker {
    const w = this.spawn()
    w.actorId = actorId
    w.jobId = jobId
    w.busy = true
    return w
  }

  run(w: WorkerSlot, t: ExecTask & { source: string; funcName: string }): Promise<ExecResult> {
    return this.call(w, (api) => api.run(t))
  }

  /**
   * Several short tasks in one message. The results of the first may come ahead through `onBatchResults`; this
   * resolves with the rest (`from` is the index of the first). A failure to call the worker fails those not come yet.
   */
  async runMany(w: WorkerSlot, ts: BatchItem[]): Promise<{ from: number; results: ExecResult[] }> {
    try {
      return await (w as PooledWorker).api.runMany(ts)
    } catch (e) {
      const reason = `the worker could not run them: ${(e as Error).message ?? String(e)}`
      const failed: ExecResult = {
        ok: false,
        error: { name: 'WorkerCrashedError', code: 'WORKER_CRASHED', message: reason },
        userError: false,
      }
      return { from: -1, results: ts.map(() => failed) }
    }
  }

  createActor(w: WorkerSlot, t: ExecTask & { source: string; className: string; maxConcurrency: number }): Promise<ExecResult> {
    return this.call(w, (api) => api.createActor(t))
  }

  callActor(w: WorkerSlot, t: ExecTask & { method: string }): Promise<ExecResult> {
    return this.call(w, (api) => api.callActor(t))
  }

  /** A call into a worker always ends in a result: a failure to call it (it died, its reply could not cross) too. */
  private async call(w: WorkerSlot, f: (api: Comlink.Remote<ExecutorApi<MessagePort>>) => Promise<ExecResult>): Promise<ExecResult> {
    try {
      return await f((w as PooledWorker).api)
    } catch (e) {
      const reason = `the worker could not run it: ${(e as Error).message ?? String(e)}`
      return { ok: false, error: { name: 'WorkerCrashedError', code: 'WORKER_CRASHED', message: reason }, userError: false }
    }
  }

  /** A frame from the coordinator for one of the workers' channels. */
  deliver(channel: string, frame: Uint8Array): void {
    const w = this.workers.find((x) => x.channels.has(channel))
    if (!w) return
    const own = frame.slice() // moved to the worker, not cloned with the whole frame it came in
    w.down.postMessage({ channel, frame: own } satisfies PageToWorker, [own.buffer])
  }

  /** Stops a worker at once (cancel, kill, crash); a replacement is spawned when needed. Its channels close. */
  terminate(w: WorkerSlot): void {
    const p = w as PooledWorker
    if (!this.workers.includes(p)) return
    p.stopping = true
    p.worker.terminate()
    p.api[Comlink.releaseProxy]()
    p.down.close()
    this.workers = this.workers.filter((x) => x !== p)
    if (p.channels.size) this.onChannelsClosed([...p.channels])
    p.channels.clear()
  }

  /**
   * The node gives `cpus` now: that many workers are kept ready. Fewer: idle workers that hold nothing stop now (busy
   * ones and actors' finish what they do; acquire replaces rather than adds past the count). More: new ones start.
   */
  resize(cpus: number): void {
    this.prewarm = Math.max(1, Math.ceil(cpus))
    for (const w of [...this.workers]) {
      if (this.workers.length <= this.prewarm) break
      if (!w.busy && !w.actorId && !w.channels.size) this.terminate(w)
    }
    while (this.workers.filter((w) => !w.actorId).length < this.prewarm) this.spawn()
  }

  terminateAll(): void {
    for (const w of [...this.workers]) this.terminate(w)
  }

  retire(jobId: string | undefined, channels: readonly string[]): void {
    for (const w of [...this.workers]) {
      if (w.busy || w.actorId) continue
      const owesNothing = w.jobId === jobId && !w.channels.size
      if (owesNothing || channels.some((c) => w.channels.has(c))) this.terminate(w)
    }
  }
}

export type { ExecResult }
