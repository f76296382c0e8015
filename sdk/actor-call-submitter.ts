import { Deque } from './deque.ts'
import { ActorDiedError, type WireError } from './errors.ts'
import type { OwnedTask, OwnedTasks, TaskScheduling } from './owned-tasks.ts'
import {
  ACTOR_NOT_HERE,
  type ActorStateMessage,
  type Lease,
  type PeerMessage,
  type PeerMessageOf,
  type PushedTask,
} from './protocol/index.ts'
import { PushBatches, type PushChannel, pushedTaskOf } from './pushed-task.ts'
import type { Route } from './transport/peer-links.ts'
import { TurnBatch } from './turn-batch.ts'

/** Most calls of one caller in flight to one actor (the node queues them; more wait here). */
const MAX_INFLIGHT_PER_ACTOR = 4096
/** A call its actor's node refused this many times (the actor is not where the coordinator said) fails. */
const MAX_REFUSALS = 3
/** After a refusal, the caller asks the coordinator where the actor is after this long (ms), times the refusals. */
const REASK_MS = 25

/** An actor this connection calls, as its handles name it. */
interface CalledActor {
  actorId: string
  /** What the coordinator last said: `asked` until it says anything. */
  state: 'asked' | 'ALIVE' | 'RESTARTING' | 'DEAD'
  /** The actor lease for the incarnation alive now (calls go to its node under it). */
  lease: Lease | undefined
  maxTaskRetries: number
  /** Why it is dead (every call fails with it). */
  error: WireError | undefined
  /** Why its last incarnation ended (while it restarts). */
  reason: string | undefined
  /** The seq of the next call pushed under the current lease (the node runs each lease's calls in seq order). */
  nextSeq: number
  /**
   * Calls not pushed yet, in the order they were made: the head goes first once its arguments are ready. As in Ray,
   * a call waiting for its arguments holds back only the later calls of its own caller.
   */
  order: Deque<OwnedTask>
  /** Calls pushed and not answered, in seq order. */
  inflight: Map<string, OwnedTask>
  /**
   * Of those, how many went under an older lease of this incarnation (asked again after a refusal): later calls wait
   * until these are answered or refused, so none overtakes them.
   */
  behind: number
  reaskTimer: ReturnType<typeof setTimeout> | undefined
}

/** What the actor call submitter needs from its connection. */
export interface ActorCallChannel extends PushChannel {
  /**
   * Asks the coordinator for an actor lease (after whatever this connection queued for it before: the actor's
   * creation may be in the same turn's batch).
   */
  requestLease(actorId: string): void
}

/**
 * Ray's direct actor calls, caller side: the coordinator says where an actor lives (an actor lease, signed for its
 * node, per incarnation); this caller pushes its calls straight to that node, numbered in the order it made them,
 * and the node runs them in that order and answers here. When the actor restarts, calls in flight run again on the
 * new incarnation within `maxTaskRetries`, or fail with ActorDiedError; when it dies, every call fails with why.
 */
export class ActorCallSubmitter implements TaskScheduling {
  private actors = new Map<string, CalledActor>()
  /** Which actor each lease this caller was given is for (results name the lease). */
  private byLease = new Map<string, CalledActor>()
  /** How often each call was refused by a node that did not host its actor. */
  private refusals = new Map<string, number>()
  private readonly pumps = new TurnBatch<CalledActor>((actors) => {
    for (const a of new Set(actors)) this.pump(a)
  })
  private closed = false

  constructor(
    private readonly ch: ActorCallChannel,
    private readonly tasks: OwnedTasks,
  ) {}

  /** A new call: it takes its place in its caller's order now, whether or not its arguments are ready. */
  submitted(t: OwnedTask): void {
    const a = this.actorOf(t.template.actorId as string)
    if (a.state !== 'DEAD') a.order.push(t) // a call to a dead actor fails when queued, and is never sent
  }

  /** A call's arguments are ready (or, `front`, it goes again after its incarnation was lost or its node refused it). */
  enqueue(t: OwnedTask, front: boolean): void {
    const a = this.actorOf(t.template.actorId as string)
    if (a.state === 'DEAD') return this.tasks.fail(t, a.error as WireError)
    if (front) a.order.unshift(t)
    // While it restarts, a call that could not be retried fails at once, as Ray's fast fail with max_task_retries=0.
    if (a.state === 'RESTARTING' && a.maxTaskRetries === 0 && !front)
      return this.tasks.fail(t, new ActorDiedError(a.actorId, `it is restarting (${a.reason}), and maxTaskRetries is 0`).toWire())
    this.pumps.push(a)
  }

  /** A call cancelled before it was pushed: it never goes (pump skips calls that are done). */
  dequeue(t: OwnedTask): void {
    this.settled(t)
  }

  /** A call ended before it was pushed: the calls behind it may go now. */
  settled(t: OwnedTask): void {
    const a = this.actors.get(t.template.actorId as string)
    if (a && a.state !== 'DEAD') this.pumps.push(a)
  }

  /** Asks the node to drop a pushed call that has not started: it answers cancelled, or with the call's result. */
  cancelPushed(t: OwnedTask, force: boolean): void {
    const a = this.actors.get(t.template.actorId as string)
    const lease = t.leaseId && a?.lease?.leaseId === t.leaseId ? a.lease : undefined
    if (lease)
      this.ch.links.send(
        lease.nodeId,
        { type: 'cancel', leaseId: lease.leaseId, taskId: t.taskId, force },
        t.carriesRefs ? 'relay' : undefined,
      )
  }

  /**
   * A pushed call never reached its node (the coordinator refused the frame that carried it). The node runs a
   * caller's calls strictly by number, so those numbered after it under that lease would wait there forever: they
   * never ran, and go again, in order, under a new lease (asked for now; the node forgets the old one).
   */
  lost(t: OwnedTask): void {
    const a = this.actors.get(t.template.actorId as string)
    if (!a?.inflight.has(t.taskId)) return
    // In flight in the order they were pushed: those after it under its lease are stuck behind it.
    const later: OwnedTask[] = []
    let after = false
    for (const x of a.inflight.values()) {
      if (x === t) after = true
      else if (after && x.leaseId === t.leaseId) later.push(x)
    }
    a.inflight.delete(t.taskId)
    for (const x of later) a.inflight.delete(x.taskId)
    if (a.lease && a.lease.leaseId === t.leaseId && a.state === 'ALIVE') {
      a.state = 'asked'
      a.lease = undefined
      if (!this.closed) this.ch.requestLease(a.actorId)
    }
    for (const x of later.reverse()) this.tasks.requeue(x)
  }

  /** Whether results under this lease are for this submitter (an actor lease it was given). */
  owns(leaseId: string): boolean {
    return this.byLease.has(leaseId)
  }

  /** What the coordinator says of an actor this connection calls. */
  onActorState(msg: ActorStateMessage): void {
    const a = this.actors.get(msg.actorId)
    if (!a || a.state === 'DEAD') return
    if (msg.state === 'ALIVE') {
      a.state = 'ALIVE'
      a.lease = msg.lease
      a.maxTaskRetries = msg.maxTaskRetries
      a.nextSeq = 0
      this.byLease.set(msg.lease.leaseId, a)
      a.behind = 0
      for (const t of a.inflight.values()) if (t.leaseId !== msg.lease.leaseId) a.behind++
      return this.pumps.push(a)
    }
    a.lease = undefined
    if (msg.state === 'RESTARTING') {
      a.state = 'RESTARTING'
      a.reason = msg.reason
      a.maxTaskRetries = msg.maxTaskRetries
      // What was in flight went with the old incarnation: it runs again on the next one while retries are left.
      const lost = [...a.inflight.values()].reverse()
      a.inflight.clear()
      a.behind = 0
      for (const t of lost) {
        t.maxRetries = a.maxTaskRetries
        this.tasks.attemptFailed(t, new ActorDiedError(a.actorId, `${msg.reason} while this call ran`).toWire(), false)
      }
      return
    }
    a.state = 'DEAD'
    a.error = msg.error
    if (a.reaskTimer) clearTimeout(a.reaskTimer)
    const pending = [...a.inflight.values(), ...a.order]
    a.inflight.clear()
    a.behind = 0
    a.order.drain()
    for (const t of pending) this.tasks.fail(t, msg.error)
    for (const [id, x] of this.byLease) if (x === a) this.byLease.delete(id)
  }

  /** Results from the actor's node, under one of this caller's actor leases. */
  onResults(from: string, msg: PeerMessageOf<'results'>, route: Route): void {
    const a = this.byLease.get(msg.leaseId)
    if (!a) return
    const registered = route === 'relay' && msg.registered === true
    const refused: OwnedTask[] = []
    let refusal = ''
    for (const r of msg.results) {
      const t = a.inflight.get(r.taskId)
      if (!t || t.attempt !== r.attempt || t.leaseId !== msg.leaseId || from !== t.nodeId) continue
      a.inflight.delete(r.taskId)
      if (t.leaseId !== a.lease?.leaseId && a.behind > 0) a.behind--
      if (!r.ok && r.error.code === ACTOR_NOT_HERE) {
        refused.push(t)
        refusal = r.error.message
        continue
      }
      this.refusals.delete(t.taskId)
      this.tasks.completed(t, r, from, registered)
    }
    if (refused.length) this.refused(a, refused, refusal)
    this.pumps.push(a)
  }

  /** Sends queued calls now (before a message that must follow them). */
  flush(): void {
    this.pumps.flush()
  }

  close(): void {
    this.closed = true
    for (const a of this.actors.values()) if (a.reaskTimer) clearTimeout(a.reaskTimer)
    this.pumps.clear()
  }

  private actorOf(actorId: string): CalledActor {
    let a = this.actors.get(actorId)
    if (!a) {
      a = {
        actorId,
        state: 'asked',
        lease: undefined,
        maxTaskRetries: 0,
        error: undefined,
        reason: undefined,
        nextSeq: 0,
        order: new Deque(),
        inflight: new Map(),
        behind: 0,
        reaskTimer: undefined,
      }
      this.actors.set(actorId, a)
      this.ch.requestLease(actorId)
    }
    return a
  }

  /**
   * The node did not host the actor the lease names (it died or moved, and the coordinator has not said so yet): the
   * calls never ran. They go again, in order, once the coordinator says where the actor is; after a few refusals a
   * call fails.
   */
  private refused(a: CalledActor, calls: OwnedTask[], why: string): void {
    if (a.lease && calls.some((t) => t.leaseId === a.lease?.leaseId)) {
      a.state = 'asked'
      a.lease = undefined
    }
    for (const t of calls.reverse()) {
      const n = (this.refusals.get(t.taskId) ?? 0) + 1
      this.refusals.set(t.taskId, n)
      if (n > MAX_REFUSALS) {
        this.refusals.delete(t.taskId)
        this.tasks.fail(t, new ActorDiedError(a.actorId, `its node kept refusing the call: ${why}`).toWire())
      } else this.tasks.requeue(t)
    }
    if (a.state !== 'asked' || a.reaskTimer || this.closed) return
    const delay = REASK_MS * Math.max(...calls.map((t) => this.refusals.get(t.taskId) ?? 1))
    a.reaskTimer = setTimeout(() => {
      a.reaskTimer = undefined
      if (!this.closed && a.state === 'asked') this.ch.requestLease(a.actorId)
    }, delay)
  }

  /** Pushes the calls whose turn came, in order, to the actor's node (the head must have its arguments). */
  private pump(a: CalledActor): void {
    if (this.closed) return
    const lease = a.lease
    if (a.state !== 'ALIVE' || !lease || a.behind > 0) return
    // A call whose arguments hold refs goes through the coordinator (it must see them first); the node restores the
    // order by seq, whichever way each call came.
    const pushes = new PushBatches(this.ch.pushBudget(), (tasks, viaCoordinator) => this.send(lease, tasks, viaCoordinator))
    while (a.order.length && a.inflight.size < MAX_INFLIGHT_PER_ACTOR) {
      const t = a.order.peek() as OwnedTask
      if (t.phase === 'done') {
        a.order.shift()
        continue
      }
      if (t.phase !== 'queued') break // waiting for its arguments: the calls behind it wait too
      a.order.shift()
      a.inflight.set(t.taskId, t)
      this.tasks.pushed(t, lease.leaseId, lease.nodeId)
      pushes.add({ ...pushedTaskOf(t, this.ch.objects), method: t.template.method as string, seq: a.nextSeq++ })
    }
    pushes.flush()
  }

  private send(lease: Lease, tasks: PushedTask[], viaCoordinator: boolean): void {
    const msg: PeerMessage = { type: 'push', lease, namespace: this.ch.namespace, tasks }
    this.ch.links.send(lease.nodeId, msg, viaCoordinator ? 'relay' : undefined)
  }
}
