import type { WireError } from '../sdk/errors.ts'
import { objectIdOf, type TaskId } from '../sdk/ids.ts'
import type { Assignment, ClientMessage, FunctionDef, LargeArg, ObjectUpdate, ServerMessage, TaskResult } from '../sdk/protocol/index.ts'
import { allocate, fits, type ResourceUnits, release } from '../sdk/resources.ts'
import type { FramedTransport } from '../sdk/transport/framed.ts'
import { batchBytesFor, sizeOfValues, TurnBatch } from '../sdk/turn-batch.ts'
import type { ExecArg, ExecResult, ExecTask } from './executor.worker.ts'

/** A worker as the node sees it. */
export interface WorkerSlot {
  id: string
  jobId?: string
  actorId?: string
  busy: boolean
  /** The task it runs now, so a cancel or crash can name it. */
  taskId?: string
}

/** The node's workers (the browser's WorkerPool; the simulator's own). Every call ends in a result, never hangs. */
export interface NodeWorkers {
  readonly size: number
  acquire(jobId: string, taskId: string): WorkerSlot
  spawnForActor(actorId: string, jobId: string): WorkerSlot
  release(w: WorkerSlot): void
  terminate(w: WorkerSlot): void
  terminateAll(): void
  /**
   * Idle workers stop: those of an ended job that own nothing (no channel), and those whose channels are named (they
   * owned something, and no longer do). Their channels close.
   */
  retire(jobId: string | undefined, channels: readonly string[]): void
  byTask(taskId: string): WorkerSlot | undefined
  run(w: WorkerSlot, t: ExecTask & { source: string; funcName: string }): Promise<ExecResult>
  createActor(w: WorkerSlot, t: ExecTask & { source: string; className: string; maxConcurrency: number }): Promise<ExecResult>
  callActor(w: WorkerSlot, t: ExecTask & { method: string }): Promise<ExecResult>
  /** A frame from the coordinator for one of the workers' channels. */
  deliver(channel: string, frame: Uint8Array): void
  /** A worker died while it held work (it stopped itself, crashed): its task fails as a system error. */
  onCrash: (w: WorkerSlot, reason: string) => void
  /** A frame a worker sends to the coordinator. */
  onRelay: (channel: string, frame: Uint8Array) => void
  onChannelsClosed: (channels: string[]) => void
}

/** The node's objects: large arguments made local, large returns recorded, transfers the coordinator asks for. */
export interface NodeObjects {
  readonly used: number
  readonly spilledBytes: number
  /** Makes every large argument local and pinned. Throws ObjectLostError when no copy can be had. */
  acquire(args: LargeArg[]): Promise<void>
  release(args: LargeArg[]): void
  /** A worker wrote a large return to the store (`bytes` are kept hot in memory if given). */
  stored(id: string, size: number, bytes?: Uint8Array): void
  onChunk(id: string, offset: number, total: number, data: Uint8Array): void
  onObjects(updates: ObjectUpdate[]): void
  upload(id: string): Promise<void>
  delete(ids: string[]): Promise<void>
}

export interface NodeActivity {
  kind: 'registered' | 'task-start' | 'task-end' | 'disconnected' | 'actor' | 'store'
  text: string
}

/** An actor this node hosts: its worker and the calls waiting for a concurrency slot. */
interface HostedActor {
  worker: WorkerSlot
  maxConcurrency: number
  running: number
  queue: Assignment[]
  units: ResourceUnits
  /** Which incarnation this is (its creation's attempt). */
  attempt: number
}

const systemError = (code: string, name: string, message: string, data?: Record<string, unknown>): WireError => ({
  name,
  code,
  message,
  ...(data && { data }),
})

/**
 * The node (Ray's raylet): receives task assignments and runs them in its workers, hosts actors, carries its
 * workers' control traffic, and reports state changes and results in batches. Its own count of free resources
 * follows the same rules as the coordinator's view of it (sdk/resources.ts), so both agree on what runs.
 */
export class NodeAgent {
  readonly stats = { running: 0, finished: 0, failed: 0 }
  onActivity: (a: NodeActivity) => void = () => {}
  onClose: (reason: string) => void = () => {}

  private functions = new Map<string, FunctionDef>()
  private actors = new Map<string, HostedActor>()
  /** Normal tasks running now, so a crashed worker's task can be reported (and retried) instead of hanging. */
  private runningTasks = new Map<string, Assignment>()
  /** Running tasks waiting in get/wait: their resources are free here meanwhile (the coordinator does the same). */
  private blockedTasks = new Set<string>()
  /**
   * Tasks waiting for room here, started in arrival order. Every task goes through it: the coordinator's view of this
   * node can run ahead of the truth (a result, or a start, still in flight), so the node never starts more than its
   * own count of free resources allows — a node is never over-committed, whatever the coordinator believed.
   */
  private localQueue: Assignment[] = []
  /** What was in the queue at the last heartbeat: still there at the next one, it goes back to the coordinator. */
  private seenAtHeartbeat = new Set<Assignment>()
  /** This node's own count of free resources. */
  private free: ResourceUnits
  private readonly events = new TurnBatch<Extract<ClientMessage, { type: 'task-events' }>['events'][number]>(
    (events) => this.send({ type: 'task-events', events }),
    { maxItems: 5000 },
  )
  private readonly results = new TurnBatch<TaskResult>((results) => this.send({ type: 'task-results', results }), {
    maxBytes: () => batchBytesFor(this.transport.maxFrameBytes),
    sizeOf: (r) => sizeOfValues(r.ok ? r.returns : undefined),
  })
  private heartbeat: ReturnType<typeof setInterval> | undefined
  private stopped = false

  constructor(
    readonly nodeId: string,
    private readonly transport: FramedTransport,
    private readonly workers: NodeWorkers,
    private readonly objects: NodeObjects,
    total: ResourceUnits,
    heartbeatMs = 1000,
  ) {
    this.free = { ...total }
    workers.onCrash = (w, reason) => this.workerCrashed(w, reason)
    workers.onRelay = (channel, frame) => this.send({ type: 'relay-up', channel, frame })
    workers.onChannelsClosed = (channels) => this.send({ type: 'relay-close', channels })
    transport.onMessage = (m) => this.onMessage(m)
    transport.onClose = (reason) => this.stop(reason)
    // Batches are cut well under the limit; should one message still not fit, it is said, not lost in silence.
    transport.onTooLarge = (m, bytes) =>
      console.error(`[shoal node] a '${m.type}' message of ${bytes} bytes is over the frame limit; not sent`)
    if (heartbeatMs > 0) this.heartbeat = setInterval(() => this.sendHeartbeat(), heartbeatMs)
  }

  get workerCount(): number {
    return this.workers.size
  }

  /** What this node counts as free (for checks: it must agree with the coordinator's count once all work is done). */
  get freeUnits(): ResourceUnits {
    return { ...this.free }
  }

  sendHeartbeat(): void {
    const stuck = this.localQueue.filter((t) => this.seenAtHeartbeat.has(t))
    if (stuck.length) {
      this.localQueue = this.localQueue.filter((t) => !this.seenAtHeartbeat.has(t))
      this.send({ type: 'unqueued', tasks: stuck.map((t) => ({ taskId: t.taskId as never, attempt: t.attempt })) })
    }
    this.seenAtHeartbeat = new Set(this.localQueue)
    this.send({
      type: 'heartbeat',
      running: this.stats.running,
      workers: this.workers.size,
      storeUsed: this.objects.used,
      storeSpilled: this.objects.spilledBytes,
    })
  }

  /** Leaves the cluster: workers stop and the coordinator retries their tasks elsewhere. */
  stop(reason = 'stopped'): void {
    if (this.stopped) return
    this.stopped = true
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.workers.terminateAll()
    this.actors.clear()
    if (this.transport.isOpen) this.transport.close()
    this.onActivity({ kind: 'disconnected', text: `disconnected: ${reason}` })
    this.onClose(reason)
  }

  send(msg: ClientMessage): void {
    if (this.transport.isOpen) this.transport.send(msg)
  }

  /** Handles one message from the coordinator. */
  onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'assign':
        for (const f of msg.functions) this.functions.set(f.functionId, f)
        for (const t of msg.tasks) {
          // An actor's calls hold nothing of the node: they go to the actor's own queue at once.
          if (t.type === 'ACTOR_TASK') this.accept(t)
          else this.localQueue.push(t)
        }
        this.pumpLocalQueue()
        return
      case 'cancel-task':
        return this.cancel(msg.taskId)
      case 'kill-actor':
        if (this.dropActor(msg.actorId)) this.onActivity({ kind: 'actor', text: `actor ${msg.actorId.slice(0, 8)} killed` })
        return
      case 'relay-down':
        this.workers.deliver(msg.channel, msg.frame)
        return
      case 'retire-workers':
        this.workers.retire(msg.jobId, msg.channels)
        return
      case 'error':
        console.warn(`[shoal node] coordinator: ${msg.error.message}`)
        return
      case 'object-chunk':
        this.objects.onChunk(msg.objectId, msg.offset, msg.total, msg.data)
        return
      case 'upload-object':
        void this.objects.upload(msg.objectId)
        return
      case 'delete-objects':
        void this.objects.delete(msg.objectIds)
        return
      case 'objects':
        this.objects.onObjects(msg.objects)
        return
      case 'welcome':
      case 'reply':
      case 'warning':
        return
      default:
        msg satisfies never
    }
  }

  private cancel(taskId: string): void {
    const queued = this.localQueue.findIndex((t) => t.taskId === taskId)
    if (queued >= 0) {
      this.localQueue.splice(queued, 1)
      return
    }
    const w = this.workers.byTask(taskId)
    const t = this.runningTasks.get(taskId)
    if (!w || !t) return
    this.runningTasks.delete(taskId)
    this.workers.terminate(w)
    this.stats.running--
    this.releaseTask(t)
    this.pumpLocalQueue()
  }

  /**
   * Starts, in arrival order, every queued task that fits what is free now; one that does not fit does not hold back
   * those behind it (the coordinator may have reserved room for them already, and waits for them to finish).
   */
  private pumpLocalQueue(): void {
    if (!this.localQueue.length) return
    const waiting: Assignment[] = []
    for (const t of this.localQueue) {
      if (fits(t.units, this.free)) this.accept(t)
      else waiting.push(t)
    }
    this.localQueue = waiting
  }

  private accept(t: Assignment): void {
    if (t.type === 'ACTOR_TASK') {
      const a = this.actors.get(t.actorId as string)
      if (!a)
        return this.report(t, {
          ok: false,
          error: systemError('ACTOR_DIED', 'ActorDiedError', `actor ${t.actorId} is not on this node`, { actorId: t.actorId }),
          userError: false,
        })
      a.queue.push(t)
      this.pumpActor(a)
      if (a.queue.includes(t))
        this.events.push({
          taskId: t.taskId as never,
          attempt: t.attempt,
          state: 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY',
          time: Date.now(),
        })
      return
    }
    const fn = this.functions.get(t.functionId)
    if (!fn)
      return this.report(t, {
        ok: false,
        error: systemError('VALIDATION', 'ValidationError', `node has no function ${t.functionId}`),
        userError: false,
      })
    if (t.type === 'ACTOR_CREATION_TASK') {
      // A newer incarnation of an actor this node still hosts replaces the old one (never two at once).
      this.dropActor(t.actorId as string)
      const w = this.workers.spawnForActor(t.actorId as string, t.jobId)
      allocate(t.units, this.free)
      const maxConcurrency = t.actor?.maxConcurrency ?? 1
      this.actors.set(t.actorId as string, { worker: w, maxConcurrency, running: 0, queue: [], units: t.units, attempt: t.attempt })
      this.started(t, w)
      void this.withArgs(t, (args) =>
        this.workers.createActor(w, { ...this.execTask(t, args), source: fn.source, className: fn.name, maxConcurrency }),
      ).then((r) => {
        if (this.actors.get(t.actorId as string)?.worker !== w) return // killed, crashed or replaced meanwhile: settled
        this.finished(t, r)
        if (!r.ok) this.dropActor(t.actorId as string)
        else this.onActivity({ kind: 'actor', text: `actor ${fn.name} ${String(t.actorId).slice(0, 8)} is alive` })
      })
      return
    }
    const w = this.workers.acquire(t.jobId, t.taskId)
    allocate(t.units, this.free)
    this.runningTasks.set(t.taskId, t)
    this.started(t, w)
    void this.withArgs(t, (args) => this.workers.run(w, { ...this.execTask(t, args), source: fn.source, funcName: fn.name })).then((r) => {
      this.workers.release(w)
      if (!this.runningTasks.delete(t.taskId)) return // cancelled or crashed meanwhile: already settled
      this.releaseTask(t)
      this.finished(t, r)
      this.pumpLocalQueue()
    })
  }

  private pumpActor(a: HostedActor): void {
    while (a.running < a.maxConcurrency && a.queue.length) {
      const t = a.queue.shift() as Assignment
      a.running++
      this.started(t, a.worker)
      void this.withArgs(t, (args) => this.workers.callActor(a.worker, { ...this.execTask(t, args), method: t.method as string })).then(
        (r) => {
          if (this.actors.get(t.actorId as string) !== a) return // the actor died meanwhile: its calls were settled
          a.running--
          this.finished(t, r)
          this.pumpActor(a)
        },
      )
    }
  }

  /**
   * Runs `body` with the task's arguments ready for a worker: small ones copied out of the frame (a view would drag
   * the whole frame's buffer into the worker), large ones made local and pinned in the plasma store, then unpinned.
   * An argument that cannot be had fails the attempt as a system error (the coordinator retries it elsewhere).
   */
  private async withArgs(t: Assignment, body: (args: ExecArg[]) => Promise<ExecResult>): Promise<ExecResult> {
    const large = t.args.filter((a): a is LargeArg => !(a instanceof Uint8Array))
    try {
      if (large.length) await this.objects.acquire(large)
    } catch (e) {
      const err = e as { name?: string; code?: string; message?: string }
      return {
        ok: false,
        error: systemError(err.code ?? 'OBJECT_LOST', err.name ?? 'ObjectLostError', err.message ?? String(e)),
        userError: false,
      }
    }
    try {
      return await body(t.args.map((a) => (a instanceof Uint8Array ? a.slice() : { plasma: a.ref })))
    } finally {
      if (large.length) this.objects.release(large)
    }
  }

  private execTask(t: Assignment, args: ExecArg[]): ExecTask {
    return {
      taskId: t.taskId,
      attempt: t.attempt,
      jobId: t.jobId,
      namespace: t.namespace,
      name: t.name,
      args,
      numReturns: t.numReturns,
      ...(t.actorId && { actorId: t.actorId }),
    }
  }

  private started(t: Assignment, w: WorkerSlot): void {
    this.stats.running++
    this.events.push({ taskId: t.taskId as never, attempt: t.attempt, state: 'RUNNING', workerId: w.id as never, time: Date.now() })
    this.onActivity({ kind: 'task-start', text: `${t.name} started on worker ${w.id.slice(0, 8)}` })
  }

  private finished(t: Assignment, r: ExecResult): void {
    if (r.ok) {
      // Large returns were written to the plasma store by the worker: the store's index learns of them now.
      r.returns.forEach((x, i) => {
        if (!(x instanceof Uint8Array)) this.objects.stored(objectIdOf(t.taskId as TaskId, i + 1), x.stored, x.bytes)
      })
    }
    this.stats.running--
    if (r.ok) this.stats.finished++
    else this.stats.failed++
    this.report(t, r)
    this.onActivity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
  }

  private report(t: Assignment, r: ExecResult): void {
    const scope = r.scope && { scope: { channel: r.scope.channel, release: r.scope.release as never[] } }
    if (r.ok) {
      // Large returns stay here (in the store); the coordinator learns only their size.
      const returns = r.returns.map((x) => (x instanceof Uint8Array ? x : { stored: x.stored }))
      this.results.push({
        taskId: t.taskId as never,
        attempt: t.attempt,
        ok: true,
        returns,
        ...(r.nestedRefs?.length && { nestedRefs: r.nestedRefs as never[] }),
        ...scope,
      })
    } else this.results.push({ taskId: t.taskId as never, attempt: t.attempt, ok: false, error: r.error, userError: r.userError, ...scope })
  }

  /** A task started or stopped waiting in get/wait: lend its resources to the node meanwhile (Ray does this). */
  taskBlocked(taskId: string, blocked: boolean): void {
    const t = this.runningTasks.get(taskId)
    if (!t || this.blockedTasks.has(taskId) === blocked) return
    if (blocked) {
      this.blockedTasks.add(taskId)
      release(t.units, this.free)
    } else {
      this.blockedTasks.delete(taskId)
      allocate(t.units, this.free)
    }
    this.send({ type: 'task-blocked', taskId: taskId as never, attempt: t.attempt, blocked })
    if (blocked) this.pumpLocalQueue()
  }

  /** A task leaves: give back what it holds, unless it already lent it while blocked. */
  private releaseTask(t: Assignment): void {
    if (!this.blockedTasks.delete(t.taskId)) release(t.units, this.free)
  }

  /** Stops an actor's worker and gives back what it held. */
  private dropActor(actorId: string): boolean {
    const a = this.actors.get(actorId)
    if (!a) return false
    this.actors.delete(actorId)
    this.stats.running -= a.running
    release(a.units, this.free)
    this.workers.terminate(a.worker)
    this.pumpLocalQueue()
    return true
  }

  private workerCrashed(w: WorkerSlot, reason: string): void {
    const t = w.taskId ? this.runningTasks.get(w.taskId) : undefined
    if (t) {
      this.runningTasks.delete(t.taskId)
      this.releaseTask(t)
      this.finished(t, {
        ok: false,
        error: systemError('WORKER_CRASHED', 'WorkerCrashedError', `The worker running task ${t.taskId} died: ${reason}`, {
          taskId: t.taskId,
        }),
        userError: false,
      })
      this.pumpLocalQueue()
    }
    const hosted = w.actorId ? this.actors.get(w.actorId) : undefined
    if (hosted?.worker === w && this.dropActor(w.actorId as string))
      this.send({ type: 'actor-died', actorId: w.actorId as never, attempt: hosted.attempt, reason })
  }
}
