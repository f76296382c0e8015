import { ConnectionError, ValidationError } from '../sdk/errors.ts'
import type { ClientMessageOf } from '../sdk/protocol/index.ts'
import { MAX_FRAME_BYTES, PROTOCOL_VERSION } from '../sdk/protocol/index.ts'
import { fromUnits } from '../sdk/resources.ts'
import type { ActorManager } from './actor-manager.ts'
import { type Credentials, DEFAULT_TENANT } from './auth.ts'
import type { JobTable } from './gcs/jobs.ts'
import type { NodeTable } from './gcs/nodes.ts'
import { IceConfig } from './ice.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { ObjectTransfers } from './object-transfers.ts'
import type { PlacedTasks } from './placed-tasks.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'
import type { SessionRegistry } from './sessions.ts'

export interface AdmissionOptions {
  /** Let nodes without a token join as volunteers (they run only work whose options say `volunteers: true`). */
  volunteers?: boolean
  /** STUN/TURN servers, TURN credentials and the transport policy every welcome carries. */
  ice?: IceConfig
  peerjsPath?: string
  maxFrameBytes?: number
}

const NO_ICE = new IceConfig()

export interface AdmissionDeps {
  credentials: Credentials
  nodes: NodeTable
  jobs: JobTable
  leases: LeaseManager
  tasks: PlacedTasks
  actors: ActorManager
  scheduler: Pick<Scheduler<Schedulable>, 'nodesChanged'>
  transfers: ObjectTransfers
  sessions: SessionRegistry
  log: (line: string) => void
}

/**
 * A connection's `hello`, answered by `welcome` or refused: the token checked against the role it says (a node may
 * volunteer without one), then a node joins the table, a driver starts a job, or a node's worker joins the job of the
 * work its node runs. Each gets its tickets (its peer id's proof) and the settings it needs.
 */
export class Admission {
  constructor(
    private readonly deps: AdmissionDeps,
    private readonly opts: AdmissionOptions,
  ) {}

  hello(s: Session, msg: ClientMessageOf<'hello'>): void {
    const { credentials, sessions } = this.deps
    if (msg.protocol !== PROTOCOL_VERSION)
      throw new ConnectionError(
        `protocol version ${msg.protocol} is not supported (the coordinator speaks ${PROTOCOL_VERSION}); update the SDK or node page`,
      )
    // A worker's channel is vouched for by its node, and only to join a job that node runs work of (below); every
    // socket shows a token, unless it volunteers a node.
    if (s.carrier && (msg.role !== 'driver' || !msg.attachJob))
      throw new ConnectionError("a node's worker channel may only join a job it runs work of (role 'driver' with attachJob)")
    if (!s.carrier && !this.admit(s, msg)) return
    const ice = this.opts.ice ?? NO_ICE
    const base = (participant: string | undefined) => ({
      type: 'welcome' as const,
      reqId: msg.reqId,
      peerjsPath: this.opts.peerjsPath ?? '/peerjs',
      // TURN credentials are minted for the peer id that signs in with them (a worker's channel joins no mesh).
      iceServers: participant ? ice.serversFor(participant) : [],
      iceTransportPolicy: ice.transportPolicy,
      maxFrameBytes: this.opts.maxFrameBytes ?? MAX_FRAME_BYTES,
    })
    if (msg.role === 'node') {
      if (!msg.node) throw new ValidationError('a node must describe its resources in hello')
      const rec = this.deps.nodes.add(msg.node, s.trust ?? 'trusted')
      s.role = 'node'
      s.nodeId = rec.nodeId
      sessions.addNode(rec.nodeId, s)
      this.deps.log(
        `[coordinator] ${s.trust === 'volunteer' ? 'volunteer ' : ''}node ${rec.nodeId.slice(0, 8)} joined: ${JSON.stringify(fromUnits(rec.total))}${rec.name ? ` (${rec.name})` : ''}`,
      )
      const peerjsKey = credentials.ticketFor(rec.nodeId)
      s.send({ ...base(rec.nodeId), nodeId: rec.nodeId, namespace: '', leaseKey: this.deps.leases.keyFor(rec.nodeId), peerjsKey })
      this.deps.scheduler.nodesChanged()
      this.deps.transfers.onNodeJoined()
      return
    }
    if (msg.namespace === '') throw new ValidationError('namespace must not be empty (leave it out for an anonymous namespace of this job)')
    if (msg.attachJob) {
      // Only a node's worker (a task of that job, on its relay channel) joins a job; a driver starts its own.
      if (!s.carrier) throw new ValidationError('only a task running on a node can join an existing job')
      // A job that ended may still have detached actors working for it: their workers may join it.
      const job = this.deps.jobs.get(msg.attachJob)
      if (!job) throw new ConnectionError(`job ${msg.attachJob} does not exist`)
      // A node speaks for the jobs it runs work of, and no other: a volunteer cannot act as any job it likes.
      if (!this.runsJob(s.carrier.node, job.jobId)) throw new ConnectionError(`this node runs no task of job ${msg.attachJob}`)
      s.role = 'driver'
      s.tenant = job.tenant
      s.jobId = job.jobId
      s.namespace = job.namespace
      if (msg.actorId) sessions.hostsActor(s, msg.actorId)
    } else {
      // A job that names no namespace gets an anonymous one of its own, as in Ray.
      const job = this.deps.jobs.create(msg.namespace, s.tenant)
      s.role = 'driver'
      s.jobId = job.jobId
      s.namespace = job.namespace
      s.isJobRoot = true
    }
    if (msg.peerId && !s.carrier) sessions.addPeer(msg.peerId, s)
    s.send({ ...base(s.peerId), jobId: s.jobId, namespace: s.namespace, ...(s.peerId && { peerjsKey: credentials.ticketFor(s.peerId) }) })
  }

  /**
   * Checks a socket's token against the role it says hello as. Refused: one reply with the reason, then close 4001.
   * A node without a token may join as a volunteer where the coordinator allows them.
   */
  private admit(s: Session, msg: ClientMessageOf<'hello'>): boolean {
    const who = this.deps.credentials.authenticate(msg.token)
    let refusal: string | undefined
    if (!who) {
      if (msg.role === 'node' && !msg.token && this.opts.volunteers) {
        Object.assign(s, { tenant: DEFAULT_TENANT, trust: 'volunteer' })
        return true
      }
      refusal = msg.token
        ? 'the coordinator refused the token'
        : `the coordinator requires a token (${msg.role === 'node' ? 'open /node?token=…' : 'connect({ token })'})`
    } else if (msg.role === 'node' && who.role === 'driver') refusal = 'a driver token cannot join as a node (use a node token)'
    else if (msg.role === 'driver' && who.role === 'node') refusal = 'a node token cannot start a job (use a driver token)'
    if (refusal || !who) {
      const error = new ConnectionError(refusal ?? 'refused').toWire()
      s.send({ type: 'reply', reqId: msg.reqId, ok: false, error })
      s.close(4001, error.message)
      return false
    }
    s.tenant = who.tenant
    s.admin = who.role === 'admin'
    if (msg.role === 'node') s.trust = 'trusted'
    return true
  }

  /** Whether `node` runs work of `jobId` now: a task the coordinator placed there, a lease, or an actor's calls. */
  private runsJob(node: Session, jobId: string): boolean {
    const nodeId = node.nodeId as string
    return (
      this.deps.tasks.runsJobOn(nodeId, jobId) ||
      this.deps.leases.holdsJob(nodeId, jobId) ||
      this.deps.actors.callsOnNode(nodeId, jobId) ||
      this.deps.actors.hostsJobOn(nodeId, jobId)
    )
  }
}
