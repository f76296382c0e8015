import { jobIdOfTask, objectIdOf, type TaskId } from '../../sdk/ids.ts'
import type { BatchItem, ExecArg, ExecResult } from '../../sdk/protocol/index.ts'
import { type LargeArg, type Lease, leavesObjects, type PeerMessage, type TaskResult } from '../../sdk/protocol/index.ts'
import type { TaskEvent, TaskEventReporter } from '../../sdk/task-event-reporter.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import { TurnBatch } from '../../sdk/turn-batch.ts'
import type { TenancyCheck } from '../tenancy-check.ts'
import type { NodeActivity, NodeObjects, NodeWorkers, WorkerSlot } from './ports.ts'
import { type Pushed, systemError } from './pushed.ts'

/** What the node counts of the tasks it runs (its heartbeat reports `running`). */
export interface RunStats {
  running: number
  finished: number
  failed: number
}

/** A task running on this node now, as its page shows it. */
export interface RunningTask {
  name: string
  jobId: string
  /** performance.now() when it started. */
  since: number
  workerId: string
}

/** A pushed task's results, one batch per way back (straight to its owner, or through the coordinator). */
export type ResultsByRoute = Record<Route, TurnBatch<TaskResult>>

/** A task's failure because its worker died (or was stopped) under it: a system error, its owner retries it. */
export const workerDied = (taskId: string, message: string): ExecResult => ({
  ok: false,
  error: systemError('WORKER_CRASHED', 'WorkerCrashedError', message, { taskId }),
  userError: false,
})

/**
 * Running work in the node's workers, for every kind of task: arguments made ready (large ones local and pinned,
 * another tenant's refused), a task counted and reported RUNNING as it starts, its large returns entered in the
 * store, its result sent back, a worker stopped. The one home of each.
 */
export class WorkerRuns {
  /** What runs now, by task id (the page's live view). */
  readonly runningNow = new Map<string, RunningTask>()
  /** Milliseconds of task time this node gave, in all (the tasks' own measure where they have one). */
  cpuMs = 0

  constructor(
    readonly nodeId: string,
    readonly workers: NodeWorkers,
    private readonly objects: NodeObjects,
    readonly events: TaskEventReporter,
    private readonly tenancy: TenancyCheck,
    readonly stats: RunStats,
    readonly activity: (a: NodeActivity) => void,
    /** Sends a message to a peer (a pushed task's owner), the way given. */
    private readonly sendTo: (to: string, msg: PeerMessage, route: Route) => void,
  ) {}

  /**
   * A task started in worker `w` (an actor's creation, a leased task, an actor call): counted, reported RUNNING, shown.
   * `task` says what it is: a pushed task's report may reach the coordinator before its owner's first one.
   */
  started(t: { taskId: string; attempt: number; name: string }, w: WorkerSlot, task?: TaskEvent['task']): void {
    this.stats.running++
    this.runningNow.set(t.taskId, { name: t.name, jobId: jobIdOfTask(t.taskId as TaskId), since: performance.now(), workerId: w.id })
    this.events.state(t.taskId, t.attempt, 'RUNNING', { workerId: w.id as never, nodeId: this.nodeId as never, ...(task && { task }) })
    this.activity({ kind: 'task-start', text: `${t.name} started on worker ${w.id.slice(0, 8)}` })
  }

  /**
   * Runs pushed work in worker `w`: one task or call alone (its large arguments made local first), or a batch of
   * inline ones in one message. `done` gets the results from index `from` on (-1: the worker failed, and these are
   * failures for every one not reported yet).
   */
  runInWorker(w: WorkerSlot, pushed: readonly Pushed[], execs: BatchItem[], done: (from: number, results: ExecResult[]) => void): void {
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

  /**
   * Runs `body` with the task's arguments ready for a worker: small ones copied out of the frame (a view would drag
   * the whole frame's buffer into the worker), large ones made local and pinned in the plasma store, then unpinned.
   * An argument that cannot be had fails the attempt as a system error (its owner retries it). Given `pushedBy` (the
   * job of a pushed task: its owner named the arguments itself), another tenant's objects are refused as unknown ones.
   */
  async withArgs(given: (Uint8Array | LargeArg)[], body: (args: ExecArg[]) => Promise<ExecResult>, pushedBy?: string): Promise<ExecResult> {
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

  /** Large returns were written to the plasma store by the worker: the store's index learns of them now. */
  storeReturns(taskId: string, r: ExecResult): void {
    if (!r.ok) return
    r.returns.forEach((x, i) => {
      if (!(x instanceof Uint8Array)) this.objects.stored(objectIdOf(taskId as TaskId, i + 1), x.stored, x.bytes)
    })
  }

  /** A task's result as it travels: large returns stay here (in the store), only their size goes. */
  resultOf(taskId: string, attempt: number, r: ExecResult): TaskResult {
    const scope = r.scope && { scope: { channel: r.scope.channel, release: r.scope.release as never[] } }
    if (r.ok) {
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

  /** Where the results of tasks pushed under `lease` go: to its owner, one message per turn and way back. */
  resultsTo(lease: Lease): ResultsByRoute {
    const to = (route: Route) =>
      new TurnBatch<TaskResult>((results) => this.sendTo(lease.owner, { type: 'results', leaseId: lease.leaseId, results }, route))
    return { direct: to('direct'), relay: to('relay') }
  }

  /**
   * Sends a result to the owner of a pushed task (a lease's, or an actor caller's): straight back the way the task
   * came, unless the coordinator must see it first (the task left objects it must count: large or ref-holding
   * returns, or it used its own connection) — then through the coordinator, after what the task's worker sent it.
   */
  reportPushed(to: { results: ResultsByRoute }, t: Pushed, r: ExecResult, ms?: number, workerId?: string): void {
    if (r.ok) this.stats.finished++
    else this.stats.failed++
    this.activity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
    const result = this.resultOf(t.taskId, t.attempt, r)
    if (ms !== undefined) result.ms = Math.round(ms * 1000) / 1000
    if (workerId) result.workerId = workerId as never
    const needsCoordinator = t.route === 'relay' || r.usedChannel === true || leavesObjects(r)
    to.results[needsCoordinator ? 'relay' : 'direct'].push(result)
  }

  /** A task that started here ended (`ms`: how long it ran by its own measure, where it has one). */
  ended(taskId: string, ms?: number): void {
    this.stats.running--
    const r = this.runningNow.get(taskId)
    if (!r) return
    this.runningNow.delete(taskId)
    this.cpuMs += ms ?? performance.now() - r.since
  }

  /** Stops worker `w` with `unfinished` of its tasks not answered: they no longer run (what it owned shares its fate). */
  stop(w: WorkerSlot, unfinished: number): void {
    this.stats.running -= unfinished
    const now = performance.now()
    for (const [id, r] of this.runningNow) {
      if (r.workerId !== w.id) continue
      this.runningNow.delete(id)
      this.cpuMs += now - r.since
    }
    this.workers.terminate(w)
  }
}
