import { ActorDiedError, ValidationError, type WireError } from '../sdk/errors.ts'
import { jobIdOfActor, objectIdOf, randomHex, type TaskId } from '../sdk/ids.ts'
import type { ActorState, Lease } from '../sdk/protocol/index.ts'
import type { ActorRow } from '../sdk/state-api.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { Session } from './session.ts'
import type { TaskRecord } from './task-record.ts'

/** What the actor manager needs from the placed tasks (as Ray's GcsActorManager receives its scheduler). */
export interface ActorTaskOps {
  /** Fails a task: its returns hold the error. */
  fail(rec: TaskRecord, error: WireError): void
  /** A getIfExists creation found its actor: settled as ready without running. */
  actorAliasReady(rec: TaskRecord): void
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
  /** Why its last incarnation ended (told to callers while it restarts). */
  lostBecause: string | null
  /** The node holding this actor's resources (from dispatch of its creation until death or node loss). */
  allocatedOn: string | null
  creation: TaskRecord
  /**
   * Who calls it, by the id each asked with (a getIfExists handle has an alias id), and the actor lease each holds
   * for the incarnation alive now. Callers send their calls straight to the actor's node under these leases; the
   * coordinator never sees a call (Ray's direct actor calls).
   */
  callers: Map<Session, Map<string, Lease | undefined>>
  /** Every handle to it is gone (callers keep theirs while they have calls pending): it ends (Ray's actor ref counting). */
  unreferenced: boolean
}

/** An actor lease given out, for the relay (a node's results go only to the lease's owner) and for task events. */
export interface ActorLeaseRecord {
  lease: Lease
  nodeId: string
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
  /** Actor leases of live incarnations, by lease id. */
  private leases = new Map<string, ActorLeaseRecord>()
  /** Per `node:job`, how many actor leases callers of that job hold on that node (it may report their calls' events). */
  private leasesOnNode = new Map<string, number>()
  /** The actors each caller asked to call (to forget it when it leaves). */
  private byCaller = new Map<Session, Set<ActorRecord>>()

  constructor(
    private readonly tasks: ActorTaskOps,
    private readonly deps: {
      nodes: NodeTable
      nodeSession(nodeId: string): Session | undefined
      /** An incarnation of the actor ended: its worker's channel must end too (fate sharing). */
      incarnationEnded(actorId: string): void
      /** A caller's peer address (its calls' results come back to it there). */
      addressOf(s: Session): string | undefined
      /** Signs a lease with its node's key; undefined if the node has none (it is going). */
      sign(unsigned: Omit<Lease, 'sig'>): Lease | undefined
      /** A job's tenant: names are the tenant's own (two tenants' namespaces never meet). */
      tenantOf(jobId: string): string | undefined
    },
  ) {}

  /** Where a name is kept: per tenant and namespace (docs/trust.md: a foreign actor name does not exist). */
  private nameKey(tenant: string, namespace: string, name: string): string {
    return `${tenant}\u0000${namespace}\u0000${name}`
  }

  /** The job an actor (or an alias of one) belongs to; undefined if there is no such actor. */
  jobOf(actorId: string): string | undefined {
    return this.resolve(actorId)?.jobId
  }

  /** Whether an incarnation of one of `jobId`'s actors lives on `nodeId` (its worker may speak for that job). */
  hostsJobOn(nodeId: string, jobId: string): boolean {
    for (const a of this.actors.values()) if (a.nodeId === nodeId && a.jobId === jobId && a.state !== 'DEAD') return true
    return false
  }

  /** A creation task arrived. Returns false if it was settled at once (name taken, or getIfExists found one). */
  register(rec: TaskRecord): boolean {
    const a = rec.spec.actor
    const actorId = rec.spec.actorId
    if (!a || !actorId) {
      this.tasks.fail(rec, new ValidationError('actor creation without actor options').toWire())
      return false
    }
    // An actor id ends with its job's id, and is made once: no creation can take over another job's actor.
    if (jobIdOfActor(actorId) !== rec.jobId || this.actors.has(actorId) || this.aliases.has(actorId)) {
      this.tasks.fail(rec, new ValidationError(`actor id ${actorId} is not a new actor of this job`).toWire())
      return false
    }
    const key = this.nameKey(this.deps.tenantOf(rec.jobId) ?? '', a.namespace, a.name ?? '')
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
      lostBecause: null,
      allocatedOn: null,
      creation: rec,
      callers: new Map(),
      unreferenced: false,
    }
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
    this.tellCallers(actor)
  }

  creationFailed(rec: TaskRecord, error: WireError): void {
    const actor = this.resolve(rec.spec.actorId)
    if (!actor || actor.state === 'DEAD') return
    this.die(actor, `its constructor failed: ${error.message}`)
  }

  /**
   * A caller wants to call an actor (`actorId` as its handle names it): it hears the actor's state now (if there is
   * one to tell: an actor still being created is not yet callable) and at every change, until the actor is dead.
   */
  requestLease(caller: Session, actorId: string, visible = true): void {
    // Another tenant's actor is answered exactly as no actor at all.
    const actor = visible ? this.resolve(actorId) : undefined
    if (!actor) {
      const error = new ValidationError(`no actor ${actorId} exists on this coordinator`).toWire()
      return caller.send({ type: 'actor-state', actorId, state: 'DEAD', error })
    }
    // A dead actor is told as such, and its caller is not kept (nothing more will be said of it).
    if (actor.state === 'DEAD') return this.tellCaller(actor, caller, actorId)
    let asked = actor.callers.get(caller)
    if (!asked) {
      actor.callers.set(caller, (asked = new Map()))
      let mine = this.byCaller.get(caller)
      if (!mine) this.byCaller.set(caller, (mine = new Set()))
      mine.add(actor)
    }
    // Asked again (its node refused a call): any lease it held for this id is replaced.
    const held = asked.get(actorId)
    if (held) this.forgetLease(held.leaseId)
    asked.set(actorId, undefined)
    this.tellCaller(actor, caller, actorId)
  }

  /** An actor lease given out for a live incarnation (for the relay and for events). */
  lease(leaseId: string): Readonly<ActorLeaseRecord> | undefined {
    return this.leases.get(leaseId)
  }

  /** Whether callers of `jobId` hold actor leases on `nodeId` (it may report their calls' events). */
  callsOnNode(nodeId: string, jobId: string): boolean {
    return (this.leasesOnNode.get(`${nodeId}:${jobId}`) ?? 0) > 0
  }

  private tellCallers(actor: ActorRecord): void {
    for (const [caller, asked] of actor.callers) for (const id of asked.keys()) this.tellCaller(actor, caller, id)
    if (actor.state === 'DEAD') this.forgetCallers(actor)
  }

  private tellCaller(actor: ActorRecord, caller: Session, askedId: string): void {
    if (caller.closed) return
    const { maxTaskRetries } = actor
    if (actor.state === 'DEAD') {
      const error = new ActorDiedError(actor.actorId, actor.deathCause ?? 'dead').toWire()
      return caller.send({ type: 'actor-state', actorId: askedId, state: 'DEAD', error })
    }
    if (actor.state === 'RESTARTING')
      return caller.send({
        type: 'actor-state',
        actorId: askedId,
        state: 'RESTARTING',
        reason: actor.lostBecause ?? 'restarting',
        maxTaskRetries,
      })
    if (actor.state !== 'ALIVE' || !actor.nodeId) return // not callable yet: told once it is
    const address = this.deps.addressOf(caller)
    if (!address) {
      const error = new ValidationError('a caller must say its peerId in hello to call actors').toWire()
      return caller.send({ type: 'actor-state', actorId: askedId, state: 'DEAD', error })
    }
    const lease = this.deps.sign({
      leaseId: randomHex(16),
      nodeId: actor.nodeId,
      owner: address,
      jobId: caller.jobId as string,
      units: {},
      actor: { actorId: actor.actorId, incarnation: actor.creation.attempt },
    })
    if (!lease) return // its node is going: its death will be told
    actor.callers.get(caller)?.set(askedId, lease)
    this.leases.set(lease.leaseId, { lease, nodeId: actor.nodeId })
    const key = `${actor.nodeId}:${lease.jobId}`
    this.leasesOnNode.set(key, (this.leasesOnNode.get(key) ?? 0) + 1)
    caller.send({ type: 'actor-state', actorId: askedId, state: 'ALIVE', lease, maxTaskRetries })
  }

  private forgetLease(leaseId: string): void {
    const rec = this.leases.get(leaseId)
    if (!rec) return
    this.leases.delete(leaseId)
    const key = `${rec.nodeId}:${rec.lease.jobId}`
    const n = (this.leasesOnNode.get(key) ?? 1) - 1
    if (n > 0) this.leasesOnNode.set(key, n)
    else this.leasesOnNode.delete(key)
  }

  /** The incarnation's leases end with it (its callers are told the new state, and get new leases if it comes back). */
  private revokeLeases(actor: ActorRecord): void {
    for (const asked of actor.callers.values())
      for (const [id, lease] of asked) {
        if (!lease) continue
        this.forgetLease(lease.leaseId)
        asked.set(id, undefined)
      }
  }

  private forgetCallers(actor: ActorRecord): void {
    this.revokeLeases(actor)
    for (const caller of actor.callers.keys()) this.byCaller.get(caller)?.delete(actor)
    actor.callers.clear()
  }

  /** A caller left: its actor leases end (what it called keeps running; the results have no one to go to). */
  callerGone(caller: Session): void {
    for (const actor of this.byCaller.get(caller) ?? []) {
      for (const lease of actor.callers.get(caller)?.values() ?? []) if (lease) this.forgetLease(lease.leaseId)
      actor.callers.delete(caller)
    }
    this.byCaller.delete(caller)
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
    if (!actor.unreferenced || actor.state === 'DEAD') return
    this.die(actor, 'all references to the actor were removed')
  }

  /** A handle to a named actor: its id and shape, and the object its handles are counted through. */
  lookup(tenant: string, name: string, namespace: string): { actorId: string; className: string; methods: string[]; handleId: string } {
    const actor = this.actors.get(this.named.get(this.nameKey(tenant, namespace, name)) ?? '')
    if (!actor || actor.state === 'DEAD') throw new ValidationError(`no actor named '${name}' in namespace '${namespace}'`)
    const handleId = objectIdOf(actor.creation.spec.taskId as TaskId, 1)
    return { actorId: actor.actorId, className: actor.className, methods: actor.methods, handleId }
  }

  /**
   * `mesh.kill(handle)`: the actor dies at once. With `noRestart: false` it is restarted instead, if its
   * `maxRestarts` allows (as Ray's `ray.kill(actor, no_restart=False)`); its callers retry their calls in flight
   * per `maxTaskRetries`.
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
    actor.lostBecause = reason
    // Its callers retry what they had in flight (within maxTaskRetries) once it is alive again.
    this.revokeLeases(actor)
    this.tellCallers(actor)
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
    if (actor.name) this.named.delete(this.nameKey(this.deps.tenantOf(actor.jobId) ?? '', actor.namespace, actor.name))
    this.releaseResources(actor)
    this.tasks.releasePins(actor.creation) // its constructor arguments were kept for restarts
    const node = actor.nodeId ? this.deps.nodes.get(actor.nodeId) : undefined
    if (node && node.state === 'ALIVE') this.deps.nodeSession(node.nodeId)?.send({ type: 'kill-actor', actorId: actor.actorId })
    const err = new ActorDiedError(actor.actorId, cause).toWire()
    // A creation still queued or running never completes now.
    if (actor.creation.phase !== 'done') this.tasks.fail(actor.creation, err)
    // Its callers fail what they have pending with the reason.
    this.tellCallers(actor)
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

  /** Whether a detached actor of this job lives on (its class must stay known: it may restart). */
  hasLiveDetached(jobId: string): boolean {
    for (const a of this.actors.values()) if (a.jobId === jobId && a.detached && a.state !== 'DEAD') return true
    return false
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
