import { BoundedMap, BoundedSet } from '../../sdk/bounded.ts'
import { Deque } from '../../sdk/deque.ts'
import { TaskCancelledError, type WireError } from '../../sdk/errors.ts'
import { functionIdOf, objectIdOf, type TaskId } from '../../sdk/ids.ts'
import {
  ACTOR_NOT_HERE,
  type Assignment,
  type ClientMessage,
  FUNCTION_MISSING,
  type FunctionDef,
  type LargeArg,
  type Lease,
  leavesObjects,
  type ObjectUpdate,
  type PeerMessageOf,
  type PushedTask,
  parsePeerMessage,
  RELAY_OVERHEAD_BYTES,
  type ServerMessage,
  type TaskResult,
} from '../../sdk/protocol/index.ts'
import { fromUnits, type ResourceUnits } from '../../sdk/resources.ts'
import { type TaskEvent, TaskEventReporter } from '../../sdk/task-event-reporter.ts'
import type { FramedTransport } from '../../sdk/transport/framed.ts'
import { PeerLinks, type Route } from '../../sdk/transport/peer-links.ts'
import type { PeerMesh } from '../../sdk/transport/peer-mesh.ts'
import { batchBytesFor, sizeOfValues, TurnBatch } from '../../sdk/turn-batch.ts'
import type { BatchItem, ExecArg, ExecResult, ExecTask } from '../executor.worker.ts'
import { type LeaseCheck, LeaseVerifier } from '../lease-verifier.ts'
import { TenancyCheck } from '../tenancy-check.ts'

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
  /**
   * Several short tasks in one message (optional: without it every task goes alone). The first results may come
   * ahead through `onBatchResults`; it resolves with the rest from index `from` (-1: the worker failed, and these
   * are failures for every task not reported yet).
   */
  runMany?(w: WorkerSlot, ts: BatchItem[]): Promise<{ from: number; results: ExecResult[] }>
  onBatchResults?: (w: WorkerSlot, from: number, results: ExecResult[]) => void
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
  /** The node left the cluster: pulls under way fail (their tasks are retried elsewhere by their owners). */
  close(why: string): void
}

export interface NodeActivity {
  kind: 'registered' | 'task-start' | 'task-end' | 'disconnected' | 'actor' | 'store'
  text: string
}

/** An actor this node hosts: its worker and the calls waiting for a concurrency slot. */
interface HostedActor {
  actorId: string
  worker: WorkerSlot
  maxConcurrency: number
  running: number
  /** Calls whose turn came (in each caller's order), waiting for a concurrency slot. */
  queue: Deque<ActorCall>
  /** Its callers, by their actor lease for this incarnation. */
  callers: Map<string, ActorCaller>
  /** Calls running in its worker as one batch (see pumpActor). */
  batch: ActorRun | undefined
  /** How long its last call ran (ms): only an actor with short calls gets them in batches. */
  callMs: number | undefined
  /** Which incarnation this is (its creation's attempt). */
  attempt: number
  /** What the actor holds while it lives: what its calls report as their assigned resources. */
  units: ResourceUnits
}

/** One caller of a hosted actor (one actor lease): its calls run in the order of their `seq`, whatever way they came. */
interface ActorCaller {
  lease: Lease
  namespace: string
  /** The seq of the call whose turn is next. */
  next: number
  /** Calls that came ahead of their turn (a relayed call overtaken by a direct one), by seq. */
  early: Map<number, Pushed>
  /** Of its calls whose turn came, how many wait in the actor's queue (with `early`, bounded per lease). */
  queued: number
  /** Calls cancelled before their turn came: skipped (answered as cancelled) when it does. */
  cancelled: Set<string>
  results: Record<Route, TurnBatch<TaskResult>>
}

interface ActorCall {
  t: Pushed
  caller: ActorCaller
}

/** Calls started together in an actor's worker (one, or a batch), and how many of them were answered. */
interface ActorRun {
  calls: ActorCall[]
  reported: number
  started: number
}

/** Most callers remembered per actor incarnation (the oldest is forgotten: its next call is refused, and it asks again). */
const MAX_CALLERS_PER_ACTOR = 10_000

/** A function whose last task here ran shorter than this (ms) may run in batches. */
const BATCH_TASK_MS = 2
/** Most tasks in one message to a worker (a batch of short ones ends within milliseconds). */
const BATCH_MAX = 32
/** A batch running longer than this (ms) is stuck (a task that was short before is not now): a cancel stops it. */
const BATCH_STUCK_MS = 1000
/** What the state API shows of an actor call a node reports (it may reach the coordinator before its caller's). */
const actorCallMeta = (t: Pushed, actorId: string) => ({
  name: t.name,
  funcName: t.funcName,
  type: 'ACTOR_TASK' as const,
  resources: {},
  actorId,
})

/**
 * Calls `each` for results `from`… of a run started together (a batch, in order), skipping those already reported,
 * and moves the run's `reported` past them.
 */
function eachNewResult<T>(
  run: { reported: number },
  items: readonly T[],
  from: number,
  results: readonly ExecResult[],
  each: (item: T, r: ExecResult) => void,
): void {
  results.forEach((r, i) => {
    const at = from + i
    const item = items[at]
    if (item === undefined || at < run.reported) return
    run.reported = at + 1
    each(item, r)
  })
}

/** The first item and those behind it in `queue` that `fits` lets join it, up to BATCH_MAX (taken off the queue). */
function takeBatch<T>(first: T, queue: Deque<T>, fits: (next: T) => boolean): T[] {
  const batch = [first]
  while (batch.length < BATCH_MAX && queue.length && fits(queue.peek() as T)) batch.push(queue.shift() as T)
  return batch
}

/** Whether a pushed task's arguments are all inline (a large one needs its object pinned while it runs). */
const isInline = (t: PushedTask) => t.args.every((a) => a instanceof Uint8Array)

/** A task pushed under a lease, and the way it came (its result goes back the same way, or through the coordinator). */
interface Pushed extends PushedTask {
  route: Route
}

/** A lease this node serves: its tasks run one at a time, in the order pushed, in a worker of the lease's job. */
interface LeaseRun {
  lease: Lease
  namespace: string
  queue: Deque<Pushed>
  /** What its worker runs now: one task, or a batch of short ones of one function (see pumpLease). */
  running: { batch: Pushed[]; worker: WorkerSlot; started: number; cancelled?: Set<string>; reported: number } | undefined
  /** The running task waits in get/wait: the lease's resources are lent meanwhile. */
  blocked: boolean
  /** Its results of this turn, one message per way back (straight to the owner, or through the coordinator). */
  results: Record<Route, TurnBatch<TaskResult>>
}

/** A lease's queue holds at most this many tasks (an owner pipelines far fewer; more is a runaway or hostile peer). */
const MAX_QUEUED_PER_LEASE = 100_000
/** How many ended leases are remembered (a push under one of them is refused). */
const ENDED_REMEMBERED = 100_000

const systemError = (code: string, name: string, message: string, data?: Record<string, unknown>): WireError => ({
  name,
  code,
  message,
  ...(data && { data }),
})

/**
 * The node (Ray's raylet and its leased workers): runs the tasks owners push to it under leases the coordinator
 * signed, answering each owner directly; hosts actors the coordinator places here; carries its workers' control
 * traffic; reports RUNNING and its heartbeat to the coordinator.
 */
export class NodeAgent {
  readonly stats = { running: 0, finished: 0, failed: 0 }
  onActivity: (a: NodeActivity) => void = () => {}
  onClose: (reason: string) => void = () => {}
  /** The peer wire: owners push tasks here over it, and results go back. */
  readonly links: PeerLinks

  /** Function definitions by job and id (`functionKey`). */
  private functions = new Map<string, FunctionDef>()
  /** Plain tasks the coordinator placed here (verified tasks' replicas), by the worker running each. */
  private assignedRuns = new Map<WorkerSlot, Assignment>()
  /** Whether pushed tasks' large arguments are their own tenant's (asked of the coordinator). */
  private readonly tenancy = new TenancyCheck((msg) => this.send(msg))
  private actors = new Map<string, HostedActor>()
  private leases = new Map<string, LeaseRun>()
  /** The actor and caller of each actor lease in use here. */
  private actorLeases = new Map<string, { actor: HostedActor; caller: ActorCaller }>()
  /** The lease of each running leased task, by task id (a blocked or crashed worker names its task). */
  private runningLeased = new Map<string, LeaseRun>()
  /** How long each function's last task ran here (ms): only short ones go to a worker in batches. */
  private fnMs = new Map<string, number>()
  private ended = new BoundedSet<string>(ENDED_REMEMBERED)
  private verifier: LeaseCheck | undefined
  private readonly events: TaskEventReporter
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
    readonly total: ResourceUnits,
    opts: { heartbeatMs?: number; leaseKey?: string; peers?: PeerMesh; verifier?: LeaseCheck } = {},
  ) {
    const heartbeatMs = opts.heartbeatMs ?? 1000
    this.verifier = opts.verifier ?? (opts.leaseKey ? new LeaseVerifier(nodeId, opts.leaseKey) : undefined)
    this.events = new TaskEventReporter((m) => this.send(m))
    this.links = new PeerLinks(
      nodeId,
      opts.peers,
      (to, msgs) => this.send({ type: 'peer-send', to, msgs }),
      false,
      () => batchBytesFor(this.transport.maxFrameBytes - RELAY_OVERHEAD_BYTES),
      // After the queued tasks: workers finish tasks in message events of their own, so a busy node sends the results
      // of many (of all its leases for one owner) in one message. Measured: 1.9 → 4 results per send.
      'queued-tasks',
    )
    this.links.onMessage = (from, raw, route) => this.onPeerMessage(from, raw, route)
    workers.onCrash = (w, reason) => this.workerCrashed(w, reason)
    workers.onBatchResults = (w, from, results) => {
      const hosted = w.actorId ? this.actors.get(w.actorId) : undefined
      if (hosted?.worker === w && hosted.batch) return this.actorResults(hosted, hosted.batch, from, results)
      const run = this.leaseRunningOn(w)
      if (run?.running) this.batchResults(run, from, results, performance.now() - run.running.started)
    }
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

  /** Leases this node serves now (for checks). */
  get leaseIds(): string[] {
    return [...this.leases.keys()]
  }

  /** The page joined the peer mesh: owners' links to it carry tasks and results from now on. */
  attachPeers(peers: PeerMesh): void {
    this.links.attach(peers)
  }

  sendHeartbeat(): void {
    this.events.flush()
    this.send({
      type: 'heartbeat',
      running: this.stats.running,
      workers: this.workers.size,
      storeUsed: this.objects.used,
      storeSpilled: this.objects.spilledBytes,
    })
  }

  /** Leaves the cluster: workers stop, and owners retry their tasks elsewhere. */
  stop(reason = 'stopped'): void {
    if (this.stopped) return
    this.stopped = true
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.workers.terminateAll()
    this.actors.clear()
    this.actorLeases.clear()
    this.leases.clear()
    this.runningLeased.clear()
    this.events.close()
    this.tenancy.closed()
    this.objects.close(`the node left the cluster: ${reason}`)
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
      case 'welcome':
        if (msg.leaseKey && !this.verifier) this.verifier = new LeaseVerifier(this.nodeId, msg.leaseKey)
        return
      case 'assign':
        // Functions are their job's own (issue 9): one job's definition never answers for another job's id.
        for (const t of msg.tasks) {
          const f = msg.functions.find((d) => d.functionId === t.functionId)
          if (f) this.functions.set(functionKey(t.jobId, f.functionId), f)
        }
        for (const t of msg.tasks) this.accept(t)
        return
      case 'peer-recv':
        this.links.receiveRelayed(msg.from, msg.msgs)
        return
      case 'lease-ended':
        for (const id of msg.leaseIds) this.endLease(id, msg.kill)
        return
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
      case 'reply':
        this.tenancy.onReply(msg.reqId, msg.ok, msg.ok ? msg.value : undefined)
        return
      case 'warning':
      case 'lease-granted':
      case 'lease-failed':
      case 'lease-revoked':
      case 'lease-reclaim':
      case 'cancel-owned':
      case 'actor-state':
        return
      default:
        msg satisfies never
    }
  }

  // ---- leased tasks (pushed by their owners) ----

  private onPeerMessage(from: string, raw: unknown, route: Route): void {
    const parsed = parsePeerMessage(raw)
    if ('problem' in parsed) return console.warn(`[shoal node] a peer message from ${from} was refused: ${parsed.problem}`)
    const msg = parsed.msg
    if (msg.type === 'push') void (msg.lease.actor ? this.onActorPush(from, msg, route) : this.onPush(from, msg, route))
    else if (msg.type === 'cancel') this.onCancel(from, msg)
  }

  /** Answers every task of a push with a refusal (the owner retries them, or fails them, as the code says). */
  private refusePush(from: string, msg: PeerMessageOf<'push'>, route: Route, code: string, why: string): void {
    const error = systemError(code, 'ValidationError', `node ${this.nodeId} refused the tasks: ${why}`)
    const results = msg.tasks.map((t) => ({ taskId: t.taskId, attempt: t.attempt, ok: false as const, error, userError: false }))
    this.links.send(from, { type: 'results', leaseId: msg.lease.leaseId, results }, route)
  }

  private async onPush(from: string, msg: PeerMessageOf<'push'>, route: Route): Promise<void> {
    const { lease } = msg
    const refuse = (why: string) => this.refusePush(from, msg, route, 'LEASE_INVALID', why)
    if (lease.owner !== from) return refuse(`the lease belongs to ${lease.owner}, not ${from}`)
    if (this.ended.has(lease.leaseId)) return refuse(`lease ${lease.leaseId} has ended`)
    let run = this.leases.get(lease.leaseId)
    if (!run) {
      if (!this.verifier || !(await this.verifier.verify(lease))) return refuse('the lease is not signed by the coordinator for this node')
      if (this.ended.has(lease.leaseId) || this.stopped) return refuse(`lease ${lease.leaseId} has ended`)
      run = this.leases.get(lease.leaseId)
      if (!run) {
        run = {
          lease,
          namespace: msg.namespace,
          queue: new Deque(),
          running: undefined,
          blocked: false,
          results: { direct: this.resultsTo(lease, 'direct'), relay: this.resultsTo(lease, 'relay') },
        }
        this.leases.set(lease.leaseId, run)
      }
    } else if (run.lease.sig !== lease.sig) return refuse('the lease does not match the one first shown')
    for (const f of msg.functions ?? []) {
      // A function's id is its source's hash: a push cannot make another function run under a known id.
      if (functionIdOf(f.source) === f.functionId) this.functions.set(functionKey(lease.jobId, f.functionId), f)
    }
    if (run.queue.length + msg.tasks.length > MAX_QUEUED_PER_LEASE)
      return refuse(`more than ${MAX_QUEUED_PER_LEASE} tasks queued under one lease`)
    for (const t of msg.tasks) run.queue.push({ ...t, route })
    this.pumpLease(run)
  }

  private onCancel(from: string, msg: PeerMessageOf<'cancel'>): void {
    const call = this.actorLeases.get(msg.leaseId)
    if (call) return call.caller.lease.owner === from ? this.cancelActorCall(call.actor, call.caller, msg.taskId) : undefined
    const run = this.leases.get(msg.leaseId)
    if (!run || run.lease.owner !== from) return
    for (const t of run.queue) {
      if (t.taskId !== msg.taskId) continue
      run.queue.remove(t)
      return
    }
    const r = run.running
    if (!r?.batch.slice(r.reported).some((t) => t.taskId === msg.taskId)) return
    // The owner already failed it: nothing is reported for it. Alone in its worker, the worker stops. In a batch of
    // short tasks it is only forgotten (the batch ends within milliseconds), unless the batch is stuck: then the
    // worker stops, and the batch's other tasks fail as a worker crash would make them (their owners retry them).
    if (r.batch.length > 1 && performance.now() - r.started < BATCH_STUCK_MS) {
      ;(r.cancelled ??= new Set()).add(msg.taskId)
      return
    }
    this.stopRunning(run, msg.taskId)
    this.pumpLease(run)
  }

  /**
   * Stops what runs under a lease (its worker goes; what the worker owned shares its fate). Given the task it was
   * stopped for (a cancel), the batch's other tasks fail as after a worker crash; without (the owner is gone), none
   * is reported.
   */
  private stopRunning(run: LeaseRun, forTask?: string): void {
    const r = run.running
    if (!r) return
    run.running = undefined
    const unreported = r.batch.slice(r.reported)
    for (const t of unreported) this.runningLeased.delete(t.taskId)
    if (run.blocked) {
      run.blocked = false
      this.send({ type: 'lease-blocked', leaseId: run.lease.leaseId, blocked: false })
    }
    this.stats.running -= unreported.length
    this.workers.terminate(r.worker)
    if (forTask === undefined) return
    for (const t of unreported) {
      if (t.taskId === forTask || r.cancelled?.has(t.taskId)) continue
      const message = `The worker running task ${t.taskId} was stopped to cancel task ${forTask} of its batch`
      this.reportPushed(run, t, {
        ok: false,
        error: systemError('WORKER_CRASHED', 'WorkerCrashedError', message, { taskId: t.taskId }),
        userError: false,
      })
    }
  }

  /** The coordinator ended a lease: returned (nothing runs under it), or its owner died (`kill`: stop what runs). */
  private endLease(leaseId: string, kill: boolean): void {
    this.ended.add(leaseId)
    const run = this.leases.get(leaseId)
    if (!run) return
    this.leases.delete(leaseId)
    run.queue.drain()
    if (kill) this.stopRunning(run)
  }

  /**
   * Starts the lease's next task if its worker is free. Short tasks of one function waiting together (the owner
   * pipelines only functions it saw finish quickly) go to the worker in one message, up to BATCH_MAX: a message each
   * way per task was most of the node page's cost for a short task.
   */
  private pumpLease(run: LeaseRun): void {
    if (run.running || !run.queue.length || this.stopped) return
    const t = run.queue.shift() as Pushed
    const fn = this.functions.get(functionKey(run.lease.jobId, t.functionId))
    if (!fn) {
      this.reportPushed(run, t, {
        ok: false,
        error: systemError(FUNCTION_MISSING, 'ValidationError', `node ${this.nodeId} was not sent function ${t.functionId}`),
        userError: false,
      })
      return this.pumpLease(run)
    }
    const short = this.workers.runMany && (this.fnMs.get(t.functionId) ?? Number.POSITIVE_INFINITY) < BATCH_TASK_MS
    const batch = short && isInline(t) ? takeBatch(t, run.queue, (next) => next.functionId === t.functionId && isInline(next)) : [t]
    const w = this.workers.acquire(run.lease.jobId, t.taskId)
    const started = performance.now()
    const running: NonNullable<LeaseRun['running']> = { batch, worker: w, started, reported: 0 }
    run.running = running
    // What the task is rides along: this report may reach the coordinator before its owner's first one.
    const resources = fromUnits(run.lease.units)
    const execs = batch.map((b) => {
      this.runningLeased.set(b.taskId, run)
      this.started(b, w, { name: b.name, funcName: b.funcName, type: 'NORMAL_TASK', resources })
      const exec: ExecTask = {
        taskId: b.taskId,
        attempt: b.attempt,
        jobId: run.lease.jobId,
        namespace: run.namespace,
        name: b.name,
        args: [],
        numReturns: b.numReturns,
        resources,
      }
      return { ...exec, source: fn.source, funcName: fn.name }
    })
    const finish = (from: number, results: ExecResult[]) => {
      this.workers.release(w)
      if (run.running !== running) return // cancelled, killed or crashed meanwhile: already settled
      this.batchResults(run, from < 0 ? running.reported : from, results, performance.now() - started)
      run.running = undefined
      run.blocked = false
      this.pumpLease(run)
    }
    this.runInWorker(w, batch, execs, finish)
  }

  /**
   * Runs pushed work in worker `w`: one task or call alone (its large arguments made local first), or a batch of
   * inline ones in one message. `done` gets the results from index `from` on (-1: the worker failed, and these are
   * failures for every one not reported yet).
   */
  private runInWorker(
    w: WorkerSlot,
    pushed: readonly Pushed[],
    execs: BatchItem[],
    done: (from: number, results: ExecResult[]) => void,
  ): void {
    if (pushed.length > 1) {
      const many = execs.map((e, i) => ({ ...e, args: ((pushed[i] as Pushed).args as Uint8Array[]).map((x) => x.slice()) }))
      void (this.workers.runMany as NonNullable<NodeWorkers['runMany']>)(w, many).then((r) => done(r.from, r.results))
      return
    }
    const exec = execs[0] as BatchItem
    void this.withArgs(
      (pushed[0] as Pushed).args,
      (args) => ('method' in exec ? this.workers.callActor(w, { ...exec, args }) : this.workers.run(w, { ...exec, args })),
      exec.jobId,
    ).then((r) => done(0, [r]))
  }

  /** Results of the running batch's tasks `from`… (in order; a range already reported is not reported again). */
  private batchResults(run: LeaseRun, from: number, results: readonly ExecResult[], elapsed: number): void {
    const r = run.running
    if (!r) return
    eachNewResult(r, r.batch, from, results, (b, x) => {
      this.runningLeased.delete(b.taskId)
      this.stats.running--
      const ms = x.ms ?? elapsed
      this.fnMs.set(b.functionId, ms)
      if (r.cancelled?.has(b.taskId)) return // its owner already failed it
      this.storeReturns(b.taskId, x)
      this.reportPushed(run, b, x, ms, r.worker.id)
    })
  }

  /**
   * Sends a result to the owner of a pushed task (a lease's, or an actor caller's): straight back the way the task
   * came, unless the coordinator must see it first (the task left objects it must count: large or ref-holding
   * returns, or it used its own connection) — then through the coordinator, after what the task's worker sent it.
   */
  private reportPushed(
    to: { results: Record<Route, TurnBatch<TaskResult>> },
    t: Pushed,
    r: ExecResult,
    ms?: number,
    workerId?: string,
  ): void {
    if (r.ok) this.stats.finished++
    else this.stats.failed++
    this.onActivity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
    const result = this.resultOf(t.taskId, t.attempt, r)
    if (ms !== undefined) result.ms = Math.round(ms * 1000) / 1000
    if (workerId) result.workerId = workerId as never
    const needsCoordinator = t.route === 'relay' || r.usedChannel === true || leavesObjects(r)
    to.results[needsCoordinator ? 'relay' : 'direct'].push(result)
  }

  private resultsTo(lease: Lease, route: Route): TurnBatch<TaskResult> {
    return new TurnBatch((results) => this.links.send(lease.owner, { type: 'results', leaseId: lease.leaseId, results }, route))
  }

  // ---- actors (placed by the coordinator, called directly by their callers) ----

  private accept(t: Assignment): void {
    const fn = this.functions.get(functionKey(t.jobId, t.functionId))
    if (!fn || (t.type !== 'ACTOR_CREATION_TASK' && t.type !== 'NORMAL_TASK'))
      return this.reportAssigned(t, {
        ok: false,
        error: systemError('VALIDATION', 'ValidationError', `node has no function ${t.functionId}`),
        userError: false,
      })
    if (t.type === 'NORMAL_TASK') return this.runAssigned(t, fn)
    // A newer incarnation of an actor this node still hosts replaces the old one (never two at once).
    const actorId = t.actorId as string
    this.dropActor(actorId)
    const w = this.workers.spawnForActor(actorId, t.jobId)
    const maxConcurrency = t.actor?.maxConcurrency ?? 1
    this.actors.set(actorId, {
      actorId,
      worker: w,
      maxConcurrency,
      running: 0,
      queue: new Deque(),
      callers: new BoundedMap(MAX_CALLERS_PER_ACTOR, (leaseId, caller) => this.forgetCaller(actorId, leaseId, caller)),
      batch: undefined,
      callMs: undefined,
      attempt: t.attempt,
      units: t.units,
    })
    this.started(t, w)
    void this.withArgs(t.args, (args) =>
      this.workers.createActor(w, { ...this.execTask(t, args), source: fn.source, className: fn.name, maxConcurrency }),
    ).then((r) => {
      if (this.actors.get(actorId)?.worker !== w) return // killed, crashed or replaced meanwhile: settled
      this.finishedAssigned(t, r)
      if (!r.ok) this.dropActor(actorId)
      else this.onActivity({ kind: 'actor', text: `actor ${fn.name} ${actorId.slice(0, 8)} is alive` })
    })
  }

  /**
   * A plain task the coordinator placed here itself: one replica of a verified task. It runs in a worker of its own
   * job, and its result goes to the coordinator (which compares the replicas), its returns inline.
   */
  private runAssigned(t: Assignment, fn: FunctionDef): void {
    const w = this.workers.acquire(t.jobId, t.taskId)
    this.assignedRuns.set(w, t)
    this.started(t, w, { name: t.name, funcName: t.funcName, type: 'NORMAL_TASK', resources: fromUnits(t.units) })
    const exec = { ...this.execTask(t, []), source: fn.source, funcName: fn.name }
    void this.withArgs(t.args, (args) => this.workers.run(w, { ...exec, args })).then((r) => {
      if (this.assignedRuns.get(w) !== t) return // its worker died meanwhile: reported then
      this.assignedRuns.delete(w)
      this.workers.release(w)
      this.finishedAssigned(t, r)
    })
  }

  /**
   * Calls pushed by a caller under its actor lease (signed by the coordinator for this actor's incarnation here).
   * Each caller's calls start in the order of their `seq` (Ray's actor task ordering), whichever way each came; a
   * call seen before (sent again after a lost link) is not run twice.
   */
  private async onActorPush(from: string, msg: PeerMessageOf<'push'>, route: Route): Promise<void> {
    const { lease } = msg
    const { actorId, incarnation } = lease.actor as NonNullable<Lease['actor']>
    const notHere = () =>
      this.refusePush(from, msg, route, ACTOR_NOT_HERE, `actor ${actorId} (incarnation ${incarnation}) is not on this node`)
    if (lease.owner !== from) return this.refusePush(from, msg, route, 'LEASE_INVALID', `the lease belongs to ${lease.owner}, not ${from}`)
    if (this.ended.has(lease.leaseId)) return notHere()
    let a = this.actors.get(actorId)
    if (a?.attempt !== incarnation) return notHere()
    let caller = a.callers.get(lease.leaseId)
    if (!caller) {
      if (!this.verifier || !(await this.verifier.verify(lease)))
        return this.refusePush(from, msg, route, 'LEASE_INVALID', 'the actor lease is not signed by the coordinator for this node')
      a = this.actors.get(actorId)
      if (a?.attempt !== incarnation || this.stopped) return notHere()
      caller = a.callers.get(lease.leaseId)
      if (!caller) {
        caller = {
          lease,
          namespace: msg.namespace,
          next: 0,
          early: new Map(),
          queued: 0,
          cancelled: new Set(),
          results: { direct: this.resultsTo(lease, 'direct'), relay: this.resultsTo(lease, 'relay') },
        }
        this.actorLeases.set(lease.leaseId, { actor: a, caller })
        a.callers.set(lease.leaseId, caller) // past MAX_CALLERS_PER_ACTOR the oldest caller is forgotten
      }
    } else if (caller.lease.sig !== lease.sig)
      return this.refusePush(from, msg, route, 'LEASE_INVALID', 'the lease does not match the one first shown')
    if (caller.early.size + caller.queued + msg.tasks.length > MAX_QUEUED_PER_LEASE)
      return this.refusePush(from, msg, route, 'LEASE_INVALID', `more than ${MAX_QUEUED_PER_LEASE} calls waiting under one lease`)
    for (const t of msg.tasks) {
      if (t.seq === undefined || t.method === undefined) {
        const error = systemError('LEASE_INVALID', 'ValidationError', `call ${t.taskId} under an actor lease has no seq or method`)
        caller.results[route].push({ taskId: t.taskId as never, attempt: t.attempt, ok: false, error, userError: false })
        continue
      }
      if (t.seq < caller.next || caller.early.has(t.seq)) continue // seen before: it runs (or ran) once
      caller.early.set(t.seq, { ...t, route })
    }
    this.admitCalls(a, caller)
  }

  /** Moves a caller's calls whose turn came into the actor's queue, in seq order, and starts what may start. */
  private admitCalls(a: HostedActor, caller: ActorCaller): void {
    for (let t = caller.early.get(caller.next); t; t = caller.early.get(caller.next)) {
      caller.early.delete(caller.next)
      caller.next++
      if (caller.cancelled.delete(t.taskId)) {
        this.answerCancelled(caller, t)
        continue
      }
      // It waits for its turn if calls are ahead of it, or the actor runs as many as it may at once.
      if (a.queue.length || a.running >= a.maxConcurrency)
        this.events.state(t.taskId, t.attempt, 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY', {
          nodeId: this.nodeId as never,
          task: actorCallMeta(t, a.actorId),
        })
      a.queue.push({ t, caller })
      caller.queued++
    }
    this.pumpActor(a)
  }

  /**
   * Starts the calls whose turn came, up to the actor's concurrency. An actor that runs one call at a time and whose
   * last call was short takes the calls waiting (of inline arguments) in one message, as a lease's short tasks go:
   * they run one after another in its worker, in this order, and what finished comes back every few ms.
   */
  private pumpActor(a: HostedActor): void {
    while (a.running < a.maxConcurrency && a.queue.length) {
      const first = a.queue.shift() as ActorCall
      const batching = a.maxConcurrency === 1 && this.workers.runMany && (a.callMs ?? Number.POSITIVE_INFINITY) < BATCH_TASK_MS
      const calls = batching && isInline(first.t) ? takeBatch(first, a.queue, (next) => isInline(next.t)) : [first]
      for (const c of calls) c.caller.queued--
      a.running++
      const started = performance.now()
      const run = { calls, reported: 0, started }
      const execs = calls.map(({ t, caller }) => {
        this.started(t, a.worker, actorCallMeta(t, a.actorId))
        const exec: ExecTask & { method: string } = {
          taskId: t.taskId,
          attempt: t.attempt,
          jobId: caller.lease.jobId,
          namespace: caller.namespace,
          name: t.name,
          args: [],
          numReturns: t.numReturns,
          // An actor call holds nothing of its own: it runs on what its actor holds (Ray's get_assigned_resources).
          resources: fromUnits(a.units),
          actorId: a.actorId,
          method: t.method as string,
        }
        return exec
      })
      const finish = (from: number, results: readonly ExecResult[]) => {
        if (this.actors.get(a.actorId) !== a) return // the actor died meanwhile: its callers were told by the coordinator
        this.actorResults(a, run, from < 0 ? run.reported : from, results)
        a.running--
        if (a.batch === run) a.batch = undefined
        this.pumpActor(a)
      }
      if (calls.length > 1) a.batch = run
      this.runInWorker(
        a.worker,
        calls.map((c) => c.t),
        execs,
        finish,
      )
    }
  }

  /** Results of calls `from`… of a run of an actor's calls (in order; a range already reported is not reported again). */
  private actorResults(a: HostedActor, run: ActorRun, from: number, results: readonly ExecResult[]): void {
    const elapsed = performance.now() - run.started
    eachNewResult(run, run.calls, from, results, (call, r) => {
      this.stats.running--
      this.storeReturns(call.t.taskId, r)
      a.callMs = r.ms ?? elapsed
      this.reportPushed(call.caller, call.t, r, a.callMs, a.worker.id)
    })
  }

  /** A caller cancels a call: one not started yet never runs (answered as cancelled); a running one is not interrupted. */
  private cancelActorCall(a: HostedActor, caller: ActorCaller, taskId: string): void {
    for (const c of a.queue) {
      if (c.t.taskId !== taskId) continue
      a.queue.remove(c)
      caller.queued--
      return this.answerCancelled(caller, c.t)
    }
    for (const t of caller.early.values()) if (t.taskId === taskId) caller.cancelled.add(taskId)
  }

  private answerCancelled(caller: ActorCaller, t: Pushed): void {
    const error = new TaskCancelledError(t.taskId, 'cancelled before it started').toWire()
    caller.results[t.route].push({ taskId: t.taskId as never, attempt: t.attempt, ok: false, error, userError: false })
  }

  /**
   * Runs `body` with the task's arguments ready for a worker: small ones copied out of the frame (a view would drag
   * the whole frame's buffer into the worker), large ones made local and pinned in the plasma store, then unpinned.
   * An argument that cannot be had fails the attempt as a system error (its owner retries it).
   */
  /**
   * Runs `body` once the large arguments are in this node's store (pinned while it runs). Given `pushedBy` (the job
   * of a pushed task: its owner named the arguments itself), another tenant's objects are refused as unknown ones.
   */
  private async withArgs(
    given: (Uint8Array | LargeArg)[],
    body: (args: ExecArg[]) => Promise<ExecResult>,
    pushedBy?: string,
  ): Promise<ExecResult> {
    const large = given.filter((a): a is LargeArg => !(a instanceof Uint8Array))
    const foreign =
      pushedBy && large.length
        ? await this.tenancy.foreign(
            pushedBy,
            large.map((a) => a.ref),
          )
        : []
    if (foreign.length) {
      const why = `argument ObjectRef(${foreign[0]}) is unknown to this coordinator (freed, forged, or from another cluster)`
      return { ok: false, error: systemError('VALIDATION', 'ValidationError', why), userError: false }
    }
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
      return await body(given.map((a) => (a instanceof Uint8Array ? a.slice() : { plasma: a.ref })))
    } finally {
      if (large.length) this.objects.release(large)
    }
  }

  /** An actor's creation as its worker runs it (it holds what the creation placed). */
  private execTask(t: Assignment, args: ExecArg[]): ExecTask {
    return {
      taskId: t.taskId,
      attempt: t.attempt,
      jobId: t.jobId,
      namespace: t.namespace,
      name: t.name,
      args,
      numReturns: t.numReturns,
      resources: fromUnits(t.units),
      ...(t.actorId && { actorId: t.actorId }),
      ...(t.inlineReturns !== undefined && { inlineReturns: t.inlineReturns }),
    }
  }

  /**
   * A task started in worker `w` (an actor's creation, a leased task, an actor call): counted, reported RUNNING, shown.
   * `task` says what it is: a pushed task's report may reach the coordinator before its owner's first one.
   */
  private started(t: { taskId: string; attempt: number; name: string }, w: WorkerSlot, task?: TaskEvent['task']): void {
    this.stats.running++
    this.events.state(t.taskId, t.attempt, 'RUNNING', { workerId: w.id as never, nodeId: this.nodeId as never, ...(task && { task }) })
    this.onActivity({ kind: 'task-start', text: `${t.name} started on worker ${w.id.slice(0, 8)}` })
  }

  /** Large returns were written to the plasma store by the worker: the store's index learns of them now. */
  private storeReturns(taskId: string, r: ExecResult): void {
    if (!r.ok) return
    r.returns.forEach((x, i) => {
      if (!(x instanceof Uint8Array)) this.objects.stored(objectIdOf(taskId as TaskId, i + 1), x.stored, x.bytes)
    })
  }

  private finishedAssigned(t: Assignment, r: ExecResult): void {
    this.storeReturns(t.taskId, r)
    this.stats.running--
    if (r.ok) this.stats.finished++
    else this.stats.failed++
    this.reportAssigned(t, r)
    this.onActivity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
  }

  private reportAssigned(t: Assignment, r: ExecResult): void {
    this.results.push(this.resultOf(t.taskId, t.attempt, r))
  }

  private resultOf(taskId: string, attempt: number, r: ExecResult): TaskResult {
    const scope = r.scope && { scope: { channel: r.scope.channel, release: r.scope.release as never[] } }
    if (r.ok) {
      // Large returns stay here (in the store); only their size travels.
      const returns = r.returns.map((x) => (x instanceof Uint8Array ? x : { stored: x.stored }))
      return {
        taskId: taskId as never,
        attempt,
        ok: true,
        returns,
        ...(r.nestedRefs?.length && { nestedRefs: r.nestedRefs as never[] }),
        ...scope,
      }
    }
    return { taskId: taskId as never, attempt, ok: false, error: r.error, userError: r.userError, ...scope }
  }

  /** A leased task started or stopped waiting in get/wait: its lease's resources are lent meanwhile (as in Ray). */
  taskBlocked(taskId: string, blocked: boolean): void {
    const run = this.runningLeased.get(taskId)
    if (!run?.running?.batch.some((t) => t.taskId === taskId) || run.blocked === blocked) return
    run.blocked = blocked
    this.send({ type: 'lease-blocked', leaseId: run.lease.leaseId, blocked })
  }

  /**
   * An actor forgot its oldest caller (past MAX_CALLERS_PER_ACTOR): that lease ends here, and its calls still waiting
   * for their turn are answered "not here", so the caller asks for a new lease and starts its order again (a caller
   * known afresh under the old lease would wait forever for calls it had already sent).
   */
  private forgetCaller(actorId: string, leaseId: string, caller: ActorCaller): void {
    this.actorLeases.delete(leaseId)
    this.ended.add(leaseId)
    const why = `node ${this.nodeId} refused the tasks: actor ${actorId} forgot this caller; ask again`
    const error = systemError(ACTOR_NOT_HERE, 'ValidationError', why)
    for (const t of caller.early.values())
      caller.results[t.route].push({ taskId: t.taskId as never, attempt: t.attempt, ok: false, error, userError: false })
    caller.early.clear()
  }

  /** Stops an actor's worker. */
  private dropActor(actorId: string): boolean {
    const a = this.actors.get(actorId)
    if (!a) return false
    this.actors.delete(actorId)
    for (const leaseId of a.callers.keys()) this.actorLeases.delete(leaseId)
    // The running count is of calls: a batch is one run of many, those not answered yet still count.
    this.stats.running -= a.batch ? a.batch.calls.length - a.batch.reported : a.running
    this.workers.terminate(a.worker)
    return true
  }

  /** The lease whose task (or batch) runs on this worker, if any (a node serves a handful of leases). */
  private leaseRunningOn(w: WorkerSlot): LeaseRun | undefined {
    for (const run of this.leases.values()) if (run.running?.worker === w) return run
    return undefined
  }

  private workerCrashed(w: WorkerSlot, reason: string): void {
    const run = this.leaseRunningOn(w)
    const r = run?.running
    if (run && r?.worker === w) {
      run.running = undefined
      if (run.blocked) {
        run.blocked = false
        this.send({ type: 'lease-blocked', leaseId: run.lease.leaseId, blocked: false })
      }
      for (const t of r.batch.slice(r.reported)) {
        this.runningLeased.delete(t.taskId)
        this.stats.running--
        if (r.cancelled?.has(t.taskId)) continue
        const message = `The worker running task ${t.taskId} died: ${reason}`
        this.reportPushed(run, t, {
          ok: false,
          error: systemError('WORKER_CRASHED', 'WorkerCrashedError', message, { taskId: t.taskId }),
          userError: false,
        })
      }
      this.pumpLease(run)
    }
    const assigned = this.assignedRuns.get(w)
    if (assigned) {
      this.assignedRuns.delete(w)
      const message = `The worker running task ${assigned.taskId} died: ${reason}`
      this.finishedAssigned(assigned, {
        ok: false,
        error: systemError('WORKER_CRASHED', 'WorkerCrashedError', message, { taskId: assigned.taskId }),
        userError: false,
      })
    }
    const hosted = w.actorId ? this.actors.get(w.actorId) : undefined
    if (hosted?.worker === w && this.dropActor(w.actorId as string))
      this.send({ type: 'actor-died', actorId: w.actorId as never, attempt: hosted.attempt, reason })
  }
}

/** Where a function definition is kept: under its job, since ids are the job's own. */
const functionKey = (jobId: string, functionId: string) => `${jobId}:${functionId}`
