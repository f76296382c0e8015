import { ActorDiedError, ValidationError, type WireError } from '../sdk/errors.ts'
import { objectIdOf, type TaskId } from '../sdk/ids.ts'
import type { ActorState } from '../sdk/protocol/index.ts'
import type { ActorRow } from '../sdk/state.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import type { Session } from './session.ts'
import type { TaskRecord } from './task-record.ts'

/** What the actor manager needs from the task manager (as Ray's GcsActorManager receives its scheduler). */
export interface ActorTaskOps {
  /** Fails a task: its returns hold the error. */
  fail(rec: TaskRecord, error: WireError): void
  /** A getIfExists creation found its actor: settled as ready without running. */
  actorAliasReady(rec: TaskRecord): void
  /** Sends a task attempt to a node. */
  dispatch(rec: TaskRecord, node: NodeRecord): void
  /** Takes a task off the node it was sent to without giving resources back (they went with a dead worker or node). */
  forgetPlacement(rec: TaskRecord): void
  /** An actor restarts: its creation runs again. */
  requeueCreation(rec: TaskRecord): void
  /** Gives resources back on a node. */
  releaseOn(node: NodeRecord, resources: TaskRecord['resources']): void
  /** Lets go of what the task pinned (a creation keeps its arguments while the actor may restart). */
  releasePins(rec: TaskRecord): void
}

interface ActorRecord {
  actorId: string
  name: string | undefined
  namespace: string
  className: string
  methods: string[]
  jobId: string
  detached: boolean
  maxRestarts: number
  maxTaskRetries: number
  state: ActorState
  nodeId: string | null
  restarts: number
  deathCause: string | null
  /** The node holding this actor's resources (from dispatch of its creation until death or node loss). */
  allocatedOn: string | null
  creation: TaskRecord
  /**
   * Calls not yet sent to the node (waiting for the actor or for their arguments), in submission order per caller:
   * as in Ray, one caller's calls run in the order it made them, and a call waiting for its arguments holds back
   * only the calls of its own caller.
   */
  pending: Map<Session, TaskRecord[]>
  inflight: Map<string, TaskRecord>
  /** Every handle to it is gone: it ends once the calls already submitted are done (Ray's actor ref counting). */
  unreferenced: boolean
}

/**
 * The actor table and its lifecycle (Ray's GcsActorManager): actors are owned by the coordinator, placed by an
 * ACTOR_CREATION_TASK, keep their resources while alive, restart on node death while `maxRestarts` allows, and
 * receive their calls in submission order.
 */
export class ActorManager {
  private actors = new Map<string, ActorRecord>()
  /** `getIfExists` creations that found the name taken point at the existing actor. */
  private aliases = new Map<string, string>()
  private named = new Map<string, string>()
  /** Actors by the object their handles refer to (the creation task's return), for handle counting. */
  private byHandle = new Map<string, string>()

  constructor(
    private readonly tasks: ActorTaskOps,
    private readonly deps: {
      nodes: NodeTable
      events: TaskEvents
      nodeSession(nodeId: string): Session | undefined
      /** An incarnation of the actor ended: its worker's channel must end too (fate sharing). */
      incarnationEnded(actorId: string): void
    },
  ) {}

  /** A creation task arrived. Returns false if it was settled at once (name taken, or getIfExists found one). */
  register(rec: TaskRecord): boolean {
    const a = rec.spec.actor
    const actorId = rec.spec.actorId
    if (!a || !actorId) {
      this.tasks.fail(rec, new ValidationError('actor creation without actor options').toWire())
      return false
    }
    const key = `${a.namespace}\u0000${a.name}`
    const existing = a.name ? this.actors.get(this.named.get(key) ?? '') : undefined
    if (existing && existing.state !== 'DEAD') {
      if (a.getIfExists) {
        this.aliases.set(actorId, existing.actorId)
        this.tasks.actorAliasReady(rec)
        return false
      }
      const why = `an actor named '${a.name}' already exists in namespace '${a.namespace}' (use getIfExists: true to reuse it)`
      // Recorded as DEAD with the reason, so calls on this handle say why rather than "no such actor".
      this.actors.set(actorId, { ...this.record(rec, actorId, a), name: undefined, state: 'DEAD', deathCause: why })
      this.tasks.fail(rec, new ValidationError(why).toWire())
      return false
    }
    this.actors.set(actorId, this.record(rec, actorId, a))
    if (a.name) this.named.set(key, actorId)
    this.byHandle.set(objectIdOf(rec.spec.taskId as TaskId, 1), actorId)
    return true
  }

  private record(rec: TaskRecord, actorId: string, a: NonNullable<TaskRecord['spec']['actor']>): ActorRecord {
    return {
      actorId,
      name: a.name,
      namespace: a.namespace,
      className: a.className,
      methods: a.methods,
      jobId: rec.jobId,
      detached: a.detached,
      maxRestarts: a.maxRestarts,
      maxTaskRetries: a.maxTaskRetries,
      state: 'DEPENDENCIES_UNREADY',
      nodeId: null,
      restarts: 0,
      deathCause: null,
      allocatedOn: null,
      creation: rec,
      pending: new Map(),
      inflight: new Map(),
      unreferenced: false,
    }
  }

  /** The id of the actor a handle means (a getIfExists handle has an alias id). */
  canonical(actorId: string): string {
    return this.aliases.get(actorId) ?? actorId
  }

  private resolve(actorId: string | undefined): ActorRecord | undefined {
    if (!actorId) return undefined
    return this.actors.get(this.aliases.get(actorId) ?? actorId)
  }

  creationQueued(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (actor && actor.state !== 'RESTARTING') actor.state = 'PENDING_CREATION'
  }

  creationDispatched(rec: TaskRecord, nodeId: string): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor) return
    actor.nodeId = nodeId
    actor.allocatedOn = nodeId
  }

  /** A node gave back an actor's creation it could not start: the actor holds nothing there, and waits for a node. */
  creationReturned(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor || actor.state === 'DEAD') return
    this.releaseResources(actor)
    actor.nodeId = null
  }

  created(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor || actor.state === 'DEAD') return
    actor.state = 'ALIVE'
    this.pump(actor.actorId)
  }

  creationFailed(rec: TaskRecord, error: WireError): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor || actor.state === 'DEAD') return
    this.die(actor, `its constructor failed: ${error.message}`)
  }

  /** An actor call arrived: it takes its place in line now, whether or not its arguments are ready. */
  enqueueCall(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor) {
      this.tasks.fail(rec, new ValidationError(`no actor ${rec.spec.actorId} exists on this coordinator`).toWire())
      return
    }
    if (actor.state === 'DEAD') {
      this.tasks.fail(rec, new ActorDiedError(actor.actorId, actor.deathCause ?? 'dead').toWire())
      return
    }
    // While it restarts, a call that could not be retried fails at once, as Ray's fast fail with max_task_retries=0.
    if (actor.state === 'RESTARTING' && actor.maxTaskRetries === 0) {
      this.tasks.fail(rec, new ActorDiedError(actor.actorId, 'it is restarting, and maxTaskRetries is 0').toWire())
      return
    }
    if (!actor.methods.includes(rec.spec.method ?? '')) {
      this.tasks.fail(rec, new ValidationError(`${actor.className} has no method '${rec.spec.method}'`).toWire())
      return
    }
    rec.resources = {}
    this.queueOf(actor, rec).push(rec)
  }

  private queueOf(actor: ActorRecord, rec: TaskRecord): TaskRecord[] {
    let q = actor.pending.get(rec.owner)
    if (!q) actor.pending.set(rec.owner, (q = []))
    return q
  }

  private pendingCount(actor: ActorRecord): number {
    let n = 0
    for (const q of actor.pending.values()) n += q.length
    return n
  }

  requeueCall(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor || actor.state === 'DEAD') return this.tasks.fail(rec, new ActorDiedError(rec.spec.actorId ?? '?', 'dead').toWire())
    actor.inflight.delete(rec.spec.taskId)
    this.queueOf(actor, rec).unshift(rec)
    this.pump(actor.actorId)
  }

  /** Sends calls whose turn has come: per caller, in order, stopping at the first whose arguments are not ready. */
  pump(actorId: string): void {
    const actor = this.resolve(actorId)
    if (actor?.state !== 'ALIVE' || !actor.nodeId) return
    const node = this.deps.nodes.get(actor.nodeId)
    if (node?.state !== 'ALIVE') return
    for (const [caller, q] of actor.pending) {
      while (q.length) {
        const head = q[0] as TaskRecord
        if (head.phase === 'done') {
          q.shift()
          continue
        }
        if (head.missing > 0) break
        q.shift()
        actor.inflight.set(head.spec.taskId, head)
        this.tasks.dispatch(head, node)
      }
      if (!q.length) actor.pending.delete(caller)
    }
  }

  /** A call finished or failed: the calls behind it may go now (a failed or cancelled head must not block them). */
  callDone(rec: TaskRecord): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor) return
    actor.inflight.delete(rec.spec.taskId)
    this.pump(actor.actorId)
    this.endIfUnreferenced(actor)
  }

  /**
   * The object every handle of an actor refers to was collected: no handle to it is left anywhere (drivers, tasks,
   * other actors, stored objects, `getActor` results). A non-detached actor then ends, after the calls already
   * submitted to it, as in Ray (named ones too: its name is then free again). Detached actors live until killed.
   */
  handlesGone(handleObjectId: string): void {
    const actorId = this.byHandle.get(handleObjectId)
    if (!actorId) return
    this.byHandle.delete(handleObjectId)
    const actor = this.actors.get(actorId)
    if (!actor || actor.state === 'DEAD' || actor.detached) return
    actor.unreferenced = true
    this.endIfUnreferenced(actor)
  }

  private endIfUnreferenced(actor: ActorRecord): void {
    if (!actor.unreferenced || actor.state === 'DEAD' || this.pendingCount(actor) || actor.inflight.size) return
    this.die(actor, 'all references to the actor were removed')
  }

  /** A handle to a named actor: its id and shape, and the object its handles are counted through. */
  lookup(name: string, namespace: string): { actorId: string; className: string; methods: string[]; handleId: string } {
    const actor = this.actors.get(this.named.get(`${namespace}\u0000${name}`) ?? '')
    if (!actor || actor.state === 'DEAD') throw new ValidationError(`no actor named '${name}' in namespace '${namespace}'`)
    const handleId = objectIdOf(actor.creation.spec.taskId as TaskId, 1)
    return { actorId: actor.actorId, className: actor.className, methods: actor.methods, handleId }
  }

  /**
   * `mesh.kill(handle)`: the actor dies at once. With `noRestart: false` it is restarted instead, if its
   * `maxRestarts` allows (as Ray's `ray.kill(actor, no_restart=False)`), its calls in flight retried per
   * `maxTaskRetries`.
   */
  kill(actorId: string, noRestart = true, reason = 'killed by mesh.kill()'): void {
    const actor = this.resolve(actorId)
    if (!actor) throw new ValidationError(`no actor ${actorId} exists on this coordinator`)
    if (actor.state === 'DEAD') return
    if (noRestart) return this.die(actor, reason)
    const node = actor.nodeId ? this.deps.nodes.get(actor.nodeId) : undefined
    if (node?.state === 'ALIVE') this.deps.nodeSession(node.nodeId)?.send({ type: 'kill-actor', actorId: actor.actorId })
    this.releaseResources(actor)
    this.lost(actor, reason)
  }

  /** The node hosting actors died (or their worker crashed): restart them elsewhere or let them die. */
  onNodeDead(nodeId: string): void {
    for (const actor of this.actors.values()) {
      if (actor.nodeId !== nodeId || actor.state === 'DEAD') continue
      actor.allocatedOn = null // the resources died with the node
      this.lost(actor, `node ${nodeId} died`)
    }
  }

  /** The worker of an actor's incarnation died on a node. A report about an older incarnation, or another node, is stale. */
  workerDied(actorId: string, nodeId: string, attempt: number, reason: string): void {
    const actor = this.resolve(actorId)
    if (!actor || actor.state === 'DEAD' || actor.nodeId !== nodeId || actor.creation.attempt !== attempt) return
    this.releaseResources(actor)
    this.lost(actor, reason)
  }

  private lost(actor: ActorRecord, reason: string): void {
    this.deps.incarnationEnded(actor.actorId)
    const canRestart = actor.maxRestarts === -1 || actor.restarts < actor.maxRestarts
    if (!canRestart) return this.die(actor, `${reason} (no restarts left)`)
    actor.state = 'RESTARTING'
    actor.restarts++
    actor.nodeId = null
    for (const call of [...actor.inflight.values()].reverse()) {
      const left = actor.maxTaskRetries === -1 || call.attempt < actor.maxTaskRetries
      actor.inflight.delete(call.spec.taskId)
      // Off its old node for good: that node's later death must not touch the call's next attempt.
      this.tasks.forgetPlacement(call)
      if (left) {
        call.attempt++
        this.queueOf(actor, call).unshift(call)
      } else this.tasks.fail(call, new ActorDiedError(actor.actorId, `${reason} while this call ran`).toWire())
    }
    const creation = actor.creation
    // Not placed yet (still waiting for a node, or for its arguments): it keeps its place; nothing ran to undo.
    if (creation.phase === 'queued' || (creation.phase === 'waiting-deps' && creation.missing > 0)) return
    this.tasks.forgetPlacement(creation) // the constructor may have been running when the worker died
    creation.attempt++
    this.tasks.requeueCreation(creation)
  }

  private releaseResources(actor: ActorRecord): void {
    const node = actor.allocatedOn ? this.deps.nodes.get(actor.allocatedOn) : undefined
    actor.allocatedOn = null
    if (node) this.tasks.releaseOn(node, actor.creation.resources)
  }

  private die(actor: ActorRecord, cause: string): void {
    this.deps.incarnationEnded(actor.actorId)
    actor.state = 'DEAD'
    actor.deathCause = cause
    if (actor.name) this.named.delete(`${actor.namespace}\u0000${actor.name}`)
    this.releaseResources(actor)
    this.tasks.releasePins(actor.creation) // its constructor arguments were kept for restarts
    const node = actor.nodeId ? this.deps.nodes.get(actor.nodeId) : undefined
    if (node && node.state === 'ALIVE') this.deps.nodeSession(node.nodeId)?.send({ type: 'kill-actor', actorId: actor.actorId })
    const err = new ActorDiedError(actor.actorId, cause).toWire()
    // A creation still queued or running never completes now.
    if (actor.creation.phase !== 'done') this.tasks.fail(actor.creation, err)
    for (const call of [...actor.inflight.values(), ...[...actor.pending.values()].flat()]) this.tasks.fail(call, err)
    actor.inflight.clear()
    actor.pending.clear()
  }

  /**
   * A channel that created actors went away (a job's driver left, a worker died, or the node of a task): its
   * non-detached actors die with it, as Ray's actors die with their owner. Detached actors belong to no one.
   */
  ownerGone(owner: Session, why = 'its owner died'): void {
    for (const actor of this.actors.values()) {
      if (actor.creation.owner === owner && !actor.detached && actor.state !== 'DEAD') this.die(actor, why)
    }
  }

  rows(): ActorRow[] {
    return [...this.actors.values()].map((a) => ({
      actorId: a.actorId,
      name: a.name ?? null,
      namespace: a.namespace,
      className: a.className,
      state: a.state,
      nodeId: a.nodeId,
      jobId: a.jobId,
      restarts: a.restarts,
      detached: a.detached,
      deathCause: a.deathCause,
    }))
  }
}
