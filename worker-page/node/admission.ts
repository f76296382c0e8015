import { BoundedSet } from '../../sdk/bounded.ts'
import type { Lease, PeerMessage, PeerMessageOf } from '../../sdk/protocol/index.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import { type LeaseCheck, LeaseVerifier } from '../lease-verifier.ts'
import { systemError, unrun } from './pushed.ts'

/** A lease's queue holds at most this many tasks (an owner pipelines far fewer; more is a runaway or hostile peer). */
export const MAX_QUEUED_PER_LEASE = 100_000
/** How many ended leases are remembered (a push under one of them is refused). */
const ENDED_REMEMBERED = 100_000

/** Why the tasks of a push are not taken: `code` tells their owner what to do (retry, ask for a new lease, fail). */
export interface Refusal {
  code: string
  why: string
}

/** What one kind of lease leads to here: a lease run (leased tasks), or a caller of a hosted actor (actor calls). */
export interface LeaseSessions<S extends { lease: Lease }> {
  /** What the lease is called in a refusal: 'lease', 'actor lease'. */
  readonly what: string
  /** Whether what the lease is for is here (for an actor lease: its actor, in that incarnation; nothing once stopped). */
  here(lease: Lease): boolean
  /** The refusal of a push under a lease that ended here, or whose session is not here. */
  notHere(lease: Lease): Refusal
  /** The session opened under this lease id, if any. */
  known(lease: Lease): S | undefined
  /** Opens a session for a lease first shown here, its signature checked. */
  open(lease: Lease, namespace: string): S
}

/**
 * Which pushes this node takes, for leased tasks and actor calls alike: a push comes from its lease's owner, under a
 * lease the coordinator signed for this node, that has not ended, and that matches the lease first shown under its
 * id. A refused push is answered at once, each of its tasks failed with the refusal's code.
 */
export class LeaseAdmission {
  private readonly ended = new BoundedSet<string>(ENDED_REMEMBERED)

  constructor(
    private readonly nodeId: string,
    private verifier: LeaseCheck | undefined,
    /** Sends a message to a peer (a push's owner), the way given. */
    private readonly sendTo: (to: string, msg: PeerMessage, route: Route) => void,
  ) {}

  /** The coordinator's key came (in its welcome): leases are checked with it, unless a check was given. */
  keyFrom(leaseKey: string): void {
    if (!this.verifier) this.verifier = new LeaseVerifier(this.nodeId, leaseKey)
  }

  /** The lease ended here: pushes under it are refused from now on. */
  end(leaseId: string): void {
    this.ended.add(leaseId)
  }

  /**
   * Calls `admitted` with the push's session if the push is taken, else refuses it. A session already known is
   * taken in this turn (a cancel right behind the push finds its tasks); a lease first shown waits for its signature
   * to be checked (Web Crypto), after which it is looked at again: it may have ended, or another push opened it.
   */
  admit<S extends { lease: Lease }>(
    from: string,
    msg: PeerMessageOf<'push'>,
    route: Route,
    sessions: LeaseSessions<S>,
    admitted: (session: S) => void,
  ): void {
    const { lease } = msg
    const invalid = (why: string) => this.refuse(from, msg, route, { code: 'LEASE_INVALID', why })
    if (lease.owner !== from) return invalid(`the lease belongs to ${lease.owner}, not ${from}`)
    if (this.gone(lease, sessions)) return this.refuse(from, msg, route, sessions.notHere(lease))
    const known = sessions.known(lease)
    if (known) return known.lease.sig === lease.sig ? admitted(known) : invalid('the lease does not match the one first shown')
    void this.verifyFirst(from, msg, route, sessions, admitted)
  }

  private async verifyFirst<S extends { lease: Lease }>(
    from: string,
    msg: PeerMessageOf<'push'>,
    route: Route,
    sessions: LeaseSessions<S>,
    admitted: (session: S) => void,
  ): Promise<void> {
    const { lease } = msg
    if (!this.verifier || !(await this.verifier.verify(lease)))
      return this.refuse(from, msg, route, {
        code: 'LEASE_INVALID',
        why: `the ${sessions.what} is not signed by the coordinator for this node`,
      })
    if (this.gone(lease, sessions)) return this.refuse(from, msg, route, sessions.notHere(lease))
    admitted(sessions.known(lease) ?? sessions.open(lease, msg.namespace))
  }

  private gone(lease: Lease, sessions: LeaseSessions<{ lease: Lease }>): boolean {
    return this.ended.has(lease.leaseId) || !sessions.here(lease)
  }

  /**
   * Refuses a push whose tasks would take its lease's waiting ones (`waiting`) past MAX_QUEUED_PER_LEASE (`what`
   * waits: 'tasks queued', 'calls waiting'). Whether it was refused.
   */
  refuseOverflow(from: string, msg: PeerMessageOf<'push'>, route: Route, waiting: number, what: string): boolean {
    if (waiting + msg.tasks.length <= MAX_QUEUED_PER_LEASE) return false
    this.refuse(from, msg, route, { code: 'LEASE_INVALID', why: `more than ${MAX_QUEUED_PER_LEASE} ${what} under one lease` })
    return true
  }

  /** Answers every task of a push with a refusal (the owner retries them, or fails them, as the code says). */
  refuse(from: string, msg: PeerMessageOf<'push'>, route: Route, r: Refusal): void {
    const error = systemError(r.code, 'ValidationError', `node ${this.nodeId} refused the tasks: ${r.why}`)
    this.sendTo(from, { type: 'results', leaseId: msg.lease.leaseId, results: msg.tasks.map((t) => unrun(t, error)) }, route)
  }
}
