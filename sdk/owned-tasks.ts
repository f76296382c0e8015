import { DependencyResolver } from './dependency-resolver.ts'
import { NodeDiedError, TaskCancelledError, TaskUnschedulableError, ValidationError, type WireError } from './errors.ts'
import { type ObjectId, objectIdOf, type TaskId } from './ids.ts'
import type { ObjectTable } from './object-table.ts'
import type { Resources, SchedulingStrategy, TaskArg, TaskResult, TaskSpec } from './protocol/index.ts'
import type { ReferenceCounter } from './reference-counter.ts'
import { decideRetry } from './retry-policy.ts'
import type { TaskEvent, TaskEventReporter } from './task-event-reporter.ts'

/**
 * What the tasks of one function (or actor method) with the same options share: a loop of a million calls makes one
 * (see OwnedTasks.templateOf). Never changed once made.
 */
export interface TaskTemplate {
  readonly type: TaskSpec['type']
  readonly functionId: string
  readonly name: string
  readonly funcName: string
  readonly numReturns: number
  readonly resources: Resources
  readonly retryExceptions: boolean | readonly string[]
  readonly strategy: SchedulingStrategy
  /** Its tasks may run on volunteer nodes. */
  readonly volunteers: boolean
  readonly actorId: string | undefined
  readonly method: string | undefined
  readonly parentTaskId: string | undefined
  /** What the state API shows of its tasks, sent with each one's first event. */
  readonly meta: { readonly task: NonNullable<TaskEvent['task']> }
}

/** A task's arguments as its owner keeps them: a lone inline argument bare (most tasks), else the list. */
export type OwnedArgs = Uint8Array | readonly TaskArg[]

/**
 * A task this connection owns (a normal task or an actor call), from submit until its result (or final error) is in
 * its return objects. A driver may hold a million of these queued, so it is one object per task with every field set
 * here (one shape, fields kept inline), what its function's tasks share is in a template, and a lone argument is kept
 * bare: ~120 bytes, where a spec, its argument list and this record took ~300.
 */
export class OwnedTask {
  attempt = 0
  phase: 'waiting-deps' | 'queued' | 'pushed' | 'done' = 'waiting-deps'
  /** Top-level ref arguments not ready yet (only those are dependencies, as in Ray). */
  missing = 0
  /** Its arguments hold refs inside values: it travels through the coordinator (see PushedTask.carriesRefs). */
  carriesRefs = false
  /** Which queue of the submitter it waits in (its shape), once queued. */
  shapeKey: string | undefined = undefined
  /** Where it was pushed, while it is. */
  leaseId: string | undefined = undefined
  nodeId: string | undefined = undefined
  /**
   * Cancelled by its owner after it was pushed (an actor call: its node drops it unless it started). No attempt of it
   * goes again, as Ray's MarkTaskCanceled: one that did would take a later place in its caller's order.
   */
  cancelled = false

  constructor(
    readonly taskId: string,
    readonly template: TaskTemplate,
    readonly args: OwnedArgs,
    /** How often a failed attempt may go again (an actor call in flight when its actor restarts: the actor's maxTaskRetries). */
    public maxRetries: number,
    /** Objects kept alive for it while it is pending (see ReferenceCounter.retain). Never changed in place. */
    public retained: readonly ObjectId[],
  ) {}
}

/** The retained list of a task that keeps nothing alive (most): one shared array, not one each. */
const NO_OBJECTS: readonly ObjectId[] = Object.freeze([])
const NO_ARGS: readonly TaskArg[] = Object.freeze([])

/** The value or error an owned object resolved to. */
export interface OwnedValue {
  objectId: ObjectId
  data?: Uint8Array
  error?: WireError
}

/** What the owner's task table needs from its connection. */
export interface OwnedTasksChannel {
  readonly objects: ObjectTable
  readonly refs: ReferenceCounter
  readonly events: TaskEventReporter
  /** Asks the coordinator for objects this connection does not own (it pushes them here when ready). */
  subscribe(ids: ObjectId[]): void
  /**
   * Owned objects got their value or error here: those others wait for are published with it. The values travel
   * with the call because the object table may already have dropped an entry no local ref holds.
   */
  resolvedOwned(values: OwnedValue[]): void
  /** The coordinator entered these returns in its directory when it relayed their result. */
  registered(ids: ObjectId[]): void
}

/** Where ready tasks go to be pushed: to leased nodes (normal tasks), or to their actor's node (actor calls). */
export interface TaskScheduling {
  /** A new task, before it waits for its arguments (actor calls keep the order they were made in). */
  submitted?(t: OwnedTask): void
  /** The task's arguments are ready (`front`: it goes again, ahead of the others). */
  enqueue(t: OwnedTask, front: boolean): void
  /** Takes a queued task out of line (cancelled). */
  dequeue(t: OwnedTask): void
  /** Tells the node running a pushed task to stop it. */
  cancelPushed(t: OwnedTask, force: boolean): void
  /** A task ended before it was pushed (its argument failed, it was cancelled): actor calls behind it may go now. */
  settled?(t: OwnedTask): void
  /** A pushed task's message never reached its node (refused on its way); it fails next (actor calls: see there). */
  lost?(t: OwnedTask): void
}

/**
 * The owner's table of the tasks this connection owns (Ray's TaskManager, owner side): their state from submit to
 * result, their return objects, retries within `maxRetries`, cancellation and their task events. Results come
 * straight from the nodes that ran them; the coordinator only hears the events.
 */
export class OwnedTasks {
  /** The last task's template: a loop of one function's calls shares one (see templateOf). */
  private lastTemplate: TaskTemplate | undefined

  private tasks = new Map<string, OwnedTask>()
  scheduling!: TaskScheduling
  actorCalls!: TaskScheduling
  private readonly deps: DependencyResolver<OwnedTask>

  constructor(private readonly ch: OwnedTasksChannel) {
    this.deps = new DependencyResolver(ch.objects, (t, failed) => (failed ? this.fail(t, failed) : this.queue(t, false)))
  }

  get pending(): number {
    return this.tasks.size
  }

  get(taskId: string): OwnedTask | undefined {
    return this.tasks.get(taskId)
  }

  /**
   * A new task: its return objects are expected here; it waits for its top-level ref arguments, then is queued.
   * `keepAlive` are objects it needs alive while pending beyond its arguments (an actor call: its actor's handle).
   */
  submit(spec: TaskSpec, rejected?: WireError, keepAlive: readonly ObjectId[] = []): void {
    const { objects, refs, events } = this.ch
    const deps = spec.args.flatMap((a) => ('ref' in a ? [a.ref as ObjectId] : []))
    const nested = (spec.nestedRefs ?? []) as ObjectId[]
    const lone = spec.args.length === 1 ? spec.args[0] : undefined
    const args = lone && 'v' in lone ? lone.v : spec.args.length ? spec.args : NO_ARGS
    const retained = deps.length || nested.length || keepAlive.length ? [...deps, ...nested, ...keepAlive] : NO_OBJECTS
    const t = new OwnedTask(spec.taskId, this.templateOf(spec), args, spec.maxRetries, retained)
    t.carriesRefs = nested.length > 0
    this.tasks.set(spec.taskId, t)
    refs.retain(t.retained)
    events.state(spec.taskId, 0, 'PENDING_ARGS_AVAIL', t.template.meta)
    if (rejected) return this.fail(t, rejected)
    this.schedulingOf(t).submitted?.(t)
    const subscribe: ObjectId[] = []
    for (const id of deps) if (objects.ensure(id)) subscribe.push(id)
    // An object it subscribes to is not ready yet: the task is never queued before its subscription is sent.
    this.deps.wait(t, deps)
    if (subscribe.length) this.ch.subscribe(subscribe)
  }

  private queue(t: OwnedTask, front: boolean): void {
    t.phase = 'queued'
    t.leaseId = undefined
    t.nodeId = undefined
    this.ch.events.state(t.taskId, t.attempt, 'PENDING_NODE_ASSIGNMENT')
    this.schedulingOf(t).enqueue(t, front)
  }

  private schedulingOf(t: OwnedTask): TaskScheduling {
    return t.template.type === 'ACTOR_TASK' ? this.actorCalls : this.scheduling
  }

  /**
   * The task goes back to the front of its queue as the same attempt (it never ran: its push was lost). Cancelled
   * meanwhile, it ends so instead.
   */
  requeue(t: OwnedTask): void {
    if (t.phase !== 'pushed') return
    if (t.cancelled) return this.fail(t, new TaskCancelledError(t.taskId, 'cancelled before it started').toWire())
    this.queue(t, true)
  }

  /** The submitter pushed the task to a node under a lease. */
  pushed(t: OwnedTask, leaseId: string, nodeId: string): void {
    t.phase = 'pushed'
    t.leaseId = leaseId
    t.nodeId = nodeId
    this.ch.events.state(t.taskId, t.attempt, 'SUBMITTED_TO_WORKER', { nodeId })
  }

  /**
   * A node's result for the task's current attempt. Its returns go into the object table; a failure is retried if
   * it may be, else it becomes the error of every return.
   */
  completed(t: OwnedTask, r: TaskResult, nodeId: string, registered: boolean): void {
    if (t.phase === 'done') return // cancelled or failed meanwhile: its returns already hold their error
    if (!r.ok) return this.attemptFailed(t, r.error, r.userError)
    const s = t.template
    if (r.returns.length !== s.numReturns) return this.fail(t, ValidationError.returnCount(s.name, r.returns.length, s.numReturns).toWire())
    const values: OwnedValue[] = []
    for (let i = 0; i < r.returns.length; i++) {
      const objectId = objectIdOf(t.taskId as TaskId, i + 1)
      const x = r.returns[i] as Uint8Array | { stored: number }
      if (x instanceof Uint8Array) {
        this.ch.objects.resolve(objectId, { data: x })
        values.push({ objectId, data: x })
      } else {
        // Stored returns always come through the relay, which registers them (registered is true).
        this.ch.objects.resolve(objectId, { size: x.stored, locations: [nodeId] })
        values.push({ objectId })
      }
    }
    this.ch.events.state(t.taskId, t.attempt, 'FINISHED', { nodeId })
    this.done(t)
    if (registered) this.ch.registered(values.map((v) => v.objectId))
    else this.ch.resolvedOwned(values)
  }

  /** An attempt failed: a system failure is retried while retries are left, a user error only with retryExceptions. */
  attemptFailed(t: OwnedTask, error: WireError, userError: boolean): void {
    if (t.phase === 'done') return
    if (t.cancelled) return this.fail(t, error) // whatever ended this attempt (its node's answer, its actor's death)
    const decision = decideRetry(t.attempt, { maxRetries: t.maxRetries, retryExceptions: t.template.retryExceptions }, error, userError)
    if (decision.kind === 'fail') return this.fail(t, decision.error)
    this.ch.events.state(t.taskId, t.attempt, 'FAILED', { error })
    t.attempt++
    this.queue(t, true)
  }

  /** The node running the task died (its lease was revoked): a system failure of this attempt. */
  nodeDied(t: OwnedTask, nodeId: string): void {
    this.attemptFailed(t, new NodeDiedError(nodeId, t.taskId, t.attempt + 1).toWire(), false)
  }

  /** The task can never be placed (hard affinity to a node that is gone or too small). */
  unschedulable(t: OwnedTask, reason: string): void {
    this.fail(t, new TaskUnschedulableError(t.taskId, reason).toWire())
  }

  /**
   * Cancels an owned task: queued, it never runs; pushed, its node stops it. Its returns hold TaskCancelledError at
   * once. An actor call already sent is dropped by its node if it has not started, and is answered either way (a
   * running call is never interrupted, as in Ray). Returns false if the task is not (or no longer) pending here. (Recursive cancel needs nothing more: what the
   * stopped task submitted was owned by its worker, and shares its fate.)
   */
  cancel(taskId: string, force: boolean, reason = 'cancelled'): boolean {
    const t = this.tasks.get(taskId)
    // An actor call already at its node is dropped there only if it has not started (the node answers which).
    if (t?.phase === 'pushed' && t.template.type === 'ACTOR_TASK') {
      t.cancelled = true
      this.actorCalls.cancelPushed(t, force)
      return true
    }
    return this.abort(taskId, new TaskCancelledError(taskId, reason).toWire(), force)
  }

  /** A pushed task's message was refused on its way and never reached its node: it fails now with `error`. */
  lost(taskId: string, error: WireError): boolean {
    const t = this.tasks.get(taskId)
    if (t?.phase !== 'pushed' || !this.schedulingOf(t).lost) return this.abort(taskId, error)
    this.schedulingOf(t).lost?.(t)
    this.fail(t, error)
    return true
  }

  /** Ends a pending task now with `error` (cancelled, or refused on its way): it leaves its queue or its node. */
  abort(taskId: string, error: WireError, force = false): boolean {
    const t = this.tasks.get(taskId)
    if (!t) return false
    if (t.phase === 'queued') this.schedulingOf(t).dequeue(t)
    else if (t.phase === 'pushed') this.schedulingOf(t).cancelPushed(t, force)
    this.fail(t, error)
    return true
  }

  /** Fails a task for good: every return holds the error, which `get` rethrows. */
  fail(t: OwnedTask, error: WireError): void {
    if (t.phase === 'done') return
    const values: OwnedValue[] = []
    for (let i = 1; i <= t.template.numReturns; i++) {
      const objectId = objectIdOf(t.taskId as TaskId, i)
      values.push({ objectId, error })
      this.ch.objects.resolve(objectId, { error })
    }
    this.ch.events.state(t.taskId, t.attempt, 'FAILED', { error })
    const pushed = t.phase === 'pushed'
    this.done(t)
    if (!pushed) this.schedulingOf(t).settled?.(t)
    this.ch.resolvedOwned(values)
  }

  private done(t: OwnedTask): void {
    t.phase = 'done'
    this.tasks.delete(t.taskId)
    this.ch.refs.unretain(t.retained)
    t.retained = NO_OBJECTS
  }

  /** Where a pending task is in its life, said for a timeout (undefined if it is not pending here). */
  whereIs(taskId: string): string | undefined {
    const t = this.tasks.get(taskId)
    if (!t) return undefined
    const what = `task ${t.template.name} (${taskId.slice(0, 8)}, attempt ${t.attempt + 1})`
    if (t.phase === 'waiting-deps') return `${what} waits for ${t.missing} of its arguments`
    if (t.phase === 'queued')
      return `${what} waits for ${t.template.type === 'ACTOR_TASK' ? "its actor's lease or its turn" : 'a worker lease'}`
    return `${what} was pushed to node ${t.nodeId?.slice(0, 8)} (lease ${t.leaseId?.slice(0, 8)}) and has not answered`
  }

  /** The template of a new task: the last one made, if the task is another of the same calls (the usual loop). */
  private templateOf(spec: TaskSpec): TaskTemplate {
    const last = this.lastTemplate
    if (
      last &&
      last.name === spec.name &&
      last.funcName === spec.funcName &&
      last.functionId === spec.functionId &&
      last.type === spec.type &&
      last.numReturns === spec.numReturns &&
      last.resources === spec.resources &&
      last.retryExceptions === spec.retryExceptions &&
      last.strategy === spec.strategy &&
      last.volunteers === !!spec.volunteers &&
      last.actorId === spec.actorId &&
      last.method === spec.method &&
      last.parentTaskId === spec.parentTaskId
    )
      return last
    const task = {
      name: spec.name,
      funcName: spec.funcName,
      type: spec.type,
      resources: spec.resources,
      ...(spec.actorId && { actorId: spec.actorId }),
      ...(spec.parentTaskId && { parentTaskId: spec.parentTaskId }),
    }
    this.lastTemplate = {
      type: spec.type,
      functionId: spec.functionId,
      name: spec.name,
      funcName: spec.funcName,
      numReturns: spec.numReturns,
      resources: spec.resources,
      retryExceptions: spec.retryExceptions,
      strategy: spec.strategy,
      volunteers: !!spec.volunteers,
      actorId: spec.actorId,
      method: spec.method,
      parentTaskId: spec.parentTaskId,
      meta: { task },
    }
    return this.lastTemplate
  }
}
