import { NodeDiedError, TaskCancelledError, TaskUnschedulableError, ValidationError, type WireError } from './errors.ts'
import { type ObjectId, objectIdOf, type TaskId } from './ids.ts'
import type { ObjectTable } from './object-table.ts'
import type { TaskResult, TaskSpec } from './protocol/index.ts'
import type { ReferenceCounter } from './reference-counter.ts'
import type { TaskEventReporter } from './task-event-reporter.ts'

/** A task this connection owns (a normal task or an actor call), from submit until its result (or final error) is in its return objects. */
export interface OwnedTask {
  spec: TaskSpec
  attempt: number
  phase: 'waiting-deps' | 'queued' | 'pushed' | 'done'
  /** Top-level ref arguments not ready yet (only those are dependencies, as in Ray). */
  missing: number
  /** Objects kept alive for it while it is pending (see ReferenceCounter.retain). */
  retained: ObjectId[]
  /** Its arguments hold refs inside values: it travels through the coordinator (see PushedTask.carriesRefs). */
  carriesRefs: boolean
  /** Which queue of the submitter it waits in (its shape), once queued. */
  shapeKey?: string
  /** Where it was pushed, while it is. */
  leaseId?: string
  nodeId?: string
}

/** The value or error an owned object resolved to. */
export interface OwnedValue {
  objectId: ObjectId
  data?: Uint8Array
  error?: WireError
}

/** What the task manager needs from its connection. */
export interface TaskManagerChannel {
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
}

/**
 * The tasks this connection owns (Ray's TaskManager, owner side): their state from submit to result, their return
 * objects, retries within `maxRetries`, cancellation and their task events. Results come straight from the nodes
 * that ran them; the coordinator only hears the events.
 */
export class TaskManager {
  private tasks = new Map<string, OwnedTask>()
  scheduling!: TaskScheduling
  actorCalls!: TaskScheduling

  constructor(private readonly ch: TaskManagerChannel) {}

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
    const t: OwnedTask = {
      spec,
      attempt: 0,
      phase: 'waiting-deps',
      missing: 0,
      retained: [...deps, ...nested, ...keepAlive],
      carriesRefs: nested.length > 0,
    }
    this.tasks.set(spec.taskId, t)
    refs.retain(t.retained)
    events.state(spec.taskId, 0, 'PENDING_ARGS_AVAIL', {
      task: {
        name: spec.name,
        funcName: spec.funcName,
        type: spec.type,
        resources: spec.resources,
        ...(spec.actorId && { actorId: spec.actorId }),
        ...(spec.parentTaskId && { parentTaskId: spec.parentTaskId }),
      },
    })
    if (rejected) return this.fail(t, rejected)
    this.schedulingOf(t).submitted?.(t)
    const subscribe: ObjectId[] = []
    for (const id of deps) {
      if (objects.ensure(id)) subscribe.push(id)
      if (objects.isReady(id)) continue
      t.missing++
      objects.onReady(id, () => {
        if (--t.missing === 0 && t.phase === 'waiting-deps') this.argsReady(t)
      })
    }
    if (subscribe.length) this.ch.subscribe(subscribe)
    if (t.missing === 0) this.argsReady(t)
  }

  private argsReady(t: OwnedTask): void {
    // A task whose argument failed fails with the same error, as in Ray.
    for (const a of t.spec.args) {
      if (!('ref' in a)) continue
      const err = this.ch.objects.read(a.ref as ObjectId)?.error
      if (err) return this.fail(t, err)
    }
    this.queue(t, false)
  }

  private queue(t: OwnedTask, front: boolean): void {
    t.phase = 'queued'
    t.leaseId = undefined
    t.nodeId = undefined
    this.ch.events.state(t.spec.taskId, t.attempt, 'PENDING_NODE_ASSIGNMENT')
    this.schedulingOf(t).enqueue(t, front)
  }

  private schedulingOf(t: OwnedTask): TaskScheduling {
    return t.spec.type === 'ACTOR_TASK' ? this.actorCalls : this.scheduling
  }

  /** The task goes back to the front of its queue as the same attempt (it never ran: its push was lost). */
  requeue(t: OwnedTask): void {
    if (t.phase === 'pushed') this.queue(t, true)
  }

  /** The submitter pushed the task to a node under a lease. */
  pushed(t: OwnedTask, leaseId: string, nodeId: string): void {
    t.phase = 'pushed'
    t.leaseId = leaseId
    t.nodeId = nodeId
    this.ch.events.state(t.spec.taskId, t.attempt, 'SUBMITTED_TO_WORKER', { nodeId })
  }

  /**
   * A node's result for the task's current attempt. Its returns go into the object table; a failure is retried if
   * it may be, else it becomes the error of every return.
   */
  completed(t: OwnedTask, r: TaskResult, nodeId: string, registered: boolean): void {
    if (t.phase === 'done') return // cancelled or failed meanwhile: its returns already hold their error
    if (!r.ok) return this.attemptFailed(t, r.error, r.userError)
    const s = t.spec
    if (r.returns.length !== s.numReturns)
      return this.fail(
        t,
        new ValidationError(`task ${s.name} returned ${r.returns.length} value(s) but numReturns is ${s.numReturns}`).toWire(),
      )
    const values: OwnedValue[] = []
    for (let i = 0; i < r.returns.length; i++) {
      const objectId = objectIdOf(s.taskId as TaskId, i + 1)
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
    this.ch.events.state(s.taskId, t.attempt, 'FINISHED', { nodeId })
    this.done(t)
    if (registered) this.ch.registered(values.map((v) => v.objectId))
    else this.ch.resolvedOwned(values)
  }

  /** An attempt failed: a system failure is retried while retries are left, a user error only with retryExceptions. */
  attemptFailed(t: OwnedTask, error: WireError, userError: boolean): void {
    if (t.phase === 'done') return
    const { maxRetries, retryExceptions } = t.spec
    const left = maxRetries === -1 || t.attempt < maxRetries
    const name = (error.data?.remoteName as string | undefined) ?? error.name
    const retry = left && (!userError || retryExceptions === true || (Array.isArray(retryExceptions) && retryExceptions.includes(name)))
    if (!retry) return this.fail(t, error)
    this.ch.events.state(t.spec.taskId, t.attempt, 'FAILED', { error })
    t.attempt++
    this.queue(t, true)
  }

  /** The node running the task died (its lease was revoked): a system failure of this attempt. */
  nodeDied(t: OwnedTask, nodeId: string): void {
    this.attemptFailed(t, new NodeDiedError(nodeId, t.spec.taskId, t.attempt + 1).toWire(), false)
  }

  /** The task can never be placed (hard affinity to a node that is gone or too small). */
  unschedulable(t: OwnedTask, reason: string): void {
    this.fail(t, new TaskUnschedulableError(t.spec.taskId, reason).toWire())
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
    if (t?.phase === 'pushed' && t.spec.type === 'ACTOR_TASK') {
      this.actorCalls.cancelPushed(t, force)
      return true
    }
    return this.abort(taskId, new TaskCancelledError(taskId, reason).toWire(), force)
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
    const s = t.spec
    const values: OwnedValue[] = []
    for (let i = 1; i <= s.numReturns; i++) {
      const objectId = objectIdOf(s.taskId as TaskId, i)
      values.push({ objectId, error })
      this.ch.objects.resolve(objectId, { error })
    }
    this.ch.events.state(s.taskId, t.attempt, 'FAILED', { error })
    const pushed = t.phase === 'pushed'
    this.done(t)
    if (!pushed) this.schedulingOf(t).settled?.(t)
    this.ch.resolvedOwned(values)
  }

  private done(t: OwnedTask): void {
    t.phase = 'done'
    this.tasks.delete(t.spec.taskId)
    this.ch.refs.unretain(t.retained)
    t.retained = []
  }

  /** The connection is gone: every pending task fails with `error` (nothing can come back any more). */
  failAll(error: WireError): void {
    for (const t of [...this.tasks.values()]) {
      t.phase = 'done'
      this.tasks.delete(t.spec.taskId)
    }
    void error // their returns are failed by the object table (failAll) with the same error
  }
}
