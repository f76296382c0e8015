import { Deque } from './deque.ts'
import { whereTheDataIs } from './locality.ts'
import type { OwnedTask, OwnedTasks, TaskScheduling } from './owned-tasks.ts'
import {
  type ClientMessage,
  FUNCTION_MISSING,
  type FunctionDef,
  type Lease,
  type PeerMessage,
  type PeerMessageOf,
  type PushedTask,
  type Resources,
  type SchedulingStrategy,
} from './protocol/index.ts'
import { PushBatches, type PushChannel, pushedTaskOf } from './pushed-task.ts'
import type { Route } from './transport/peer-links.ts'
import { TurnBatch } from './turn-batch.ts'

/** An idle lease is kept this long for the next task of its shape (a loop of sync round trips reuses it). */
const LEASE_LINGER_MS = 100
/** A lease gets enough tasks in flight to keep its worker busy this long (once the shape's run time is known). */
const PIPELINE_MS = 10
/** Most tasks in flight on one lease. */
const MAX_DEPTH = 128
/** Most leases one shape asks for at once (the coordinator grants only what fits). */
const MAX_LEASES_PER_SHAPE = 1024

/** Tasks of one shape (resources + strategy + preferred node), as Ray's scheduling key: they share leases. */
interface Shape {
  id: string
  /** Its key among the shapes: every task queued in it refers to this one string. */
  key: string
  resources: Resources
  strategy: SchedulingStrategy
  /** Its tasks may run on volunteer nodes. */
  volunteers: boolean
  preferNode: string | undefined
  queue: Deque<OwnedTask>
  leases: Set<HeldLease>
  /** Leases asked for and not granted yet. */
  outstanding: number
  /** The coordinator said no node can ever fit it (its message). */
  infeasible: string | undefined
}

interface HeldLease {
  lease: Lease
  shape: Shape
  inflight: Map<string, OwnedTask>
  /** Functions already sent under this lease (the node keeps them). */
  functionsSent: Set<string>
  /** The coordinator wants it back: no new tasks; returned once those in flight are done. */
  reclaimed: boolean
  /** It was given a task (a SPREAD lease takes only one). */
  used: boolean
  idleTimer: ReturnType<typeof setTimeout> | undefined
}

/** What the submitter needs from its connection. */
export interface DirectSubmitChannel extends PushChannel {
  send(msg: ClientMessage): void
  functionDef(functionId: string): FunctionDef | undefined
  /** Tasks the coordinator says cannot be placed now on any node, with why (for timeouts that explain themselves). */
  markInfeasible(taskIds: string[], message: string): void
}

/**
 * Ray's direct task submission, owner side: ready tasks wait in a queue per shape; the owner asks the coordinator
 * for worker leases for that shape and pushes tasks straight to the leased nodes, several in flight per lease once
 * the shape is known to be short, and results come straight back. An idle lease lingers a moment for the next
 * task, then goes back. The coordinator places leases; it never sees a task.
 */
export class DirectSubmitter implements TaskScheduling {
  private shapes = new Map<string, Shape>()
  private shapesById = new Map<string, Shape>()
  private leases = new Map<string, HeldLease>()
  /** How long each function's tasks run on a node (moving average, ms). */
  private runtimes = new Map<string, number>()
  /** Shapes whose queue or leases changed this turn: each is pumped once, at the end of the turn. */
  private dirty = new Set<Shape>()
  private closed = false
  private readonly pumps = new TurnBatch<Shape>((shapes) => {
    for (const s of shapes) {
      this.dirty.delete(s)
      this.pump(s)
    }
  })
  private nextShape = 1
  private readonly returns = new TurnBatch<string>((leaseIds) => {
    if (!this.closed) this.ch.send({ type: 'lease-return', leaseIds })
  })

  constructor(
    private readonly ch: DirectSubmitChannel,
    private readonly tasks: OwnedTasks,
  ) {}

  /** Leases held now (diagnostics, tests). */
  get leaseCount(): number {
    return this.leases.size
  }

  enqueue(t: OwnedTask, front: boolean): void {
    const shape = this.shapeOf(this.keyOf(t), t)
    t.shapeKey = shape.key
    if (front) shape.queue.unshift(t)
    else shape.queue.push(t)
    if (shape.infeasible) this.ch.markInfeasible([t.taskId], shape.infeasible)
    this.markDirty(shape)
  }

  dequeue(t: OwnedTask): void {
    const shape = t.shapeKey ? this.shapes.get(t.shapeKey) : undefined
    if (shape?.queue.remove(t)) this.markDirty(shape)
  }

  cancelPushed(t: OwnedTask, force: boolean): void {
    const l = t.leaseId ? this.leases.get(t.leaseId) : undefined
    if (!l) return
    l.inflight.delete(t.taskId)
    this.sendPeer(l, { type: 'cancel', leaseId: l.lease.leaseId, taskId: t.taskId, force }, t.carriesRefs)
    this.markDirty(l.shape)
  }

  /** The coordinator granted a lease asked for. One no longer wanted goes back (or serves the next task of its shape). */
  onGranted(shapeId: string, lease: Lease): void {
    const shape = this.shapesById.get(shapeId)
    if (!shape) return this.returns.push(lease.leaseId)
    shape.outstanding = Math.max(0, shape.outstanding - 1)
    const l: HeldLease = {
      lease,
      shape,
      inflight: new Map(),
      functionsSent: new Set(),
      reclaimed: false,
      used: false,
      idleTimer: undefined,
    }
    this.leases.set(lease.leaseId, l)
    shape.leases.add(l)
    this.markDirty(shape)
  }

  /** No lease of this shape can ever be granted: its tasks fail with the coordinator's reason. */
  onFailed(shapeId: string, reason: string): void {
    const shape = this.shapesById.get(shapeId)
    if (!shape) return
    shape.outstanding = 0
    for (const t of shape.queue.drain()) this.tasks.unschedulable(t, reason)
  }

  /** The coordinator warned that no node can ever fit this shape: its tasks wait (as in Ray) and say why on timeout. */
  onInfeasible(shapeId: string, message: string): void {
    const shape = this.shapesById.get(shapeId)
    if (!shape) return
    shape.infeasible = message
    this.ch.markInfeasible(
      [...shape.queue].map((t) => t.taskId),
      message,
    )
  }

  /** These leases' node died: what was in flight under them failed (their owner retries it). */
  onRevoked(leaseIds: readonly string[], nodeId: string): void {
    for (const id of leaseIds) {
      const l = this.leases.get(id)
      if (!l) continue
      this.drop(l)
      for (const t of l.inflight.values()) this.tasks.nodeDied(t, nodeId)
      l.inflight.clear()
      this.markDirty(l.shape)
    }
  }

  /** The coordinator wants these leases back for others: they take no more tasks (but a first) and go once idle. */
  onReclaim(leaseIds: readonly string[]): void {
    for (const id of leaseIds) {
      const l = this.leases.get(id)
      if (!l) continue
      l.reclaimed = true
      // A lease not used yet still takes one push first: else two owners short of leases could ask each other's
      // fresh leases back forever, and neither would run a task.
      if (!l.inflight.size && (l.used || !l.shape.queue.length)) this.giveBack(l)
      this.markDirty(l.shape)
    }
  }

  /** Results from the node of a lease (directly, or relayed: then `registered` may say the coordinator took returns). */
  onResults(from: string, msg: PeerMessageOf<'results'>, route: Route): void {
    const l = this.leases.get(msg.leaseId)
    if (!l || l.lease.nodeId !== from) return // not from the node that holds this lease: ignored
    const registered = route === 'relay' && msg.registered === true
    for (const r of msg.results) {
      const t = l.inflight.get(r.taskId)
      if (!t || t.attempt !== r.attempt) continue
      l.inflight.delete(r.taskId)
      if (!r.ok && r.error.code === FUNCTION_MISSING) {
        // The push that carried the function was lost (refused on its way): it goes again with the next push.
        l.functionsSent.clear()
        this.tasks.requeue(t)
        continue
      }
      if (r.ms !== undefined) {
        const prev = this.runtimes.get(t.template.functionId)
        this.runtimes.set(t.template.functionId, prev === undefined ? r.ms : prev * 0.8 + r.ms * 0.2)
      }
      this.tasks.completed(t, r, l.lease.nodeId, registered)
    }
    this.markDirty(l.shape)
  }

  /** Sends queued work now (before a message that must follow it). */
  flush(): void {
    this.pumps.flush()
  }

  private keyOf(t: OwnedTask): string {
    // A lone inline argument (most tasks) has no refs.
    const preferNode =
      t.template.strategy === 'DEFAULT' && !(t.args instanceof Uint8Array)
        ? whereTheDataIs(t.args, (id) => this.ch.objects.peek(id))
        : undefined
    return JSON.stringify([t.template.resources, t.template.strategy, preferNode ?? null, t.template.volunteers])
  }

  private shapeOf(key: string, t: OwnedTask): Shape {
    let shape = this.shapes.get(key)
    if (!shape) {
      const preferNode = (JSON.parse(key) as unknown[])[2] as string | null
      shape = {
        id: `s${this.nextShape++}`,
        key,
        resources: t.template.resources,
        strategy: t.template.strategy,
        volunteers: t.template.volunteers,
        preferNode: preferNode ?? undefined,
        queue: new Deque(),
        leases: new Set(),
        outstanding: 0,
        infeasible: undefined,
      }
      this.shapes.set(key, shape)
      this.shapesById.set(shape.id, shape)
    }
    return shape
  }

  /**
   * How many tasks may be in flight on a lease of `shape` when the next one runs `functionId`: by how long that
   * function ran so far (tasks of one shape may run for a millisecond or a minute); one while that is unknown.
   */
  private depthFor(shape: Shape, functionId: string | undefined): number {
    const ms = functionId === undefined ? undefined : this.runtimes.get(functionId)
    if (shape.strategy === 'SPREAD' || ms === undefined) return 1
    return Math.max(1, Math.min(MAX_DEPTH, Math.floor(PIPELINE_MS / Math.max(ms, 0.01))))
  }

  private headDepth(shape: Shape): number {
    return this.depthFor(shape, shape.queue.peek()?.template.functionId)
  }

  private markDirty(shape: Shape): void {
    if (this.dirty.has(shape)) return
    this.dirty.add(shape)
    this.pumps.push(shape)
  }

  /** Fills the shape's leases up to its depth, asks for the leases its queue still needs, lets idle ones go. */
  private pump(shape: Shape): void {
    if (this.closed) return
    let inflight = 0
    for (const l of shape.leases) {
      if (!l.reclaimed || !l.used) this.fill(l)
      if (!l.reclaimed) inflight += l.inflight.size // a lease asked back takes no more: it counts for nothing
      if (!l.inflight.size) this.idle(l)
    }
    const queued = shape.queue.length
    if (queued) {
      const active = [...shape.leases].filter((l) => !l.reclaimed).length
      const wanted = Math.min(MAX_LEASES_PER_SHAPE, Math.ceil((queued + inflight) / this.headDepth(shape)))
      const more = wanted - active - shape.outstanding
      if (more > 0) {
        shape.outstanding += more
        const head = shape.queue.peek() as OwnedTask
        this.ch.send({
          type: 'lease-request',
          shapeId: shape.id,
          resources: shape.resources,
          strategy: shape.strategy,
          ...(shape.preferNode && { preferNode: shape.preferNode }),
          ...(shape.volunteers && { volunteers: true }),
          count: more,
          head: { taskId: head.taskId, name: head.template.name },
        })
      }
    } else if (shape.outstanding > 0) {
      shape.outstanding = 0
      this.ch.send({ type: 'lease-cancel', shapeId: shape.id })
    }
  }

  /** Pushes queued tasks to a lease while it has fewer in flight than the next one's depth allows. */
  private fill(l: HeldLease): void {
    const q = l.shape.queue
    // Nothing to push leaves an idle lease's linger running (every result of the shape pumps all its leases).
    if (!q.length || l.inflight.size >= this.headDepth(l.shape) || (l.shape.strategy === 'SPREAD' && l.used)) return
    l.used = true
    if (l.idleTimer) clearTimeout(l.idleTimer)
    l.idleTimer = undefined
    const pushes = new PushBatches(this.ch.pushBudget(), (tasks, viaCoordinator) => this.sendPeer(l, this.pushOf(l, tasks), viaCoordinator))
    while (q.length && l.inflight.size < this.headDepth(l.shape)) {
      const t = q.shift() as OwnedTask
      if (t.phase !== 'queued') continue
      l.inflight.set(t.taskId, t)
      this.tasks.pushed(t, l.lease.leaseId, l.lease.nodeId)
      pushes.add(pushedTaskOf(t, this.ch.objects))
    }
    pushes.flush()
  }

  private pushOf(l: HeldLease, tasks: PushedTask[]): PeerMessage {
    const functions: FunctionDef[] = []
    for (const t of tasks) {
      if (l.functionsSent.has(t.functionId)) continue
      const def = this.ch.functionDef(t.functionId)
      if (!def) continue
      l.functionsSent.add(t.functionId)
      functions.push(def)
    }
    return { type: 'push', lease: l.lease, namespace: this.ch.namespace, tasks, ...(functions.length && { functions }) }
  }

  private sendPeer(l: HeldLease, msg: PeerMessage, viaCoordinator: boolean): void {
    this.ch.links.send(l.lease.nodeId, msg, viaCoordinator ? 'relay' : undefined)
  }

  /**
   * A lease with nothing in flight: returned now if reclaimed or its shape has no work, after a linger otherwise. A
   * SPREAD lease runs one task: each task of a SPREAD shape is placed by the coordinator, round robin over the nodes.
   */
  private idle(l: HeldLease): void {
    if (l.reclaimed || (l.shape.strategy === 'SPREAD' && l.used)) return this.giveBack(l)
    if (l.idleTimer || l.shape.queue.length) return
    l.idleTimer = setTimeout(() => {
      l.idleTimer = undefined
      if (!l.inflight.size && !l.shape.queue.length) this.giveBack(l)
    }, LEASE_LINGER_MS)
  }

  private giveBack(l: HeldLease): void {
    if (!this.leases.has(l.lease.leaseId)) return
    this.drop(l)
    this.returns.push(l.lease.leaseId)
  }

  private drop(l: HeldLease): void {
    if (l.idleTimer) clearTimeout(l.idleTimer)
    l.idleTimer = undefined
    this.leases.delete(l.lease.leaseId)
    l.shape.leases.delete(l)
  }

  /** The connection is gone: timers stop (the coordinator ends its leases). */
  close(): void {
    this.closed = true
    for (const l of this.leases.values()) if (l.idleTimer) clearTimeout(l.idleTimer)
    this.leases.clear()
    this.returns.clear()
    this.pumps.clear()
  }
}
