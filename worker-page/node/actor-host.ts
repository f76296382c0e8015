import { BoundedMap } from '../../sdk/bounded.ts'
import { Deque } from '../../sdk/deque.ts'
import { TaskCancelledError } from '../../sdk/errors.ts'
import type { ExecResult, ExecTask } from '../../sdk/protocol/index.ts'
import {
  ACTOR_NOT_HERE,
  type Assignment,
  type ClientMessage,
  type FunctionDef,
  type Lease,
  type PeerMessageOf,
} from '../../sdk/protocol/index.ts'
import { fromUnits, type ResourceUnits } from '../../sdk/resources.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import type { LeaseAdmission, LeaseSessions } from './admission.ts'
import type { AssignedRuns } from './assigned-runs.ts'
import { eachNewResult, isShort, takeBatch } from './batch-policy.ts'
import type { WorkerSlot } from './ports.ts'
import { type Pushed, systemError, unrun } from './pushed.ts'
import type { ResultsByRoute, WorkerRuns } from './worker-runs.ts'

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
  /** Calls running in its worker as one batch (see pump). */
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
  results: ResultsByRoute
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

/** What the state API shows of an actor call a node reports (it may reach the coordinator before its caller's). */
const actorCallMeta = (t: Pushed, actorId: string) => ({
  name: t.name,
  funcName: t.funcName,
  type: 'ACTOR_TASK' as const,
  resources: {},
  actorId,
})

/**
 * The actors this node hosts (placed by the coordinator) and their callers' calls (pushed straight here under actor
 * leases): each caller's calls start in the order it made them, up to the actor's concurrency.
 */
export class ActorHost {
  private readonly actors = new Map<string, HostedActor>()
  /** The actor and caller of each actor lease in use here. */
  private readonly actorLeases = new Map<string, { actor: HostedActor; caller: ActorCaller }>()
  private closed = false

  constructor(
    private readonly runs: WorkerRuns,
    private readonly admission: LeaseAdmission,
    private readonly assigned: AssignedRuns,
    private readonly send: (msg: ClientMessage) => void,
  ) {}

  /** An actor's creation the coordinator placed here: its worker starts, and runs the constructor. */
  create(t: Assignment, fn: FunctionDef): void {
    // A newer incarnation of an actor this node still hosts replaces the old one (never two at once).
    const actorId = t.actorId as string
    this.kill(actorId)
    const w = this.runs.workers.spawnForActor(actorId, t.jobId)
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
    this.runs.started(t, w)
    void this.runs
      .withArgs(t.args, (args) =>
        this.runs.workers.createActor(w, { ...this.assigned.exec(t, args), source: fn.source, className: fn.name, maxConcurrency }),
      )
      .then((r) => {
        if (this.actors.get(actorId)?.worker !== w) return // killed, crashed or replaced meanwhile: settled
        this.assigned.finished(t, r)
        if (!r.ok) this.kill(actorId)
        else this.runs.activity({ kind: 'actor', text: `actor ${fn.name} ${actorId.slice(0, 8)} is alive` })
      })
  }

  /**
   * Calls pushed by a caller under its actor lease (signed by the coordinator for this actor's incarnation here).
   * Each caller's calls start in the order of their `seq` (Ray's actor task ordering), whichever way each came; a
   * call seen before (sent again after a lost link) is not run twice.
   */
  push(from: string, msg: PeerMessageOf<'push'>, route: Route): void {
    const { actorId, incarnation } = msg.lease.actor as NonNullable<Lease['actor']>
    const sessions: LeaseSessions<ActorCaller> = {
      what: 'actor lease',
      here: () => !this.closed && this.actors.get(actorId)?.attempt === incarnation,
      notHere: () => ({ code: ACTOR_NOT_HERE, why: `actor ${actorId} (incarnation ${incarnation}) is not on this node` }),
      known: (lease) => this.actors.get(actorId)?.callers.get(lease.leaseId),
      open: (lease, namespace) => this.openCaller(this.actors.get(actorId) as HostedActor, lease, namespace),
    }
    this.admission.admit(from, msg, route, sessions, (caller) => {
      if (this.admission.refuseOverflow(from, msg, route, caller.early.size + caller.queued, 'calls waiting')) return
      for (const t of msg.tasks) {
        if (t.seq === undefined || t.method === undefined) {
          const error = systemError('LEASE_INVALID', 'ValidationError', `call ${t.taskId} under an actor lease has no seq or method`)
          caller.results[route].push(unrun(t, error))
          continue
        }
        if (t.seq < caller.next || caller.early.has(t.seq)) continue // seen before: it runs (or ran) once
        caller.early.set(t.seq, { ...t, route })
      }
      this.admitCalls(this.actors.get(actorId) as HostedActor, caller)
    })
  }

  /**
   * A caller cancels a call: one not started yet never runs (answered as cancelled); a running one is not interrupted.
   * Whether the lease is an actor lease in use here (else it may be a worker lease).
   */
  cancel(from: string, msg: PeerMessageOf<'cancel'>): boolean {
    const call = this.actorLeases.get(msg.leaseId)
    if (!call) return false
    if (call.caller.lease.owner !== from) return true
    const { actor: a, caller } = call
    for (const c of a.queue) {
      if (c.t.taskId !== msg.taskId) continue
      a.queue.remove(c)
      caller.queued--
      this.answerCancelled(caller, c.t)
      return true
    }
    for (const t of caller.early.values()) if (t.taskId === msg.taskId) caller.cancelled.add(msg.taskId)
    return true
  }

  /** Stops an actor's worker (killed, failed, replaced, or its worker died). Whether it was hosted here. */
  kill(actorId: string): boolean {
    const a = this.actors.get(actorId)
    if (!a) return false
    this.actors.delete(actorId)
    for (const leaseId of a.callers.keys()) this.actorLeases.delete(leaseId)
    // The running count is of calls: a batch is one run of many, those not answered yet still count.
    this.runs.stop(a.worker, a.batch ? a.batch.calls.length - a.batch.reported : a.running)
    return true
  }

  /** Results that came ahead from a batch of calls in worker `w`. Whether `w` is an actor's worker running a batch. */
  onBatchResults(w: WorkerSlot, from: number, results: ExecResult[]): boolean {
    const hosted = w.actorId ? this.actors.get(w.actorId) : undefined
    if (hosted?.worker !== w || !hosted.batch) return false
    this.actorResults(hosted, hosted.batch, from, results)
    return true
  }

  /** Worker `w` died: if it was an actor's, the actor died (the coordinator restarts it, or fails its callers). */
  workerCrashed(w: WorkerSlot, reason: string): void {
    const hosted = w.actorId ? this.actors.get(w.actorId) : undefined
    if (hosted?.worker === w && this.kill(w.actorId as string))
      this.send({ type: 'actor-died', actorId: w.actorId as never, attempt: hosted.attempt, reason })
  }

  /** The node left the cluster (its workers are stopped). */
  close(): void {
    this.closed = true
    this.actors.clear()
    this.actorLeases.clear()
  }

  private openCaller(a: HostedActor, lease: Lease, namespace: string): ActorCaller {
    const caller: ActorCaller = {
      lease,
      namespace,
      next: 0,
      early: new Map(),
      queued: 0,
      cancelled: new Set(),
      results: this.runs.resultsTo(lease),
    }
    this.actorLeases.set(lease.leaseId, { actor: a, caller })
    a.callers.set(lease.leaseId, caller) // past MAX_CALLERS_PER_ACTOR the oldest caller is forgotten
    return caller
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
        this.runs.events.state(t.taskId, t.attempt, 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY', {
          nodeId: this.runs.nodeId as never,
          task: actorCallMeta(t, a.actorId),
        })
      a.queue.push({ t, caller })
      caller.queued++
    }
    this.pump(a)
  }

  /**
   * Starts the calls whose turn came, up to the actor's concurrency. An actor that runs one call at a time and whose
   * last call was short takes the calls waiting (of inline arguments) in one message, as a lease's short tasks go:
   * they run one after another in its worker, in this order, and what finished comes back every few ms.
   */
  private pump(a: HostedActor): void {
    while (a.running < a.maxConcurrency && a.queue.length) {
      const first = a.queue.shift() as ActorCall
      const short = a.maxConcurrency === 1 && this.runs.workers.runMany !== undefined && isShort(a.callMs)
      const calls = takeBatch(first, a.queue, (c) => c.t, short)
      for (const c of calls) c.caller.queued--
      a.running++
      const started = performance.now()
      const run: ActorRun = { calls, reported: 0, started }
      const execs = calls.map(({ t, caller }) => {
        this.runs.started(t, a.worker, actorCallMeta(t, a.actorId))
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
        this.pump(a)
      }
      if (calls.length > 1) a.batch = run
      this.runs.runInWorker(
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
      this.runs.storeReturns(call.t.taskId, r)
      a.callMs = r.ms ?? elapsed
      this.runs.ended(call.t.taskId, a.callMs)
      this.runs.reportPushed(call.caller, call.t, r, a.callMs, a.worker.id)
    })
  }

  private answerCancelled(caller: ActorCaller, t: Pushed): void {
    caller.results[t.route].push(unrun(t, new TaskCancelledError(t.taskId, 'cancelled before it started').toWire()))
  }

  /**
   * An actor forgot its oldest caller (past MAX_CALLERS_PER_ACTOR): that lease ends here, and its calls still waiting
   * for their turn are answered "not here", so the caller asks for a new lease and starts its order again (a caller
   * known afresh under the old lease would wait forever for calls it had already sent).
   */
  private forgetCaller(actorId: string, leaseId: string, caller: ActorCaller): void {
    this.actorLeases.delete(leaseId)
    this.admission.end(leaseId)
    const why = `node ${this.runs.nodeId} refused the tasks: actor ${actorId} forgot this caller; ask again`
    const error = systemError(ACTOR_NOT_HERE, 'ValidationError', why)
    for (const t of caller.early.values()) caller.results[t.route].push(unrun(t, error))
    caller.early.clear()
  }
}
