import { Deque } from '../../sdk/deque.ts'
import type { ExecResult, ExecTask } from '../../sdk/protocol/index.ts'
import { type ClientMessage, FUNCTION_MISSING, type Lease, type PeerMessageOf } from '../../sdk/protocol/index.ts'
import { fromUnits } from '../../sdk/resources.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import type { LeaseAdmission, LeaseSessions } from './admission.ts'
import { eachNewResult, isShort, isStuck, takeBatch } from './batch-policy.ts'
import type { Functions } from './functions.ts'
import type { WorkerSlot } from './ports.ts'
import { type Pushed, systemError } from './pushed.ts'
import { type ResultsByRoute, type WorkerRuns, workerDied } from './worker-runs.ts'

/** What a lease's worker runs now: one task, or a batch of short ones of one function (see pump). */
interface Running {
  batch: Pushed[]
  worker: WorkerSlot
  started: number
  /** Tasks of the batch their owner cancelled: forgotten, nothing is reported for them. */
  cancelled?: Set<string>
  /** How many of the batch were reported, in order. */
  reported: number
}

/** A lease this node serves: its tasks run one at a time, in the order pushed, in a worker of the lease's job. */
interface LeaseRun {
  lease: Lease
  namespace: string
  queue: Deque<Pushed>
  running: Running | undefined
  /** The running task waits in get/wait: the lease's resources are lent meanwhile. */
  blocked: boolean
  /** Its results of this turn, one message per way back (straight to the owner, or through the coordinator). */
  results: ResultsByRoute
}

/**
 * The leases this node serves (Ray's leased workers): tasks their owners push run in the order pushed, one at a time
 * per lease (short ones of one function in batches), each result answered straight to its owner.
 */
export class LeaseRunner {
  private readonly leases = new Map<string, LeaseRun>()
  /** The lease of each running leased task, by task id (a blocked or crashed worker names its task). */
  private readonly runningLeased = new Map<string, LeaseRun>()
  /** How long each function's last task ran here (ms): only short ones go to a worker in batches. */
  private readonly fnMs = new Map<string, number>()
  private closed = false

  private readonly sessions: LeaseSessions<LeaseRun> = {
    what: 'lease',
    here: () => !this.closed,
    notHere: (lease) => ({ code: 'LEASE_INVALID', why: `lease ${lease.leaseId} has ended` }),
    known: (lease) => this.leases.get(lease.leaseId),
    open: (lease, namespace) => {
      const run: LeaseRun = {
        lease,
        namespace,
        queue: new Deque(),
        running: undefined,
        blocked: false,
        results: this.runs.resultsTo(lease),
      }
      this.leases.set(lease.leaseId, run)
      return run
    },
  }

  constructor(
    private readonly runs: WorkerRuns,
    private readonly admission: LeaseAdmission,
    private readonly functions: Functions,
    private readonly send: (msg: ClientMessage) => void,
  ) {}

  /** The leases served now. */
  get ids(): string[] {
    return [...this.leases.keys()]
  }

  /** Tasks an owner pushed under its lease (with the functions the node was not sent yet). */
  push(from: string, msg: PeerMessageOf<'push'>, route: Route): void {
    this.admission.admit(from, msg, route, this.sessions, (run) => {
      this.functions.learn(msg.lease.jobId, msg.functions ?? [])
      if (this.admission.refuseOverflow(from, msg, route, run.queue.length, 'tasks queued')) return
      for (const t of msg.tasks) run.queue.push({ ...t, route })
      this.pump(run)
    })
  }

  /**
   * An owner cancels a task under its lease: a queued one is dropped; a running one is not reported (the owner already
   * failed it). Alone in its worker, the worker stops. In a batch of short tasks it is only forgotten (the batch ends
   * within milliseconds), unless the batch is stuck: then the worker stops, and the batch's other tasks fail as a
   * worker crash would make them (their owners retry them).
   */
  cancel(from: string, msg: PeerMessageOf<'cancel'>): void {
    const run = this.leases.get(msg.leaseId)
    if (!run || run.lease.owner !== from) return
    for (const t of run.queue) {
      if (t.taskId !== msg.taskId) continue
      run.queue.remove(t)
      return
    }
    const r = run.running
    if (!r?.batch.slice(r.reported).some((t) => t.taskId === msg.taskId)) return
    if (r.batch.length > 1 && !isStuck(r.started, performance.now())) {
      ;(r.cancelled ??= new Set()).add(msg.taskId)
      return
    }
    this.abandon(run, true, (t) =>
      t.taskId === msg.taskId ? undefined : `The worker running task ${t.taskId} was stopped to cancel task ${msg.taskId} of its batch`,
    )
    this.pump(run)
  }

  /** The coordinator ended a lease: returned (nothing runs under it), or its owner died (`kill`: stop what runs). */
  end(leaseId: string, kill: boolean): void {
    this.admission.end(leaseId)
    const run = this.leases.get(leaseId)
    if (!run) return
    this.leases.delete(leaseId)
    run.queue.drain()
    if (kill) this.abandon(run, true)
  }

  /** A leased task started or stopped waiting in get/wait: its lease's resources are lent meanwhile (as in Ray). */
  blocked(taskId: string, blocked: boolean): void {
    const run = this.runningLeased.get(taskId)
    if (!run?.running?.batch.some((t) => t.taskId === taskId) || run.blocked === blocked) return
    run.blocked = blocked
    this.send({ type: 'lease-blocked', leaseId: run.lease.leaseId, blocked })
  }

  /** Results that came ahead from a batch in worker `w`. */
  onBatchResults(w: WorkerSlot, from: number, results: ExecResult[]): void {
    const run = this.runningOn(w)
    if (run?.running) this.batchResults(run, from, results, performance.now() - run.running.started)
  }

  /** Worker `w` died: what it ran under a lease fails as a system error (its owner retries it), and the lease goes on. */
  workerCrashed(w: WorkerSlot, reason: string): void {
    const run = this.runningOn(w)
    if (!run) return
    this.abandon(run, false, (t) => `The worker running task ${t.taskId} died: ${reason}`)
    this.pump(run)
  }

  /** The node left the cluster (its workers are stopped): nothing more starts. */
  close(): void {
    this.closed = true
    this.leases.clear()
    this.runningLeased.clear()
  }

  /**
   * Starts the lease's next task if its worker is free. Short tasks of one function waiting together (the owner
   * pipelines only functions it saw finish quickly) go to the worker in one message (see batch-policy.ts).
   */
  private pump(run: LeaseRun): void {
    if (run.running || !run.queue.length || this.closed) return
    const t = run.queue.shift() as Pushed
    const fn = this.functions.get(run.lease.jobId, t.functionId)
    if (!fn) {
      this.runs.reportPushed(run, t, {
        ok: false,
        error: systemError(FUNCTION_MISSING, 'ValidationError', `node ${this.runs.nodeId} was not sent function ${t.functionId}`),
        userError: false,
      })
      return this.pump(run)
    }
    const short = this.runs.workers.runMany !== undefined && isShort(this.fnMs.get(t.functionId))
    const batch = takeBatch(
      t,
      run.queue,
      (x) => x,
      short,
      (next) => next.functionId === t.functionId,
    )
    const w = this.runs.workers.acquire(run.lease.jobId, t.taskId)
    const started = performance.now()
    const running: Running = { batch, worker: w, started, reported: 0 }
    run.running = running
    // What the task is rides along: this report may reach the coordinator before its owner's first one.
    const resources = fromUnits(run.lease.units)
    const execs = batch.map((b) => {
      this.runningLeased.set(b.taskId, run)
      this.runs.started(b, w, { name: b.name, funcName: b.funcName, type: 'NORMAL_TASK', resources })
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
      this.runs.workers.release(w)
      if (run.running !== running) return // cancelled, killed or crashed meanwhile: already settled
      this.batchResults(run, from < 0 ? running.reported : from, results, performance.now() - started)
      run.running = undefined
      run.blocked = false
      this.pump(run)
    }
    this.runs.runInWorker(w, batch, execs, finish)
  }

  /** Results of the running batch's tasks `from`… (in order; a range already reported is not reported again). */
  private batchResults(run: LeaseRun, from: number, results: readonly ExecResult[], elapsed: number): void {
    const r = run.running
    if (!r) return
    eachNewResult(r, r.batch, from, results, (b, x) => {
      this.runningLeased.delete(b.taskId)
      const ms = x.ms ?? elapsed
      this.runs.ended(b.taskId, ms)
      this.fnMs.set(b.functionId, ms)
      if (r.cancelled?.has(b.taskId)) return // its owner already failed it
      this.runs.storeReturns(b.taskId, x)
      this.runs.reportPushed(run, b, x, ms, r.worker.id)
    })
  }

  /**
   * What runs under a lease is over: its worker died, or is stopped now (`stop`: a cancel, or its owner is gone; what
   * the worker owned shares its fate). Its tasks not reported yet no longer run; `failure` says why each fails as
   * after a worker crash (undefined, or no `failure`: nothing is reported for it — its owner already failed it).
   */
  private abandon(run: LeaseRun, stop: boolean, failure?: (t: Pushed) => string | undefined): void {
    const r = run.running
    if (!r) return
    run.running = undefined
    const unreported = r.batch.slice(r.reported)
    for (const t of unreported) this.runningLeased.delete(t.taskId)
    if (run.blocked) {
      run.blocked = false
      this.send({ type: 'lease-blocked', leaseId: run.lease.leaseId, blocked: false })
    }
    if (stop) this.runs.stop(r.worker, unreported.length)
    else for (const t of unreported) this.runs.ended(t.taskId)
    if (!failure) return
    for (const t of unreported) {
      const message = r.cancelled?.has(t.taskId) ? undefined : failure(t)
      if (message !== undefined) this.runs.reportPushed(run, t, workerDied(t.taskId, message))
    }
  }

  /** The lease whose task (or batch) runs on this worker, if any (a node serves a handful of leases). */
  private runningOn(w: WorkerSlot): LeaseRun | undefined {
    for (const run of this.leases.values()) if (run.running?.worker === w) return run
    return undefined
  }
}
