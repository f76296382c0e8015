import { ConnectionError, fromWireError, toWireError, type WireError } from '../sdk/errors.ts'
import { objectIdOf, type TaskId } from '../sdk/ids.ts'
import {
  type Assignment,
  type ClientMessage,
  type FunctionDef,
  type LargeArg,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TaskResult,
} from '../sdk/protocol.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import { ControlSocket } from '../sdk/transport/websocket.ts'
import type { ExecArg } from './executor.worker.ts'
import { ObjectManager } from './object-manager.ts'
import { PlasmaStore } from './object-store/plasma-store.ts'
import { type ExecResult, type PooledWorker, WorkerPool } from './worker-pool.ts'

export interface NodeConfig {
  address: string
  cpus: number
  token?: string
  name?: string
  objectStoreMemory: number
  resources?: Record<string, number>
}

export interface NodeActivity {
  kind: 'registered' | 'task-start' | 'task-end' | 'disconnected' | 'actor' | 'store'
  text: string
}

/** An actor this node hosts: its worker and the calls waiting for a concurrency slot. */
interface HostedActor {
  worker: PooledWorker
  maxConcurrency: number
  running: number
  queue: Assignment[]
  resources: Record<string, number>
}

function fitsIn(req: Record<string, number>, have: Record<string, number>): boolean {
  for (const k in req) if ((req[k] as number) > 0 && (have[k] ?? 0) < (req[k] as number) - 1e-9) return false
  return true
}

/**
 * The node (Ray's raylet): registers with the coordinator, heartbeats, receives task assignments and runs them in
 * its worker pool, hosts actors, and reports state changes and results in batches.
 */
export class NodeAgent {
  nodeId: string | undefined
  iceServers: { urls: string | string[]; username?: string; credential?: string }[] = []
  peerjsPath = '/peerjs'
  readonly stats = { running: 0, finished: 0, failed: 0 }
  onActivity: (a: NodeActivity) => void = () => {}
  onClose: (reason: string) => void = () => {}

  private socket: ControlSocket | undefined
  private pool: WorkerPool | undefined
  /** The plasma store and the object manager, from registration on. */
  store: PlasmaStore | undefined
  private objects: ObjectManager | undefined
  /** The data plane, once the page has joined the PeerJS mesh. */
  peers: PeerMesh | undefined
  private functions = new Map<string, FunctionDef>()
  private actors = new Map<string, HostedActor>()
  /** Normal tasks running now, so a crashed worker's task can be reported (and retried) instead of hanging. */
  private runningTasks = new Map<string, Assignment>()
  /** Running tasks waiting in get/wait: their resources are free here meanwhile (the coordinator does the same). */
  private blockedTasks = new Set<string>()
  /** Pipelined tasks waiting for a free slot here, started in arrival order (the coordinator promotes them alike). */
  private localQueue: Assignment[] = []
  /** This node's own count of free resources; tasks the coordinator sent with resources start regardless. */
  private free: Record<string, number> = {}
  private events: Extract<ClientMessage, { type: 'task-events' }>['events'] = []
  private results: TaskResult[] = []
  private flushScheduled = false
  private heartbeat: ReturnType<typeof setInterval> | undefined

  constructor(readonly config: NodeConfig) {}

  async start(): Promise<string> {
    const { address, cpus, token, name, objectStoreMemory, resources } = this.config
    const socket = await ControlSocket.open(`${address.replace(/^http/, 'ws')}/ws`, 10_000)
    const welcome = await new Promise<Extract<ServerMessage, { type: 'welcome' }>>((resolve, reject) => {
      socket.onMessage = (m) => {
        if (m.type === 'welcome') resolve(m)
        else if ((m.type === 'reply' && !m.ok) || m.type === 'error') reject(fromWireError(m.error))
      }
      socket.onClose = (reason) => reject(new ConnectionError(`the coordinator closed the connection: ${reason}`))
      socket.send({
        type: 'hello',
        reqId: 0,
        protocol: PROTOCOL_VERSION,
        role: 'node',
        ...(token && { token }),
        node: { resources: { CPU: cpus, ...resources }, objectStoreMemory, ...(name && { name }), userAgent: navigator.userAgent },
      })
    })
    this.socket = socket
    this.free = { CPU: cpus, ...resources }
    this.nodeId = welcome.nodeId as string
    this.iceServers = welcome.iceServers
    this.peerjsPath = welcome.peerjsPath
    // The coordinator may assign work the moment it welcomes us: hold it until the store and pool exist.
    const early: ServerMessage[] = []
    socket.onMessage = (m) => early.push(m)
    const store = await PlasmaStore.open(this.nodeId, objectStoreMemory)
    this.store = store
    store.onSpilled = (ids, spilled, line) => {
      this.send({ type: 'objects-spilled', objectIds: ids as never[], spilled, ...(line && { log: line }) })
      if (line) {
        console.info(`[shoal node] ${line}`)
        this.onActivity({ kind: 'store', text: line })
      }
    }
    this.objects = new ObjectManager(
      store,
      this.nodeId,
      () => this.peers,
      (m) => this.send(m),
      () => socket.bufferedAmount,
    )
    this.pool = new WorkerPool(
      { nodeId: this.nodeId, address, storeCapacity: objectStoreMemory, ...(token && { token }) },
      Math.max(1, Math.ceil(cpus)),
      (bytes) => store.reserve(bytes),
      (taskId, blocked) => this.taskBlocked(taskId, blocked),
    )
    this.pool.onCrash = (w, reason) => this.workerCrashed(w, reason)
    socket.onMessage = (m) => this.onMessage(m)
    for (const m of early) this.onMessage(m)
    socket.onClose = (reason) => this.stop(reason)
    this.heartbeat = setInterval(
      () =>
        this.send({
          type: 'heartbeat',
          running: this.stats.running,
          workers: this.pool?.size ?? 0,
          storeUsed: store.used,
          storeSpilled: store.spilledBytes,
        }),
      1000,
    )
    this.onActivity({ kind: 'registered', text: `registered as ${this.nodeId.slice(0, 8)} with ${cpus} CPU` })
    return this.nodeId
  }

  get workers(): number {
    return this.pool?.size ?? 0
  }

  /** Leaves the cluster: workers stop and the coordinator retries their tasks elsewhere. */
  stop(reason = 'stopped'): void {
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.heartbeat = undefined
    this.pool?.terminateAll()
    this.actors.clear()
    if (this.socket?.isOpen) this.socket.close()
    this.socket = undefined
    this.onActivity({ kind: 'disconnected', text: `disconnected: ${reason}` })
    this.onClose(reason)
  }

  private send(msg: ClientMessage): void {
    if (this.socket?.isOpen) this.socket.send(msg)
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'assign':
        for (const f of msg.functions) this.functions.set(f.functionId, f)
        for (const t of msg.tasks) {
          if (t.queued) this.localQueue.push(t)
          else this.accept(t)
        }
        this.pumpLocalQueue()
        return
      case 'cancel-task': {
        const queued = this.localQueue.findIndex((t) => t.taskId === msg.taskId)
        if (queued >= 0) {
          this.localQueue.splice(queued, 1)
          return
        }
        const w = this.pool?.byTask(msg.taskId)
        const t = this.runningTasks.get(msg.taskId)
        if (w && t) {
          this.runningTasks.delete(msg.taskId)
          this.pool?.terminate(w)
          this.stats.running--
          this.releaseTask(t)
          this.pumpLocalQueue()
        }
        return
      }
      case 'kill-actor':
        if (this.dropActor(msg.actorId)) this.onActivity({ kind: 'actor', text: `actor ${msg.actorId.slice(0, 8)} killed` })
        return
      case 'error':
        console.warn(`[shoal node] coordinator: ${msg.error.message}`)
        return
      case 'object-chunk':
        this.objects?.onChunk(msg.objectId, msg.offset, msg.total, msg.data)
        return
      case 'upload-object':
        void this.objects?.upload(msg.objectId)
        return
      case 'delete-objects':
        void this.objects?.delete(msg.objectIds)
        return
      case 'objects':
        this.objects?.onObjects(msg.objects)
        return
      case 'welcome':
      case 'reply':
        return
      default:
        msg satisfies never
    }
  }

  private pumpLocalQueue(): void {
    while (this.localQueue.length && fitsIn((this.localQueue[0] as Assignment).resources, this.free)) {
      this.accept(this.localQueue.shift() as Assignment)
    }
  }

  private hold(res: Record<string, number>, sign: 1 | -1): void {
    for (const k in res) this.free[k] = (this.free[k] ?? 0) - sign * (res[k] as number)
  }

  private accept(t: Assignment): void {
    if (t.type === 'ACTOR_TASK') {
      const a = this.actors.get(t.actorId as string)
      if (!a)
        return this.report(t, {
          ok: false,
          error: {
            name: 'ActorDiedError',
            code: 'ACTOR_DIED',
            message: `actor ${t.actorId} is not on this node`,
            data: { actorId: t.actorId },
          },
          userError: false,
        })
      a.queue.push(t)
      return this.pumpActor(a)
    }
    const fn = this.functions.get(t.functionId)
    if (!fn)
      return this.report(t, {
        ok: false,
        error: { name: 'ValidationError', code: 'VALIDATION', message: `node has no function ${t.functionId}` },
        userError: false,
      })
    const pool = this.pool as WorkerPool
    if (t.type === 'ACTOR_CREATION_TASK') {
      const w = pool.spawnForActor(t.actorId as string, t.jobId)
      this.hold(t.resources, 1)
      this.actors.set(t.actorId as string, {
        worker: w,
        maxConcurrency: t.actor?.maxConcurrency ?? 1,
        running: 0,
        queue: [],
        resources: t.resources,
      })
      this.started(t, w)
      void this.withArgs(t, (args) => w.api.createActor({ ...this.execTask(t, args), source: fn.source, className: fn.name })).then((r) => {
        this.finished(t, r)
        if (!r.ok) this.dropActor(t.actorId as string)
        else this.onActivity({ kind: 'actor', text: `actor ${fn.name} ${String(t.actorId).slice(0, 8)} is alive` })
      })
      return
    }
    const w = pool.acquire(t.jobId, t.taskId)
    this.hold(t.resources, 1)
    this.runningTasks.set(t.taskId, t)
    this.started(t, w)
    void this.withArgs(t, (args) => w.api.run({ ...this.execTask(t, args), source: fn.source, funcName: fn.name })).then((r) => {
      pool.release(w)
      if (!this.runningTasks.delete(t.taskId)) return // cancelled meanwhile
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
      void this.withArgs(t, (args) => a.worker.api.callActor({ ...this.execTask(t, args), method: t.method as string })).then((r) => {
        a.running--
        this.finished(t, r)
        this.pumpActor(a)
      })
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
      if (large.length) await this.objects?.acquire(large)
    } catch (e) {
      return { ok: false, error: toWireError(e), userError: false }
    }
    try {
      return await body(t.args.map((a) => (a instanceof Uint8Array ? a.slice() : { plasma: a.ref })))
    } finally {
      if (large.length) this.objects?.release(large)
    }
  }

  private execTask(t: Assignment, args: ExecArg[]) {
    return {
      taskId: t.taskId,
      attempt: t.attempt,
      jobId: t.jobId,
      name: t.name,
      args,
      numReturns: t.numReturns,
      ...(t.actorId && { actorId: t.actorId }),
    }
  }

  private started(t: Assignment, w: PooledWorker): void {
    this.stats.running++
    this.events.push({ taskId: t.taskId, attempt: t.attempt, state: 'RUNNING', workerId: w.id, time: Date.now() })
    this.scheduleFlush()
    this.onActivity({ kind: 'task-start', text: `${t.name} started on worker ${w.id.slice(0, 8)}` })
  }

  private finished(t: Assignment, r: ExecResult): void {
    if (r.ok) {
      // Large returns were written to the plasma store by the worker: the store's index learns of them now.
      r.returns.forEach((x, i) => {
        if (!(x instanceof Uint8Array)) this.store?.noteStored(objectIdOf(t.taskId as TaskId, i + 1), x.stored, x.bytes)
      })
    }
    this.stats.running--
    if (r.ok) this.stats.finished++
    else this.stats.failed++
    this.report(t, r)
    this.onActivity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
  }

  private report(t: Assignment, r: ExecResult): void {
    if (r.ok) {
      // Large returns stay here (in the store); the coordinator learns only their size.
      const returns = r.returns.map((x) => (x instanceof Uint8Array ? x : { stored: x.stored }))
      this.results.push({
        taskId: t.taskId,
        attempt: t.attempt,
        ok: true,
        returns,
        ...(r.nestedRefs?.length && { nestedRefs: r.nestedRefs as never[] }),
      })
    } else {
      const error: WireError = r.userError
        ? {
            name: 'TaskError',
            code: 'TASK_ERROR',
            message: `Task '${t.name}' (${t.taskId}) failed: ${r.error.name}: ${r.error.message}`,
            ...(r.error.stack && { stack: r.error.stack }),
            data: {
              taskName: t.name,
              taskId: t.taskId,
              remoteName: r.error.name,
              remoteMessage: r.error.message,
              remoteStack: r.error.stack,
            },
          }
        : r.error
      this.results.push({ taskId: t.taskId, attempt: t.attempt, ok: false, error, userError: r.userError })
    }
    this.scheduleFlush()
  }

  /** A task started or stopped waiting in get/wait: lend its resources to the node meanwhile (Ray does this). */
  private taskBlocked(taskId: string, blocked: boolean): void {
    const t = this.runningTasks.get(taskId)
    if (!t || this.blockedTasks.has(taskId) === blocked) return
    if (blocked) this.blockedTasks.add(taskId)
    else this.blockedTasks.delete(taskId)
    this.hold(t.resources, blocked ? -1 : 1)
    this.send({ type: 'task-blocked', taskId: taskId as never, attempt: t.attempt, blocked })
    if (blocked) this.pumpLocalQueue()
  }

  /** A task leaves: give back what it holds, unless it already lent it while blocked. */
  private releaseTask(t: Assignment): void {
    if (!this.blockedTasks.delete(t.taskId)) this.hold(t.resources, -1)
  }

  /** Stops an actor's worker and gives back what it held. */
  private dropActor(actorId: string): boolean {
    const a = this.actors.get(actorId)
    if (!a) return false
    this.actors.delete(actorId)
    this.stats.running -= a.running
    this.hold(a.resources, -1)
    this.pool?.terminate(a.worker)
    this.pumpLocalQueue()
    return true
  }

  private workerCrashed(w: PooledWorker, reason: string): void {
    const t = w.taskId ? this.runningTasks.get(w.taskId) : undefined
    if (t) {
      this.runningTasks.delete(t.taskId)
      this.releaseTask(t)
      this.pumpLocalQueue()
      this.finished(t, { ok: false, error: { name: 'WorkerCrashedError', code: 'WORKER_CRASHED', message: reason }, userError: false })
    }
    if (w.actorId && this.dropActor(w.actorId)) this.send({ type: 'actor-died', actorId: w.actorId as never, reason })
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return
    this.flushScheduled = true
    queueMicrotask(() => {
      this.flushScheduled = false
      if (this.events.length) this.send({ type: 'task-events', events: this.events })
      if (this.results.length) this.send({ type: 'task-results', results: this.results })
      this.events = []
      this.results = []
    })
  }
}
