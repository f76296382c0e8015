import type { Assignment, ClientMessage, ExecArg, ExecResult, ExecTask, FunctionDef, TaskResult } from '../../sdk/protocol/index.ts'
import { fromUnits } from '../../sdk/resources.ts'
import { sizeOfValues, TurnBatch } from '../../sdk/turn-batch.ts'
import type { WorkerSlot } from './ports.ts'
import { type WorkerRuns, workerDied } from './worker-runs.ts'

/**
 * Tasks the coordinator placed here itself (an actor's creation, a replica of a verified task): their results go to
 * the coordinator, one message per turn.
 */
export class AssignedRuns {
  /** Plain tasks the coordinator placed here (verified tasks' replicas), by the worker running each. */
  private readonly running = new Map<WorkerSlot, Assignment>()
  private readonly results: TurnBatch<TaskResult>

  constructor(
    private readonly runs: WorkerRuns,
    send: (msg: ClientMessage) => void,
    /** The most bytes one message to the coordinator may take (its frame limit, less what wraps the results). */
    maxBytes: () => number,
  ) {
    this.results = new TurnBatch<TaskResult>((results) => send({ type: 'task-results', results }), {
      maxBytes,
      sizeOf: (r) => sizeOfValues(r.ok ? r.returns : undefined),
    })
  }

  /**
   * A plain task the coordinator placed here itself: one replica of a verified task. It runs in a worker of its own
   * job, and its result goes to the coordinator (which compares the replicas), its returns inline.
   */
  run(t: Assignment, fn: FunctionDef): void {
    const w = this.runs.workers.acquire(t.jobId, t.taskId)
    this.running.set(w, t)
    this.runs.started(t, w, { name: t.name, funcName: t.funcName, type: 'NORMAL_TASK', resources: fromUnits(t.units) })
    const exec = { ...this.exec(t, []), source: fn.source, funcName: fn.name }
    void this.runs
      .withArgs(t.args, (args) => this.runs.workers.run(w, { ...exec, args }))
      .then((r) => {
        if (this.running.get(w) !== t) return // its worker died meanwhile: reported then
        this.running.delete(w)
        this.runs.workers.release(w)
        this.finished(t, r)
      })
  }

  /** An assigned task as its worker runs it (an actor's creation holds what the creation placed). */
  exec(t: Assignment, args: ExecArg[]): ExecTask {
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

  /** An assigned task that ran ended: counted, shown, and its result sent. */
  finished(t: Assignment, r: ExecResult): void {
    this.runs.storeReturns(t.taskId, r)
    this.runs.ended(t.taskId)
    if (r.ok) this.runs.stats.finished++
    else this.runs.stats.failed++
    this.report(t, r)
    this.runs.activity({ kind: 'task-end', text: `${t.name} ${r.ok ? 'finished' : `failed: ${r.error.message}`}` })
  }

  /** Sends an assigned task's result to the coordinator (with the turn's others). */
  report(t: Assignment, r: ExecResult): void {
    this.results.push(this.runs.resultOf(t.taskId, t.attempt, r))
  }

  /** Worker `w` died: the task it ran for the coordinator fails as a system error. */
  workerCrashed(w: WorkerSlot, reason: string): void {
    const assigned = this.running.get(w)
    if (!assigned) return
    this.running.delete(w)
    this.finished(assigned, workerDied(assigned.taskId, `The worker running task ${assigned.taskId} died: ${reason}`))
  }
}
