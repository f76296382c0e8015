import { ObjectStoreFullError, TaskUnschedulableError, VerificationError, type WireError } from '../sdk/errors.ts'
import { type Assignment, type FunctionDef, type TaskResult, VERIFIED_RETURNS_MAX_BYTES } from '../sdk/protocol/index.ts'
import type { ResourceUnits } from '../sdk/resources.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'
import type { TaskRecord } from './task-record.ts'
import { type Outcome, outcomeKey, Tally } from './verification.ts'

/** `maxRetries: -1` (forever) still ends: at most this many replicas beyond the first N. */
const MAX_EXTRA_REPLICAS = 16

/** One replica of a verified task, as the scheduler places it. Replicas of a task go to distinct nodes. */
export interface Replica extends Schedulable {
  readonly kind: 'replica'
  readonly task: TaskRecord
  readonly resources: ResourceUnits
  readonly strategy: TaskRecord['strategy']
  /** The nodes this task's replicas already went to (the live set: a node taken by one is avoided by the rest). */
  readonly avoid: ReadonlySet<string>
  nodeId?: string
}

export const isReplica = (x: Schedulable): x is Replica => (x as Replica).kind === 'replica'

/** A verified task while its replicas run and vote. */
interface Verification {
  readonly tally: Tally
  /** Every node that ran (or runs) a replica: the next goes elsewhere. */
  readonly used: Set<string>
  readonly queued: Set<Replica>
  running: number
  /** Extra replicas still allowed (its `maxRetries`). */
  budget: number
  /** The first outcome of each key (what an accepted key gives the caller). */
  readonly outcomes: Map<string, Outcome>
  /** The bytes of those outcomes, held here until the vote ends (counted against the tenant's stored bytes). */
  held: number
  /** The last replica that failed without voting (a node died, a worker crashed), for the error if nothing is left. */
  lastLoss?: string
}

/** What VerifiedTasks needs from PlacedTasks, which owns the task's record and its returns. */
export interface VerifiedTaskOps {
  assignmentOf(rec: TaskRecord): Assignment
  /** The replicas agreed on these returns. */
  accept(rec: TaskRecord, returns: Uint8Array[]): void
  /** Fails the task, which stops its replicas (PlacedTasks calls `stop`). */
  fail(rec: TaskRecord, error: WireError): void
  releaseOn(node: NodeRecord, resources: ResourceUnits): void
}

/**
 * Verified tasks (`verify: { replicas: N }`, BOINC's redundant computing): the coordinator places N replicas on N
 * distinct nodes, each returning its values inline, and accepts a result only when all N are byte-identical; on
 * disagreement more replicas run on fresh nodes (within `maxRetries`) until one outcome has a strict majority, else
 * the task fails with VerificationError. A node in the minority of an accepted vote is quarantined.
 *
 * Each replica runs as attempt 0 on its node: a task's replicas are told apart by their nodes, which differ.
 */
export class VerifiedTasks {
  private live = new Map<TaskRecord, Verification>()
  /** Replicas on nodes, by `taskId:nodeId`: kept past their task's end, so their resources come back when they end. */
  private running = new Map<string, Replica>()
  private byNode = new Map<string, Set<Replica>>()
  /** Bytes of outcomes waiting for their vote, per tenant. */
  private heldBy = new Map<string, number>()

  constructor(
    private readonly ops: VerifiedTaskOps,
    private readonly deps: {
      nodes: NodeTable
      events: TaskEvents
      scheduler: Scheduler<Schedulable>
      nodeSession(nodeId: string): Session | undefined
      functionOf(jobId: string, functionId: string): FunctionDef | undefined
      /** A node returned a minority result: it gets no more work. */
      quarantine(nodeId: string, reason: string): void
      /** How many bytes a tenant may have stored: outcomes waiting for their vote count too. */
      storedQuota(tenant: string): number
    },
  ) {}

  /** Starts a verified task whose arguments are ready: its first N replicas. */
  start(rec: TaskRecord): void {
    const replicas = rec.spec.verify?.replicas ?? 2
    const { maxRetries } = rec.spec
    const v: Verification = {
      tally: new Tally(replicas),
      used: new Set(),
      queued: new Set(),
      running: 0,
      budget: maxRetries === -1 ? MAX_EXTRA_REPLICAS : Math.min(maxRetries, MAX_EXTRA_REPLICAS),
      outcomes: new Map(),
      held: 0,
    }
    this.live.set(rec, v)
    this.launch(rec, v, replicas)
  }

  private launch(rec: TaskRecord, v: Verification, count: number): void {
    for (let i = 0; i < count; i++) {
      const rep: Replica = {
        kind: 'replica',
        task: rec,
        resources: rec.resources,
        strategy: rec.strategy,
        avoid: v.used,
        ...(rec.volunteers && { volunteers: true }),
        ...(rec.preferNode && { preferNode: rec.preferNode }),
      }
      v.queued.add(rep)
      this.deps.scheduler.enqueue(rep)
    }
  }

  /** The scheduler placed a replica on `node` (its resources are allocated there). */
  dispatch(rep: Replica, node: NodeRecord): void {
    const v = this.live.get(rep.task)
    const session = this.deps.nodeSession(node.nodeId)
    if (!v || !session) {
      this.ops.releaseOn(node, rep.resources)
      // The node's socket is gone but its death is not processed yet: the replica waits for another node.
      if (v) this.deps.scheduler.requeueFront(rep)
      return
    }
    const rec = rep.task
    v.queued.delete(rep)
    v.used.add(node.nodeId)
    v.running++
    rep.nodeId = node.nodeId
    this.running.set(`${rec.spec.taskId}:${node.nodeId}`, rep)
    let set = this.byNode.get(node.nodeId)
    if (!set) this.byNode.set(node.nodeId, (set = new Set()))
    set.add(rep)
    node.runningTasks++
    const a = this.ops.assignmentOf(rec)
    a.inlineReturns = VERIFIED_RETURNS_MAX_BYTES
    this.deps.events.state(rec.spec.taskId, 'SUBMITTED_TO_WORKER', { attempt: 0, nodeId: node.nodeId })
    session.pushAssignment(a, this.deps.functionOf(rec.jobId, rec.spec.functionId))
  }

  /** A node reported a result. Returns whether it was a replica's (then it is handled here). */
  onResult(from: Session, r: TaskResult): boolean {
    const rep = this.running.get(`${r.taskId}:${from.nodeId}`)
    if (!rep || r.attempt !== 0) return false
    this.ended(rep, true)
    const v = this.live.get(rep.task)
    if (!v) return true // the task was settled meanwhile (cancelled, its owner gone)
    const nodeId = from.nodeId as string
    if (r.ok) {
      const returns = r.returns.filter((x): x is Uint8Array => x instanceof Uint8Array)
      // A node that kept returns in its store, or returned refs, did not do what a replica does: no vote.
      if (returns.length !== r.returns.length || r.nestedRefs?.length)
        this.lost(rep.task, v, `node ${nodeId} did not return its values inline`)
      else if (!this.vote(rep.task, v, nodeId, { ok: true, returns })) return true
    } else if (r.userError) this.vote(rep.task, v, nodeId, { ok: false, error: r.error })
    else this.lost(rep.task, v, `node ${nodeId}: ${r.error.message}`)
    this.settleIfDone(rep.task, v)
    return true
  }

  /** A node died: its replicas are lost (no vote); others run in their place while the budget lasts. */
  onNodeDead(nodeId: string): void {
    const reps = [...(this.byNode.get(nodeId) ?? [])]
    const reason = this.deps.nodes.get(nodeId)?.deathReason ?? 'it died'
    for (const rep of reps) {
      this.ended(rep, false)
      const v = this.live.get(rep.task)
      if (!v) continue
      this.lost(rep.task, v, `node ${nodeId} died (${reason})`)
      this.settleIfDone(rep.task, v)
    }
    this.byNode.delete(nodeId)
  }

  /** The task was settled another way (cancelled, failed before it ran, its owner gone): no more replicas. */
  stop(rec: TaskRecord): void {
    const v = this.live.get(rec)
    if (!v) return
    this.forget(rec, v)
    for (const rep of v.queued) this.deps.scheduler.remove(rep)
    v.queued.clear()
  }

  /** The task's vote is over: it and the outcome bytes it held go. */
  private forget(rec: TaskRecord, v: Verification): void {
    this.live.delete(rec)
    if (!v.held) return
    const tenant = rec.owner.tenant
    const left = (this.heldBy.get(tenant) ?? 0) - v.held
    if (left > 0) this.heldBy.set(tenant, left)
    else this.heldBy.delete(tenant)
    v.held = 0
  }

  /** No node alive could ever take this replica (too few distinct nodes fit it): it waits, and its owner is told once. */
  infeasible(rep: Replica, yes: boolean): void {
    const rec = rep.task
    this.deps.events.setInfeasible(rec.spec.taskId, yes)
    const key = `verify:${rep.queueKey ?? ''}`
    if (!yes || rec.owner.warnedShapes.has(key)) return
    rec.owner.warnedShapes.add(key)
    const n = rec.spec.verify?.replicas ?? 2
    const message =
      `Verified task ${rec.spec.name} (${rec.spec.taskId}) needs ${n} distinct nodes that fit it` +
      `${rec.volunteers ? '' : ' (trusted nodes only: its options do not allow volunteers)'}; ` +
      `${rep.avoid.size} ran a replica and no other node alive fits one. It waits for more nodes.`
    rec.owner.send({ type: 'warning', message, taskIds: [rec.spec.taskId] })
  }

  /** A replica can never be placed (a hard affinity to a node that is gone). Failing the task stops its replicas. */
  unschedulable(rep: Replica, reason: string): void {
    const rec = rep.task
    this.ops.fail(rec, new TaskUnschedulableError(rec.spec.taskId, reason).toWire())
  }

  /** A replica is off its node: its resources come back (unless the node died with them). */
  private ended(rep: Replica, giveBack: boolean): void {
    const nodeId = rep.nodeId as string
    this.running.delete(`${rep.task.spec.taskId}:${nodeId}`)
    this.byNode.get(nodeId)?.delete(rep)
    const node = this.deps.nodes.get(nodeId)
    if (node) node.runningTasks = Math.max(0, node.runningTasks - 1)
    if (node && giveBack) this.ops.releaseOn(node, rep.resources)
    const v = this.live.get(rep.task)
    if (v) v.running--
  }

  /**
   * Records a replica's vote. A new outcome's bytes are held until the vote ends and count against the tenant's
   * stored bytes: past its quota the task fails (returns false) rather than the coordinator holding without bound.
   */
  private vote(rec: TaskRecord, v: Verification, nodeId: string, outcome: Outcome): boolean {
    const key = outcomeKey(outcome)
    if (!v.outcomes.has(key)) {
      const bytes = outcome.ok ? outcome.returns.reduce((n, r) => n + r.byteLength, 0) : 0
      const tenant = rec.owner.tenant
      const held = this.heldBy.get(tenant) ?? 0
      const quota = this.deps.storedQuota(tenant)
      if (held + bytes > quota) {
        const why = `verified results waiting to be compared would exceed the tenant's quota of ${quota} stored bytes`
        this.ops.fail(rec, new ObjectStoreFullError(`task ${rec.spec.name} (${rec.spec.taskId}): ${why}`).toWire())
        return false
      }
      this.heldBy.set(tenant, held + bytes)
      v.held += bytes
      v.outcomes.set(key, outcome)
    }
    v.tally.record(key, nodeId)
    return true
  }

  /** A replica ended without a vote: another runs in its place, while the budget lasts. */
  private lost(rec: TaskRecord, v: Verification, why: string): void {
    v.lastLoss = why
    if (v.budget <= 0) return
    v.budget--
    this.launch(rec, v, 1)
  }

  /** Once no replica of the task runs or waits, the votes decide. */
  private settleIfDone(rec: TaskRecord, v: Verification): void {
    if (v.running > 0 || v.queued.size > 0) return
    const verdict = v.tally.decide(v.budget)
    if (verdict.kind === 'more') {
      v.budget -= verdict.count
      return this.launch(rec, v, verdict.count)
    }
    this.forget(rec, v)
    const { name, taskId } = rec.spec
    if (verdict.kind === 'undecided') {
      const reason = v.lastLoss ? `${verdict.reason}; the last replica lost: ${v.lastLoss}` : verdict.reason
      const groups = v.tally.byOutcome().map((g) => ({ digest: g.key, nodes: g.nodes }))
      return this.ops.fail(rec, new VerificationError(taskId, reason, groups).toWire())
    }
    for (const nodeId of verdict.minority)
      this.deps.quarantine(
        nodeId,
        `returned a result for verified task ${name} (${taskId}) that disagreed with ${verdict.agreed.length} other node(s)`,
      )
    const outcome = v.outcomes.get(verdict.key) as Outcome
    if (outcome.ok) this.ops.accept(rec, [...outcome.returns])
    else this.ops.fail(rec, outcome.error)
  }
}
