import * as Comlink from 'comlink'
import { newWorkerId, type WorkerId } from '../sdk/ids.ts'
import type { ExecResult, ExecutorApi, ExecutorContext } from './executor.worker.ts'

/** One dedicated Web Worker. A worker belongs to one job from its first task on, and an actor's worker to that actor. */
export interface PooledWorker {
  id: WorkerId
  api: Comlink.Remote<ExecutorApi>
  worker: Worker
  jobId?: string
  actorId?: string
  busy: boolean
  /** The task it runs now, so a cancel or crash can name it. */
  taskId?: string
}

/**
 * The node's pool of workers (Ray's worker pool): idle workers are reused by the same job; a worker of another
 * job is replaced rather than reused, so one job's code never shares a worker with another's.
 */
export class WorkerPool {
  private workers: PooledWorker[] = []
  onCrash: (w: PooledWorker, reason: string) => void = () => {}

  constructor(
    private readonly ctx: Omit<ExecutorContext, 'workerId'>,
    private readonly prewarm: number,
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
  get busyCount(): number {
    return this.workers.filter((w) => w.busy).length
  }

  private spawn(): PooledWorker {
    const worker = new Worker(new URL('./executor.worker.ts', import.meta.url), { type: 'module', name: 'shoal-worker' })
    const id = newWorkerId()
    const api = Comlink.wrap<ExecutorApi>(worker)
    void api.init({ ...this.ctx, workerId: id }, Comlink.proxy(this.reserve), Comlink.proxy(this.blocked))
    const w: PooledWorker = { id, api, worker, busy: false }
    worker.addEventListener('error', (ev) => {
      ev.preventDefault()
      this.onCrash(w, `worker crashed: ${ev.message || 'uncaught error'}`)
      this.terminate(w)
    })
    this.workers.push(w)
    return w
  }

  /** An idle worker for this job: one it already used, else a fresh one, else one taken from another job. */
  acquire(jobId: string, taskId: string): PooledWorker {
    let w = this.workers.find((x) => !x.busy && !x.actorId && x.jobId === jobId)
    w ??= this.workers.find((x) => !x.busy && !x.actorId && x.jobId === undefined)
    if (!w) {
      const other = this.workers.find((x) => !x.busy && !x.actorId)
      if (other && this.workers.length >= this.prewarm) this.terminate(other)
      w = this.spawn()
    }
    w.busy = true
    w.jobId = jobId
    w.taskId = taskId
    return w
  }

  release(w: PooledWorker): void {
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

  byActor(actorId: string): PooledWorker | undefined {
    return this.workers.find((w) => w.actorId === actorId)
  }

  byTask(taskId: string): PooledWorker | undefined {
    return this.workers.find((w) => w.taskId === taskId)
  }

  /** Stops a worker at once (cancel, kill, crash); a replacement is spawned when needed. */
  terminate(w: PooledWorker): void {
    w.worker.terminate()
    w.api[Comlink.releaseProxy]()
    this.workers = this.workers.filter((x) => x !== w)
  }

  terminateAll(): void {
    for (const w of [...this.workers]) this.terminate(w)
  }
}

export type { ExecResult }
