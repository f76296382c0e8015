import * as v from 'valibot'
import { encodeValue } from '../sdk/codec.ts'
import {
  ActorUnschedulableError,
  NodeDiedError,
  TaskCancelledError,
  TaskUnschedulableError,
  ValidationError,
  type WireError,
} from '../sdk/errors.ts'
import { jobIdOfTask, type ObjectId, objectIdOf, type TaskId, taskIdOfObject } from '../sdk/ids.ts'
import { type Assignment, type TaskResult, type TaskSpec, TaskSpecSchema } from '../sdk/protocol/index.ts'
import { allocate, fits, formatResources, quantityProblem, RESOURCE_UNITS, type ResourceUnits, release, toUnits } from '../sdk/resources.ts'
import type { ActorManager } from './actor-manager.ts'
import type { FunctionTable } from './gcs/functions.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import { pickBacklogNode } from './scheduler/policy.ts'
import { Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'

/** A task the coordinator is responsible for, from submit until its result is stored. */
export interface TaskRecord {
  spec: TaskSpec
  jobId: string
  owner: Session
  attempt: number
  phase: 'waiting-deps' | 'queued' | 'assigned' | 'done'
  /** Top-level ref arguments not yet ready (only those are dependencies, as in Ray). */
  missing: number
  nodeId?: string
  /** Everything pinned for this task: released when it is done. */
  pinned: ObjectId[]
  /** What it holds while it runs, in fixed-point units. */
  resources: ResourceUnits
  strategy: TaskSpec['strategy']
  shapeKey?: string
  /** Sent to a node's local queue without resources (pipelining); promoted when the node frees enough. */
  backlogged?: boolean
  /** When the task got its resources on a node (ms), to learn how long its function runs. */
  startedAt?: number
  /** Waiting in get/wait inside the task: its resources are lent back to the node meanwhile. */
  blocked?: boolean
  preferNode?: string
}

/** Functions that usually finish within this long are pipelined; longer ones never wait in a node's queue. */
const PIPELINE_MAX_MS = 50

const NULL_VALUE = encodeValue(null, 'null')

/** Ray's task lifecycle on the coordinator: submit → args ready → placed → result, with retries and cancellation. */
export class TaskManager {
  readonly scheduler: Scheduler<TaskRecord>
  private tasks = new Map<string, TaskRecord>()
  private byNode = new Map<string, Set<TaskRecord>>()
  /** Per node, the pipelined tasks waiting in its local queue, in the order the node will start them. */
  private backlogs = new Map<string, TaskRecord[]>()
  /** Per function, a moving average of how long its tasks hold a node (ms). */
  private runtimes = new Map<string, number>()
  /** Tasks submitted by a task (from inside its worker), by parent: what `cancel(…, { recursive })` reaches. */
  private children = new Map<string, Set<string>>()
  /** Live tasks by the connection that submitted them (their owner), for fate sharing. */
  private byOwner = new Map<Session, Set<TaskRecord>>()
  actors!: ActorManager

  constructor(
    private readonly deps: {
      nodes: NodeTable
      functions: FunctionTable
      objects: ObjectDirectory
      events: TaskEvents
      nodeSession(nodeId: string): Session | undefined
      /** The clock task runtimes are measured by (they decide pipelining; the simulator gives its own). */
      now(): number
    },
  ) {
    this.scheduler = new Scheduler<TaskRecord>({
      nodes: () => deps.nodes.alive(),
      dispatch: (t, n) => this.dispatch(t, n),
      fail: (t, reason) => {
        const Unschedulable = t.spec.type === 'ACTOR_CREATION_TASK' ? ActorUnschedulableError : TaskUnschedulableError
        this.fail(t, new Unschedulable(t.spec.taskId, reason).toWire())
      },
      infeasible: (t, yes) => this.infeasible(t, yes),
      pipeline: (t, nodes) => this.pipeline(t, nodes),
    })
  }

  get(taskId: string): TaskRecord | undefined {
    return this.tasks.get(taskId)
  }

  get pending(): number {
    return this.tasks.size
  }

  /** Accepts one task spec from a driver. A bad spec fails its own returns and nothing else. */
  submit(owner: Session, raw: unknown): void {
    const parsed = v.safeParse(TaskSpecSchema, raw)
    if (!parsed.success) {
      const issue = parsed.issues[0]
      const where = issue.path?.map((p) => String(p.key)).join('.') ?? ''
      this.rejectRaw(owner, raw, `malformed task spec${where ? ` at '${where}'` : ''}: ${issue.message}`)
      return
    }
    const spec = parsed.output
    if (spec.type === 'ACTOR_TASK' && spec.actorId) spec.actorId = this.actors.canonical(spec.actorId)
    const { objects, events, functions } = this.deps
    if (jobIdOfTask(spec.taskId as TaskId) !== owner.jobId) return this.rejectRaw(owner, raw, 'the task id does not belong to this job')
    if (this.tasks.has(spec.taskId) || events.get(spec.taskId)) return // a duplicate submit: the first one stands
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
    }
    this.tasks.set(spec.taskId, rec)
    let owned = this.byOwner.get(owner)
    if (!owned) this.byOwner.set(owner, (owned = new Set()))
    owned.add(rec)
    for (let i = 1; i <= spec.numReturns; i++) objects.create(objectIdOf(spec.taskId as TaskId, i), rec.jobId, owner)
    events.created(spec, rec.jobId)
    if (spec.parentTaskId) this.childOf(spec.parentTaskId).add(spec.taskId)

    for (const [k, q] of Object.entries(spec.resources)) {
      const problem = quantityProblem(k, q)
      if (problem) return this.fail(rec, new ValidationError(`task ${spec.name} cannot run: ${problem}`).toWire())
    }
    if (spec.type !== 'ACTOR_TASK' && !functions.get(spec.functionId))
      return this.fail(rec, new ValidationError(`unknown function ${spec.functionId}: it was never registered`).toWire())
    const deps = spec.args.flatMap((a) => ('ref' in a ? [a.ref as ObjectId] : []))
    const refs = [...deps, ...((spec.nestedRefs ?? []) as ObjectId[])]
    for (const id of refs) {
      if (!objects.has(id))
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
    if (spec.type === 'ACTOR_TASK') this.actors.enqueueCall(rec)
    for (const id of deps) {
      if (objects.isReady(id)) continue
      rec.missing++
      objects.onReady(id, () => {
        if (--rec.missing === 0 && rec.phase === 'waiting-deps') this.argsReady(rec)
      })
    }
    if (rec.missing === 0) this.argsReady(rec)
  }

  private childOf(parent: string): Set<string> {
    let set = this.children.get(parent)
    if (!set) this.children.set(parent, (set = new Set()))
    return set
  }

  private argsReady(rec: TaskRecord): void {
    // A task whose argument failed fails with the same error, as in Ray.
    for (const a of rec.spec.args) {
      if (!('ref' in a)) continue
      const err = this.deps.objects.read(a.ref as ObjectId)?.error
      if (err) return this.fail(rec, err)
    }
    if (rec.spec.type === 'ACTOR_TASK') return this.actors.pump(rec.spec.actorId as string)
    rec.preferNode = this.whereTheDataIs(rec)
    this.queue(rec)
  }

  /**
   * No node alive could ever fit the task: it waits for one (as in Ray), and its driver is told once per shape of
   * request, in a line that names the task and what it needs, instead of a silent wait.
   */
  private infeasible(rec: TaskRecord, yes: boolean): void {
    this.deps.events.setInfeasible(rec.spec.taskId, yes)
    if (!yes || rec.owner.warnedShapes.has(rec.shapeKey ?? '')) return
    rec.owner.warnedShapes.add(rec.shapeKey ?? '')
    const largest = this.deps.nodes.alive().reduce<ResourceUnits | undefined>((best, n) => {
      const cpu = n.total.CPU ?? 0
      return !best || cpu > (best.CPU ?? 0) ? n.total : best
    }, undefined)
    const message =
      `task '${rec.spec.name}' (${rec.spec.taskId}) cannot be scheduled: it requires ${formatResources(rec.resources)}, ` +
      `which no node in the cluster can provide (${largest ? `the largest has ${formatResources(largest)}` : 'there are no nodes'}). ` +
      'It waits until a node that fits joins; consider asking for less.'
    rec.owner.send({ type: 'warning', message, taskIds: [rec.spec.taskId] })
  }

  /** The node holding the most bytes of this task's large ref arguments, if any. */
  private whereTheDataIs(rec: TaskRecord): string | undefined {
    const bytes = new Map<string, number>()
    for (const a of rec.spec.args) {
      if (!('ref' in a)) continue
      const e = this.deps.objects.read(a.ref as ObjectId)
      for (const n of e?.locations ?? []) bytes.set(n, (bytes.get(n) ?? 0) + (e?.size ?? 0))
    }
    let best: string | undefined
    for (const [n, b] of bytes) if (!best || b > (bytes.get(best) ?? 0)) best = n
    return best
  }

  /** Puts a task in line for a node (first attempt or retry). */
  queue(rec: TaskRecord, front = false): void {
    rec.phase = 'queued'
    rec.nodeId = undefined
    this.deps.events.state(rec.spec.taskId, 'PENDING_NODE_ASSIGNMENT', { attempt: rec.attempt })
    if (rec.spec.type === 'ACTOR_CREATION_TASK') this.actors.creationQueued(rec)
    if (front) this.scheduler.requeueFront(rec)
    else this.scheduler.enqueue(rec)
  }

  /** A short task no node can run now waits in the local queue of one that can (see pickBacklogNode). */
  private pipeline(rec: TaskRecord, nodes: NodeRecord[]): boolean {
    if (rec.spec.type !== 'NORMAL_TASK') return false
    const runtime = this.runtimes.get(rec.spec.functionId)
    if (runtime === undefined || runtime > PIPELINE_MAX_MS) return false
    const views = nodes.map((n) => ({
      ...n,
      backlog: this.backlogs.get(n.nodeId)?.length ?? 0,
      backlogLimit: Math.max(1, Math.ceil((2 * (n.total.CPU ?? RESOURCE_UNITS)) / RESOURCE_UNITS)),
    }))
    const nodeId = pickBacklogNode(rec.resources, rec.strategy, views)
    const node = nodeId ? nodes.find((n) => n.nodeId === nodeId) : undefined
    if (!node) return false
    rec.backlogged = true
    let q = this.backlogs.get(node.nodeId)
    if (!q) this.backlogs.set(node.nodeId, (q = []))
    q.push(rec)
    this.dispatch(rec, node)
    return true
  }

  /**
   * The node started a task it held in its queue before this coordinator promoted it (its room freed there first):
   * from now on it is counted as holding its resources here too, so nothing more is sent for that room.
   */
  startedOnNode(rec: TaskRecord): void {
    if (!rec.backlogged || rec.phase !== 'assigned' || !rec.nodeId) return
    const node = this.deps.nodes.get(rec.nodeId)
    if (!node) return
    this.dropBacklogged(rec, rec.nodeId)
    allocate(rec.resources, node.available)
    rec.startedAt = this.deps.now()
  }

  /**
   * A node gave back tasks it could not start (see the `unqueued` message): they never ran there, so they go back in
   * line at the front, as they were, for a node with room — with no retry counted.
   */
  onUnqueued(from: Session, tasks: { taskId: string; attempt: number }[]): void {
    for (const t of tasks) {
      const rec = this.tasks.get(t.taskId)
      if (rec?.phase !== 'assigned' || rec.nodeId !== from.nodeId || rec.attempt !== t.attempt) continue
      // An actor's creation holds its resources through the actor, not the task: give those back too.
      if (rec.spec.type === 'ACTOR_CREATION_TASK') this.actors.creationReturned(rec)
      this.unassign(rec)
      this.queue(rec, true)
    }
  }

  /** Resources freed on a node go first to the tasks already waiting in its local queue, in its order. */
  private promote(node: NodeRecord): void {
    const q = this.backlogs.get(node.nodeId)
    while (q?.length && fits((q[0] as TaskRecord).resources, node.available)) {
      const rec = q.shift() as TaskRecord
      allocate(rec.resources, node.available)
      rec.backlogged = false
      rec.startedAt = this.deps.now()
    }
  }

  /** Sends a task attempt to a node. Used by the scheduler, and by the actor manager for actor calls. */
  dispatch(rec: TaskRecord, node: NodeRecord): void {
    const session = this.deps.nodeSession(node.nodeId)
    if (!session) {
      // The node's socket is gone but its death is not processed yet: put the task back.
      if (rec.backlogged) this.dropBacklogged(rec, node.nodeId)
      else this.releaseOn(node, rec.resources)
      return this.queue(rec, true)
    }
    rec.phase = 'assigned'
    rec.nodeId = node.nodeId
    let set = this.byNode.get(node.nodeId)
    if (!set) this.byNode.set(node.nodeId, (set = new Set()))
    set.add(rec)
    node.runningTasks++
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
    if (!rec.backlogged) rec.startedAt = this.deps.now()
    if (s.actorId) a.actorId = s.actorId
    if (s.method) a.method = s.method
    if (s.type === 'ACTOR_CREATION_TASK') {
      a.actor = { className: s.actor?.className ?? '?', maxConcurrency: s.actor?.maxConcurrency ?? 1 }
      this.actors.creationDispatched(rec, node.nodeId)
    }
    this.deps.events.state(s.taskId, 'SUBMITTED_TO_WORKER', { attempt: rec.attempt, nodeId: node.nodeId })
    session.pushAssignment(a, s.type === 'ACTOR_TASK' ? undefined : this.deps.functions.get(s.functionId))
  }

  /**
   * A task waits for other objects (Ray releases a blocked worker's CPU): its resources go back to the node, so the
   * tasks it waits for can run there, and come back when it stops waiting (the node may be briefly over-committed,
   * as in Ray). The node does the same on its side, in the same order.
   */
  onBlocked(from: Session, taskId: string, attempt: number, blocked: boolean): void {
    const rec = this.tasks.get(taskId)
    if (rec?.phase !== 'assigned' || rec.nodeId !== from.nodeId || rec.attempt !== attempt) return
    if (rec.spec.type !== 'NORMAL_TASK' || rec.backlogged || !!rec.blocked === blocked) return
    const node = this.deps.nodes.get(from.nodeId as string)
    if (!node) return
    rec.blocked = blocked
    if (blocked) this.releaseOn(node, rec.resources)
    else allocate(rec.resources, node.available)
  }

  /** getIfExists found a live actor of that name: the creation is settled as ready without running. */
  actorAliasReady(rec: TaskRecord): void {
    this.deps.objects.resolve(objectIdOf(rec.spec.taskId as TaskId, 1), { data: NULL_VALUE })
    this.deps.events.state(rec.spec.taskId, 'FINISHED', { attempt: rec.attempt })
    this.done(rec)
  }

  /** An actor restarts: its creation task runs again (it was done, so it is tracked again). */
  requeueCreation(rec: TaskRecord): void {
    this.tasks.set(rec.spec.taskId, rec)
    this.byOwner.get(rec.owner)?.add(rec)
    this.queue(rec, true)
  }

  /** A node reports results. Anything not from the current attempt on the node it was sent to is ignored. */
  onResults(from: Session, results: TaskResult[]): void {
    for (const r of results) {
      const rec = this.tasks.get(r.taskId)
      if (!rec) this.discardStored(from, r)
      if (rec?.phase !== 'assigned' || rec.attempt !== r.attempt || rec.nodeId !== from.nodeId) continue
      const nodeId = rec.nodeId as string
      this.unassign(rec)
      if (r.ok) this.succeed(rec, r.returns, r.nestedRefs as ObjectId[] | undefined, nodeId)
      else if (this.shouldRetry(rec, r.error, r.userError)) this.retry(rec, r.error)
      else this.fail(rec, r.error)
    }
  }

  /** Takes a task off its node and gives back its resources. Leaves it unassigned, so this happens once. */
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

  private unassign(rec: TaskRecord): void {
    const node = rec.nodeId ? this.deps.nodes.get(rec.nodeId) : undefined
    if (rec.nodeId) this.byNode.get(rec.nodeId)?.delete(rec)
    rec.phase = 'waiting-deps'
    rec.nodeId = undefined
    const lent = rec.blocked // it gave its resources back while it waited: nothing more to give now
    rec.blocked = false
    if (!node) return
    node.runningTasks = Math.max(0, node.runningTasks - 1)
    if (rec.backlogged) return this.dropBacklogged(rec, node.nodeId) // it held nothing
    if (lent) return
    // An actor keeps its creation resources for its whole life; the actor manager releases them.
    if (rec.spec.type === 'NORMAL_TASK') this.releaseOn(node, rec.resources)
  }

  /**
   * Gives resources back on a node. Tasks already waiting in that node's local queue get them first, in its order —
   * exactly what the node itself does when a slot frees — so both views of the node agree on what runs.
   */
  releaseOn(node: NodeRecord, resources: ResourceUnits): void {
    if (node.state === 'ALIVE') {
      release(resources, node.available)
      this.promote(node)
    }
    this.scheduler.requestPass()
  }

  private dropBacklogged(rec: TaskRecord, nodeId: string): void {
    rec.backlogged = false
    const q = this.backlogs.get(nodeId)
    const i = q ? q.indexOf(rec) : -1
    if (q && i >= 0) q.splice(i, 1)
  }

  private succeed(rec: TaskRecord, returns: (Uint8Array | { stored: number })[], nested: ObjectId[] | undefined, nodeId: string): void {
    const s = rec.spec
    if (returns.length !== s.numReturns) {
      return this.fail(
        rec,
        new ValidationError(`task ${s.name} returned ${returns.length} value(s) but numReturns is ${s.numReturns}`).toWire(),
      )
    }
    if (s.type === 'NORMAL_TASK' && rec.startedAt !== undefined) {
      const ms = this.deps.now() - rec.startedAt
      const prev = this.runtimes.get(s.functionId)
      this.runtimes.set(s.functionId, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
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
    if (s.type === 'ACTOR_TASK') this.actors.callDone(rec)
  }

  private shouldRetry(rec: TaskRecord, error: WireError, userError: boolean): boolean {
    const { maxRetries, retryExceptions } = rec.spec
    const left = maxRetries === -1 || rec.attempt < maxRetries
    if (!left) return false
    if (!userError) return true
    const name = (error.data?.remoteName as string | undefined) ?? error.name
    return retryExceptions === true || (Array.isArray(retryExceptions) && retryExceptions.includes(name))
  }

  /** Runs the task again as a new attempt; the failed attempt's row keeps its error. */
  retry(rec: TaskRecord, error: WireError): void {
    this.deps.events.failed(rec.spec.taskId, rec.attempt, error)
    rec.attempt++
    if (rec.spec.type === 'ACTOR_TASK') {
      rec.phase = 'waiting-deps'
      this.deps.events.state(rec.spec.taskId, 'PENDING_NODE_ASSIGNMENT', { attempt: rec.attempt })
      return this.actors.requeueCall(rec)
    }
    this.queue(rec, true)
  }

  /** Fails a task: its returns hold the error, which `get` rethrows. */
  fail(rec: TaskRecord, error: WireError): void {
    if (rec.phase === 'done') return
    if (rec.phase === 'assigned') this.unassign(rec)
    else if (rec.phase === 'queued') this.scheduler.remove(rec)
    const s = rec.spec
    for (let i = 1; i <= s.numReturns; i++) this.deps.objects.resolve(objectIdOf(s.taskId as TaskId, i), { error })
    this.deps.events.failed(s.taskId, rec.attempt, error)
    this.done(rec)
    if (s.type === 'ACTOR_CREATION_TASK') this.actors.creationFailed(rec, error)
    if (s.type === 'ACTOR_TASK') this.actors.callDone(rec)
  }

  /** A successful actor creation keeps its arguments pinned: a restart needs them again (released at its death). */
  private done(rec: TaskRecord, keepPins = false): void {
    rec.phase = 'done'
    this.tasks.delete(rec.spec.taskId)
    this.byOwner.get(rec.owner)?.delete(rec)
    if (rec.spec.parentTaskId) {
      const siblings = this.children.get(rec.spec.parentTaskId)
      siblings?.delete(rec.spec.taskId)
      if (siblings?.size === 0) this.children.delete(rec.spec.parentTaskId)
    }
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
    rec.backlogged = false
    rec.blocked = false
  }

  /** A node died: its tasks run again elsewhere while they have retries; its actors restart or die. */
  onNodeDead(nodeId: string): void {
    const set = this.byNode.get(nodeId)
    this.byNode.delete(nodeId)
    this.backlogs.delete(nodeId)
    for (const rec of set ?? []) {
      if (rec.phase !== 'assigned' || rec.nodeId !== nodeId) continue
      // The resources died with the node: nothing to give back.
      rec.phase = 'waiting-deps'
      rec.nodeId = undefined
      rec.backlogged = false
      rec.blocked = false
      if (rec.spec.type === 'ACTOR_CREATION_TASK' || rec.spec.type === 'ACTOR_TASK') continue // the actor manager decides
      const left = rec.spec.maxRetries === -1 || rec.attempt < rec.spec.maxRetries
      const error = new NodeDiedError(nodeId, rec.spec.taskId, rec.attempt + 1).toWire()
      if (left) this.retry(rec, error)
      else this.fail(rec, error)
    }
    this.actors.onNodeDead(nodeId)
    this.scheduler.requestPass()
  }

  /**
   * `mesh.cancel(ref)`: a queued task never runs; a running one has its worker stopped. With `recursive`, the tasks
   * it submitted (and theirs) are cancelled too, as Ray's `ray.cancel(recursive=True)`.
   */
  cancel(objectId: ObjectId, force: boolean, reason = 'cancelled', recursive = true): void {
    const taskId = taskIdOfObject(objectId)
    const rec = this.tasks.get(taskId)
    if (!rec) return // already finished: nothing to cancel, as in Ray
    if (rec.spec.type === 'ACTOR_CREATION_TASK') throw new ValidationError('cancel: use kill() for actors')
    // An actor call already running is not interrupted (as in Ray): the actor's state must not be left half-changed.
    if (rec.spec.type === 'ACTOR_TASK' && rec.phase === 'assigned') return
    if (recursive)
      for (const child of [...(this.children.get(taskId) ?? [])]) this.cancel(objectIdOf(child as TaskId, 1), force, reason, true)
    if (rec.phase === 'assigned' && rec.nodeId)
      this.deps.nodeSession(rec.nodeId)?.send({ type: 'cancel-task', taskId: rec.spec.taskId, force })
    this.fail(rec, new TaskCancelledError(rec.spec.taskId, reason).toWire())
  }

  /**
   * The connection that submitted tasks went away (a job's driver left, or the worker of a task that submitted
   * them): nobody can take their results any more, so they are cancelled, and what they submitted with them (Ray's
   * fate sharing with the owner). Actor calls end with their actor.
   */
  ownerGone(owner: Session, reason: string): void {
    for (const rec of [...(this.byOwner.get(owner) ?? [])]) {
      if (rec.phase === 'done' || rec.spec.type !== 'NORMAL_TASK') continue
      this.cancel(objectIdOf(rec.spec.taskId as TaskId, 1), true, reason)
    }
    this.byOwner.delete(owner)
  }

  private rejectRaw(owner: Session, raw: unknown, why: string): void {
    const r = raw as { taskId?: unknown; numReturns?: unknown; name?: unknown }
    const error = new ValidationError(`task ${typeof r?.name === 'string' ? r.name : ''} rejected: ${why}`.replace('  ', ' ')).toWire()
    if (typeof r?.taskId === 'string' && /^[0-9a-f]{48}$/.test(r.taskId) && jobIdOfTask(r.taskId as TaskId) === owner.jobId) {
      const n = typeof r.numReturns === 'number' && r.numReturns >= 1 && r.numReturns <= 1000 ? r.numReturns : 1
      for (let i = 1; i <= n; i++) owner.pushObject({ objectId: objectIdOf(r.taskId as TaskId, i), error })
    } else owner.send({ type: 'error', error })
  }
}
