import * as v from 'valibot'
import { encodeValue } from '../sdk/codec.ts'
import { DependencyResolver } from '../sdk/dependency-resolver.ts'
import { ActorUnschedulableError, TaskCancelledError, ValidationError, type WireError } from '../sdk/errors.ts'
import { jobIdOfTask, type ObjectId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { whereTheDataIs } from '../sdk/locality.ts'
import { type Assignment, invalidText, type TaskResult, TaskSpecSchema, verifyProblem } from '../sdk/protocol/index.ts'
import { quantityProblem, type ResourceUnits, release, toUnits } from '../sdk/resources.ts'
import { decideRetry } from '../sdk/retry-policy.ts'
import type { ActorManager, ActorTaskOps } from './actor-manager.ts'
import type { TenantQuota } from './auth.ts'
import type { FunctionTable } from './gcs/functions.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import { infeasibleWarning } from './scheduler/policy.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'
import type { TaskRecord } from './task-record.ts'
import { VerifiedTasks } from './verified-tasks.ts'

export type { TaskRecord }

const NULL_VALUE = encodeValue(null, 'null')

/**
 * The tasks the coordinator places itself — actors' creations (Ray's GCS places actors) and verified tasks (their
 * replicas' results must be compared by someone no node can lie to) — from submit to result. Other plain tasks never
 * come here (their owners lease workers and push them), nor actor calls (their callers send them to the actor's node
 * under an actor lease).
 */
export class PlacedTasks implements ActorTaskOps {
  private tasks = new Map<string, TaskRecord>()
  private byNode = new Map<string, Set<TaskRecord>>()
  /** Live tasks by the connection that submitted them (their owner), for fate sharing. */
  private byOwner = new Map<Session, Set<TaskRecord>>()
  /** Tasks here per tenant, against its quota. */
  private pendingByTenant = new Map<string, number>()
  actors!: ActorManager
  readonly verified: VerifiedTasks
  private readonly waits: DependencyResolver<TaskRecord>

  constructor(
    private readonly deps: {
      nodes: NodeTable
      functions: FunctionTable
      objects: ObjectDirectory
      events: TaskEvents
      scheduler: Scheduler<Schedulable>
      nodeSession(nodeId: string): Session | undefined
      /** Whether `owner` may use this object (its own tenant's): another tenant's ref is an unknown one. */
      visible(owner: Session, objectId: string): boolean
      quotaOf(tenant: string): TenantQuota
      /** A node returned a minority result for a verified task. */
      quarantine(nodeId: string, reason: string): void
    },
  ) {
    this.waits = new DependencyResolver(deps.objects, (rec, failed) => (failed ? this.fail(rec, failed) : this.argsReady(rec)))
    this.verified = new VerifiedTasks(
      {
        assignmentOf: (rec) => this.assignmentOf(rec),
        accept: (rec, returns) => this.succeed(rec, returns, undefined, ''),
        fail: (rec, error) => this.fail(rec, error),
        releaseOn: (node, resources) => this.releaseOn(node, resources),
      },
      {
        nodes: deps.nodes,
        events: deps.events,
        scheduler: deps.scheduler,
        nodeSession: deps.nodeSession,
        functionOf: (jobId, functionId) => deps.functions.get(jobId, functionId),
        quarantine: deps.quarantine,
        storedQuota: (tenant) => deps.quotaOf(tenant).maxStoredBytes,
      },
    )
  }

  get(taskId: string): TaskRecord | undefined {
    return this.tasks.get(taskId)
  }

  get pending(): number {
    return this.tasks.size
  }

  private track(rec: TaskRecord): void {
    if (this.tasks.has(rec.spec.taskId)) return
    this.tasks.set(rec.spec.taskId, rec)
    this.pendingByTenant.set(rec.owner.tenant, (this.pendingByTenant.get(rec.owner.tenant) ?? 0) + 1)
  }

  /** Whether a task of `jobId` the coordinator placed is on `nodeId` now. */
  runsJobOn(nodeId: string, jobId: string): boolean {
    for (const rec of this.byNode.get(nodeId) ?? []) if (rec.jobId === jobId) return true
    return false
  }

  /** How many tasks the coordinator placed on `nodeId` are there now (actors' creations, verified replicas). */
  countOn(nodeId: string): number {
    return this.byNode.get(nodeId)?.size ?? 0
  }

  /**
   * Accepts one task spec from a driver. A bad spec fails its own returns and nothing else; a spec too broken to name
   * its task is told to `unnamed` (the caller answers a message's worth of those once).
   */
  submit(owner: Session, raw: unknown, unnamed: (why: string) => void): void {
    const reject = (why: string) => this.reject(owner, raw, why, unnamed)
    const parsed = v.safeParse(TaskSpecSchema, raw)
    if (!parsed.success) return reject(invalidText('malformed task spec', parsed.issues))
    const spec = parsed.output
    if (spec.type === 'NORMAL_TASK' && !spec.verify)
      return reject('plain tasks go to leased nodes (lease-request), not through submit (unless verified)')
    if (spec.verify && spec.type !== 'NORMAL_TASK') return reject('verify applies to plain tasks only')
    const unverifiable = verifyProblem(spec.verify, spec.strategy)
    if (unverifiable) return reject(unverifiable)
    if (spec.type === 'ACTOR_TASK') return reject("actor calls go to the actor's node (actor-lease-request), not through submit")
    const { objects, events, functions } = this.deps
    if (jobIdOfTask(spec.taskId as TaskId) !== owner.jobId) return reject('the task id does not belong to this job')
    if (this.tasks.has(spec.taskId) || events.get(spec.taskId)) return // a duplicate submit: the first one stands
    const quota = this.deps.quotaOf(owner.tenant).maxPendingTasks
    if ((this.pendingByTenant.get(owner.tenant) ?? 0) >= quota)
      return reject(`the tenant's quota of ${quota} pending tasks on the coordinator is used up (wait for some to finish)`)
    const rec: TaskRecord = {
      spec,
      jobId: owner.jobId as string,
      owner,
      attempt: 0,
      phase: 'waiting-deps',
      missing: 0,
      pinned: [],
      resources: toUnits(spec.resources),
      strategy: spec.strategy,
      ...(spec.volunteers && { volunteers: true }),
    }
    this.track(rec)
    let owned = this.byOwner.get(owner)
    if (!owned) this.byOwner.set(owner, (owned = new Set()))
    owned.add(rec)
    for (let i = 1; i <= spec.numReturns; i++) objects.create(objectIdOf(spec.taskId as TaskId, i), rec.jobId, owner)
    events.created(spec, rec.jobId)

    for (const [k, q] of Object.entries(spec.resources)) {
      const problem = quantityProblem(k, q)
      if (problem) return this.fail(rec, new ValidationError(`task ${spec.name} cannot run: ${problem}`).toWire())
    }
    if ((spec.type === 'ACTOR_CREATION_TASK' || spec.verify) && !functions.get(rec.jobId, spec.functionId))
      return this.fail(rec, new ValidationError(`unknown function ${spec.functionId}: it was never registered`).toWire())
    const deps = spec.args.flatMap((a) => ('ref' in a ? [a.ref as ObjectId] : []))
    const refs = [...deps, ...((spec.nestedRefs ?? []) as ObjectId[])]
    for (const id of refs) {
      if (!objects.has(id) || !this.deps.visible(owner, id))
        return this.fail(
          rec,
          new ValidationError(`argument ObjectRef(${id}) is unknown to this coordinator (freed, forged, or from another cluster)`).toWire(),
        )
    }
    // Every ref the task will see stays alive while it is pending; only the top-level ones are waited for.
    for (const id of refs) {
      objects.pin(id)
      rec.pinned.push(id)
    }
    if (spec.type === 'ACTOR_CREATION_TASK' && !this.actors.register(rec)) return
    this.waits.wait(rec, deps)
  }

  /** Its arguments are ready and none failed (one that failed fails the task with the same error, as in Ray). */
  private argsReady(rec: TaskRecord): void {
    rec.preferNode = whereTheDataIs(rec.spec.args, (id) => this.deps.objects.read(id))
    if (!rec.spec.verify) return this.queue(rec)
    rec.phase = 'queued'
    this.deps.events.state(rec.spec.taskId, 'PENDING_NODE_ASSIGNMENT', { attempt: 0 })
    this.verified.start(rec)
  }

  /** No node alive could ever fit the actor: it waits for one (as in Ray), and its owner is told once per shape. */
  infeasible(rec: TaskRecord, yes: boolean): void {
    this.deps.events.setInfeasible(rec.spec.taskId, yes)
    const key = rec.queueKey ?? ''
    if (!yes || rec.owner.warnedShapes.has(key)) return
    rec.owner.warnedShapes.add(key)
    const message = infeasibleWarning(rec.spec.name, rec.spec.taskId, rec.resources, this.deps.nodes.alive())
    rec.owner.send({ type: 'warning', message, taskIds: [rec.spec.taskId] })
  }

  /** The actor can never be placed (hard affinity to a node that is gone or too small). */
  unschedulable(rec: TaskRecord, reason: string): void {
    this.fail(rec, new ActorUnschedulableError(rec.spec.taskId, reason).toWire())
  }

  /** Puts a task in line for a node (first attempt or retry). */
  queue(rec: TaskRecord, front = false): void {
    rec.phase = 'queued'
    rec.nodeId = undefined
    this.deps.events.state(rec.spec.taskId, 'PENDING_NODE_ASSIGNMENT', { attempt: rec.attempt })
    if (rec.spec.type === 'ACTOR_CREATION_TASK') this.actors.creationQueued(rec)
    if (front) this.deps.scheduler.requeueFront(rec)
    else this.deps.scheduler.enqueue(rec)
  }

  /** Sends an actor's creation to a node (the scheduler placed it there). */
  dispatch(rec: TaskRecord, node: NodeRecord): void {
    const session = this.deps.nodeSession(node.nodeId)
    if (!session) {
      // The node's socket is gone but its death is not processed yet: put the task back.
      if (rec.spec.type === 'ACTOR_CREATION_TASK') this.releaseOn(node, rec.resources)
      return this.queue(rec, true)
    }
    rec.phase = 'assigned'
    rec.nodeId = node.nodeId
    let set = this.byNode.get(node.nodeId)
    if (!set) this.byNode.set(node.nodeId, (set = new Set()))
    set.add(rec)
    node.runningTasks++
    const s = rec.spec
    const a = this.assignmentOf(rec)
    if (s.type === 'ACTOR_CREATION_TASK') this.actors.creationDispatched(rec, node.nodeId)
    this.deps.events.state(s.taskId, 'SUBMITTED_TO_WORKER', { attempt: rec.attempt, nodeId: node.nodeId })
    session.pushAssignment(a, this.deps.functions.get(rec.jobId, s.functionId))
  }

  /** What a node is sent to run the task: its reference arguments resolved to inline values or where they live. */
  assignmentOf(rec: TaskRecord): Assignment {
    const s = rec.spec
    const a: Assignment = {
      taskId: s.taskId,
      attempt: rec.attempt,
      jobId: rec.jobId,
      type: s.type,
      functionId: s.functionId,
      name: s.name,
      funcName: s.funcName,
      args: s.args.map((x) => {
        if ('v' in x) return x.v
        const e = this.deps.objects.read(x.ref as ObjectId)
        if (e?.data) return e.data
        return { ref: x.ref, size: e?.size ?? 0, locations: e?.locations ? [...e.locations] : [] }
      }),
      numReturns: s.numReturns,
      units: rec.resources,
      namespace: rec.owner.namespace,
    }
    if (s.actorId) a.actorId = s.actorId
    if (s.type === 'ACTOR_CREATION_TASK') a.actor = { className: s.actor?.className ?? '?', maxConcurrency: s.actor?.maxConcurrency ?? 1 }
    return a
  }

  /** getIfExists found a live actor of that name: the creation is settled as ready without running. */
  actorAliasReady(rec: TaskRecord): void {
    this.deps.objects.resolve(objectIdOf(rec.spec.taskId as TaskId, 1), { data: NULL_VALUE })
    this.deps.events.state(rec.spec.taskId, 'FINISHED', { attempt: rec.attempt })
    this.done(rec)
  }

  /** An actor restarts: its creation task runs again (it was done, so it is tracked again). */
  requeueCreation(rec: TaskRecord): void {
    this.track(rec)
    this.byOwner.get(rec.owner)?.add(rec)
    this.queue(rec, true)
  }

  /** A node reports results. Anything not from the current attempt on the node it was sent to is ignored. */
  onResults(from: Session, results: TaskResult[]): void {
    for (const r of results) {
      if (this.verified.onResult(from, r)) continue
      const rec = this.tasks.get(r.taskId)
      if (!rec) this.discardStored(from, r)
      if (rec?.phase !== 'assigned' || rec.attempt !== r.attempt || rec.nodeId !== from.nodeId) continue
      const nodeId = rec.nodeId as string
      this.unassign(rec)
      if (r.ok) this.succeed(rec, r.returns, r.nestedRefs as ObjectId[] | undefined, nodeId)
      else if (decideRetry(rec.attempt, rec.spec, r.error, r.userError).kind === 'retry') this.retry(rec, r.error)
      else this.fail(rec, r.error)
    }
  }

  /**
   * A result nobody takes any more (the task was cancelled or finished elsewhere): its large returns, already in the
   * node's store, would stay there forever. The node drops the ones the directory does not list it for.
   */
  private discardStored(from: Session, r: TaskResult): void {
    if (!r.ok) return
    const orphans: string[] = []
    r.returns.forEach((x, i) => {
      if (x instanceof Uint8Array) return
      const id = objectIdOf(r.taskId as TaskId, i + 1)
      if (!this.deps.objects.read(id)?.locations?.has(from.nodeId as string)) orphans.push(id)
    })
    if (orphans.length) from.send({ type: 'delete-objects', objectIds: orphans })
  }

  /** Takes a task off its node. Leaves it unassigned, so this happens once. */
  private unassign(rec: TaskRecord): void {
    const node = rec.nodeId ? this.deps.nodes.get(rec.nodeId) : undefined
    if (rec.nodeId) this.byNode.get(rec.nodeId)?.delete(rec)
    rec.phase = 'waiting-deps'
    rec.nodeId = undefined
    // An actor keeps its creation resources for its whole life; the actor manager releases them.
    if (node) node.runningTasks = Math.max(0, node.runningTasks - 1)
  }

  /** Gives resources back on a node (an actor's, when it ends). */
  releaseOn(node: NodeRecord, resources: ResourceUnits): void {
    if (node.state === 'ALIVE') release(resources, node.available)
    this.deps.scheduler.requestPass()
  }

  private succeed(rec: TaskRecord, returns: (Uint8Array | { stored: number })[], nested: ObjectId[] | undefined, nodeId: string): void {
    const s = rec.spec
    if (returns.length !== s.numReturns) {
      return this.fail(rec, ValidationError.returnCount(s.name, returns.length, s.numReturns).toWire())
    }
    if (s.type === 'ACTOR_CREATION_TASK') this.actors.created(rec)
    for (let i = 0; i < returns.length; i++) {
      const r = returns[i] ?? NULL_VALUE
      const id = objectIdOf(s.taskId as TaskId, i + 1)
      // Nested refs stay alive while the (first) return that holds them does.
      const extra = i === 0 && nested?.length ? { nested } : {}
      if (r instanceof Uint8Array) this.deps.objects.resolve(id, { data: r, ...extra })
      else this.deps.objects.resolve(id, { size: r.stored, location: nodeId, ...extra })
    }
    this.deps.events.state(s.taskId, 'FINISHED', { attempt: rec.attempt })
    this.done(rec, s.type === 'ACTOR_CREATION_TASK')
  }

  /** Runs the task again as a new attempt; the failed attempt's row keeps its error. */
  retry(rec: TaskRecord, error: WireError): void {
    this.deps.events.failed(rec.spec.taskId, rec.attempt, error)
    rec.attempt++
    this.queue(rec, true)
  }

  /** Fails a task: its returns hold the error, which `get` rethrows. */
  fail(rec: TaskRecord, error: WireError): void {
    if (rec.phase === 'done') return
    if (rec.spec.verify) this.verified.stop(rec)
    if (rec.phase === 'assigned') this.unassign(rec)
    else if (rec.phase === 'queued') this.deps.scheduler.remove(rec)
    const s = rec.spec
    for (let i = 1; i <= s.numReturns; i++) this.deps.objects.resolve(objectIdOf(s.taskId as TaskId, i), { error })
    this.deps.events.failed(s.taskId, rec.attempt, error)
    this.done(rec)
    if (s.type === 'ACTOR_CREATION_TASK') this.actors.creationFailed(rec, error)
  }

  /** A successful actor creation keeps its arguments pinned: a restart needs them again (released at its death). */
  private done(rec: TaskRecord, keepPins = false): void {
    rec.phase = 'done'
    if (this.tasks.delete(rec.spec.taskId)) {
      const tenant = rec.owner.tenant
      this.pendingByTenant.set(tenant, (this.pendingByTenant.get(tenant) ?? 1) - 1)
    }
    this.byOwner.get(rec.owner)?.delete(rec)
    if (!keepPins) this.releasePins(rec)
  }

  releasePins(rec: TaskRecord): void {
    for (const id of rec.pinned) this.deps.objects.unpin(id)
    rec.pinned = []
  }

  /** Takes a task off the node it was sent to without giving resources back (they went with a dead worker or node). */
  forgetPlacement(rec: TaskRecord): void {
    if (rec.phase === 'assigned' && rec.nodeId) {
      this.byNode.get(rec.nodeId)?.delete(rec)
      const node = this.deps.nodes.get(rec.nodeId)
      if (node) node.runningTasks = Math.max(0, node.runningTasks - 1)
    }
    if (rec.phase !== 'done') rec.phase = 'waiting-deps'
    rec.nodeId = undefined
  }

  /** A node died: its tasks run again elsewhere while they have retries; its actors restart or die. */
  onNodeDead(nodeId: string): void {
    const set = this.byNode.get(nodeId)
    this.byNode.delete(nodeId)
    for (const rec of set ?? []) {
      if (rec.phase !== 'assigned' || rec.nodeId !== nodeId) continue
      // The resources died with the node: nothing to give back; the actor manager decides what runs again.
      rec.phase = 'waiting-deps'
      rec.nodeId = undefined
    }
    this.actors.onNodeDead(nodeId)
    this.verified.onNodeDead(nodeId)
    this.deps.scheduler.requestPass()
  }

  /**
   * `mesh.cancel(ref)` of a task the coordinator placed. A verified task fails with TaskCancelledError (replicas that
   * run finish, and their results are dropped); an actor's creation is refused: only kill() ends an actor.
   */
  cancel(rec: TaskRecord): void {
    if (!rec.spec.verify) throw new ValidationError('cancel: use kill() for actors')
    this.fail(rec, new TaskCancelledError(rec.spec.taskId).toWire())
  }

  /**
   * The connection that submitted tasks here went away. Its verified tasks end (fate sharing: nobody owns their
   * results); its actors' creations end with their actors (the actor manager ends the actors it owned).
   */
  ownerGone(owner: Session): void {
    for (const rec of this.byOwner.get(owner) ?? [])
      if (rec.spec.verify) this.fail(rec, new TaskCancelledError(rec.spec.taskId, 'cancelled: its owner went away').toWire())
    this.byOwner.delete(owner)
  }

  reject(owner: Session, raw: unknown, why: string, unnamed: (why: string) => void): void {
    const r = raw as { taskId?: unknown; numReturns?: unknown; name?: unknown }
    const error = new ValidationError(`task ${typeof r?.name === 'string' ? r.name : ''} rejected: ${why}`.replace('  ', ' ')).toWire()
    if (typeof r?.taskId === 'string' && /^[0-9a-f]{48}$/.test(r.taskId) && jobIdOfTask(r.taskId as TaskId) === owner.jobId) {
      const n = typeof r.numReturns === 'number' && r.numReturns >= 1 && r.numReturns <= 1000 ? r.numReturns : 1
      for (let i = 1; i <= n; i++) owner.pushObject({ objectId: objectIdOf(r.taskId as TaskId, i), error })
    } else unnamed(error.message)
  }
}
