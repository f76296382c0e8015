import { ShoalError } from '../sdk/errors.ts'
import type { ClientMessage, StateQuery } from '../sdk/protocol/index.ts'
import { MAX_FRAME_BYTES, RELAY_OVERHEAD_BYTES } from '../sdk/protocol/index.ts'
import type { TaskRow } from '../sdk/state-api.ts'
import { ActorManager } from './actor-manager.ts'
import { Admission } from './admission.ts'
import { Credentials, DEFAULT_TENANT } from './auth.ts'
import { type MessageHandler, publicError } from './edge.ts'
import { FateSharing } from './fate-sharing.ts'
import { FunctionTable } from './gcs/functions.ts'
import { JobTable } from './gcs/jobs.ts'
import { NodeTable } from './gcs/nodes.ts'
import { ObjectDirectory } from './gcs/object-directory.ts'
import { MAX_TASK_ROWS, TaskEvents } from './gcs/task-events.ts'
import type { IceConfig } from './ice.ts'
import { LeaseManager, type LeaseRequest } from './lease-manager.ts'
import { type MessageRoutes, messageRoutes, type RouteContext, routeMessage } from './message-routes.ts'
import { NodeControls } from './node-controls.ts'
import { ObjectRequests } from './object-requests.ts'
import { ObjectTransfers } from './object-transfers.ts'
import { PeerRelay } from './peer-relay.ts'
import { PlacedTasks, type TaskRecord } from './placed-tasks.ts'
import { type Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'
import { SessionRegistry } from './sessions.ts'
import { StateReader } from './state-query.ts'
import type { ControlStore } from './store/control-store.ts'
import { TaskRequests } from './task-requests.ts'
import { Tenancy, type Viewer } from './tenancy.ts'
import { isReplica } from './verified-tasks.ts'

export interface ClusterOptions {
  /** Who may connect, as what (roles and tenants: docs/trust.md). Default: none configured, everyone is an admin of the default tenant. */
  credentials?: Credentials
  /** Shorthand for `credentials`: one admin token. */
  token?: string
  /** Let nodes without a token join as volunteers (they run only work whose options say `volunteers: true`). */
  volunteers?: boolean
  /** A node silent for this long is declared dead. */
  heartbeatTimeoutMs?: number
  /** STUN/TURN servers, TURN credentials and the transport policy every welcome carries. */
  ice?: IceConfig
  peerjsPath?: string
  /** Largest frame a driver may send (a node's may be larger by RELAY_OVERHEAD_BYTES, to carry its workers'). */
  maxFrameBytes?: number
  log?: (line: string) => void
  /** The clock heartbeats are judged by (the simulator gives its own). */
  now?: () => number
  /** Check heartbeats on a timer (the simulator calls `checkHeartbeats` itself). */
  monitor?: boolean
  /**
   * Where jobs and functions are kept across restarts (Ray's GCS storage). Without one, nothing outlives
   * the process. Call `restore()` before the first connection.
   */
  store?: ControlStore
}

/**
 * The coordinator's cluster state and the rules that change it (Ray's GCS + scheduler), wired together: the tables,
 * the scheduler and the managers of leases, tasks, actors and objects; admission, the session registry and what ends
 * with a connection; the message routes. It never runs user code and never decodes user values. The edge hands it
 * validated messages; the routes hand them on.
 */
export class Cluster implements MessageHandler, RouteContext {
  readonly nodes: NodeTable
  readonly jobs: JobTable
  readonly functions: FunctionTable
  readonly objects = new ObjectDirectory((jobId) => this.jobs.tenantOf(jobId) ?? DEFAULT_TENANT)
  /** Task rows, bounded per tenant: one tenant's flood never pushes another's rows out. */
  readonly events = new TaskEvents(MAX_TASK_ROWS, (jobId) => this.jobs.tenantOf(jobId) ?? DEFAULT_TENANT)
  /** One scheduler for everything placed on nodes: lease requests and actors' creations share the nodes' resources. */
  readonly scheduler: Scheduler<Schedulable>
  readonly leases: LeaseManager
  readonly tasks: PlacedTasks
  readonly actors: ActorManager
  readonly transfers: ObjectTransfers
  readonly relay: PeerRelay
  readonly credentials: Credentials
  readonly tenancy = new Tenancy((jobId) => this.jobs.tenantOf(jobId))
  readonly sessions = new SessionRegistry((s) => this.disconnected(s))
  readonly admission: Admission
  readonly fate: FateSharing
  readonly objectRequests: ObjectRequests
  readonly taskRequests: TaskRequests
  readonly state: StateReader
  /** What nodes' donors decide on their /node page: CPUs, pause, leave. */
  readonly nodeControls: NodeControls
  private readonly routes: MessageRoutes
  private monitor: ReturnType<typeof setInterval> | undefined
  readonly log: (line: string) => void
  private readonly heartbeatTimeoutMs: number

  constructor(private readonly opts: ClusterOptions = {}) {
    this.log = opts.log ?? ((l) => console.log(l))
    this.credentials = opts.credentials ?? (opts.token ? Credentials.fromToken(opts.token) : Credentials.open())
    // A failed write to the store is logged; the tables in memory stay right (a restart then knows less).
    const storeFailed = (e: unknown) => {
      // Connections that end as the coordinator shuts down may still record their jobs' ends: not worth a warning.
      if (!this.closed) this.log(`[coordinator] control store write failed: ${(e as Error)?.message ?? e}`)
    }
    this.jobs = new JobTable(opts.store, storeFailed)
    this.functions = new FunctionTable(opts.store, storeFailed)
    this.nodes = new NodeTable(opts.now)
    const nodeSession = (id: string) => this.sessions.node(id)
    const isLease = (x: Schedulable): x is LeaseRequest => (x as LeaseRequest).kind === 'lease'
    this.scheduler = new Scheduler<Schedulable>({
      nodes: (x) => {
        const nodes = this.nodes.placeableFor(!!x.volunteers)
        return x.avoid?.size ? nodes.filter((n) => !x.avoid?.has(n.nodeId)) : nodes
      },
      node: (id) => this.nodes.get(id),
      dispatch: (x, n) => {
        if (isLease(x)) this.leases.grant(x, n)
        else if (isReplica(x)) this.tasks.verified.dispatch(x, n)
        else this.tasks.dispatch(x as TaskRecord, n)
      },
      fail: (x, reason) => {
        if (isLease(x)) this.leases.fail(x, reason)
        else if (isReplica(x)) this.tasks.verified.unschedulable(x, reason)
        else this.tasks.unschedulable(x as TaskRecord, reason)
      },
      infeasible: (x, yes) => {
        if (isLease(x)) this.leases.infeasible(x, yes)
        else if (isReplica(x)) this.tasks.verified.infeasible(x, yes)
        else this.tasks.infeasible(x as TaskRecord, yes)
      },
      waiting: (x) => this.leases.waiting(x, isLease(x) ? x.owner : undefined),
      resting: (nodeId) => this.nodeControls.resting(nodeId),
    })
    this.leases = new LeaseManager({ nodes: this.nodes, scheduler: this.scheduler, nodeSession })
    this.tasks = new PlacedTasks({
      nodes: this.nodes,
      functions: this.functions,
      objects: this.objects,
      events: this.events,
      scheduler: this.scheduler,
      nodeSession,
      visible: (owner, id) => this.tenancy.mayTouch(owner, id),
      quotaOf: (tenant) => this.credentials.quotaOf(tenant),
      quarantine: (nodeId, reason) => this.quarantine(nodeId, reason),
    })
    this.actors = new ActorManager(this.tasks, {
      nodes: this.nodes,
      nodeSession,
      incarnationEnded: (actorId) => this.fate.incarnationEnded(actorId),
      addressOf: (s) => this.sessions.addressOf(s),
      sign: (unsigned) => this.leases.sign(unsigned),
      tenantOf: (jobId) => this.jobs.tenantOf(jobId),
    })
    this.tasks.actors = this.actors
    this.transfers = new ObjectTransfers({
      nodes: this.nodes,
      objects: this.objects,
      nodeSession,
      holderSession: (location) => this.sessions.holder(location),
      log: this.log,
    })
    this.objectRequests = new ObjectRequests({
      objects: this.objects,
      transfers: this.transfers,
      tenancy: this.tenancy,
      credentials: this.credentials,
    })
    this.relay = new PeerRelay({
      objects: this.objects,
      leaseOf: (leaseId) => this.leases.get(leaseId) ?? this.actors.lease(leaseId),
      sessionAt: (address) => this.sessions.at(address),
      addressOf: (s) => this.sessions.addressOf(s),
      endScope: (node, scope) => this.objectRequests.endScope(node, scope),
    })
    this.taskRequests = new TaskRequests(this)
    this.fate = new FateSharing(this)
    this.nodeControls = new NodeControls({
      nodes: this.nodes,
      leases: this.leases,
      tasks: this.tasks,
      objects: this.objects,
      scheduler: this.scheduler,
      nodeSession,
      nodeDied: (nodeId, reason) => this.fate.nodeDied(nodeId, reason),
      log: this.log,
      ...(opts.now && { now: opts.now }),
    })
    this.admission = new Admission(this, opts)
    this.state = new StateReader(this)
    this.routes = messageRoutes(this)
    this.objects.onDelete = (id, holders) => {
      for (const n of holders) this.sessions.holder(n)?.send({ type: 'delete-objects', objectIds: [id] })
    }
    this.objects.onCollected = (id) => this.actors.handlesGone(id)
    this.objects.onUnreferencedPending = (id) => this.actors.handlesGone(id)
    this.objects.onOwnerEmpty = (owner) => this.fate.ownerEmpty(owner as Session)
    this.heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? 5000
    if (opts.monitor !== false) {
      const every = Math.min(1000, this.heartbeatTimeoutMs / 2)
      let last = Date.now()
      this.monitor = setInterval(() => {
        // A tick this late means the process could not read its sockets meanwhile: nodes are not blamed for it.
        const now = Date.now()
        const late = now - last - every
        last = now
        if (late > MONITOR_SLACK_MS) this.nodes.noteStall(late)
        this.checkHeartbeats()
      }, every)
      this.monitor.unref?.()
    }
  }

  /** Declares dead every node silent for longer than the heartbeat timeout. */
  checkHeartbeats(): void {
    const timeout = this.heartbeatTimeoutMs
    for (const n of this.nodes.silentSince(timeout)) this.fate.nodeDied(n.nodeId, `missed heartbeats for ${timeout / 1000} s`)
  }

  /** The largest frame this connection may send. */
  frameLimit(s: Session): number {
    const max = this.opts.maxFrameBytes ?? MAX_FRAME_BYTES
    return s.role === 'node' ? max + RELAY_OVERHEAD_BYTES : max
  }

  private closed = false

  close(): void {
    this.closed = true
    if (this.monitor) clearInterval(this.monitor)
    this.nodeControls.close()
  }

  /**
   * Loads what the control store kept from a previous run (jobs, functions, the ticket secret) and reserves this
   * run's job ids.
   */
  async restore(): Promise<void> {
    const store = this.opts.store
    if (!store) return
    await this.jobs.restore()
    await this.functions.restore()
    // Tickets (node and peer ids' proofs) stay valid across a restart: what rejoining nodes show.
    const kept = await store.get<Uint8Array>('config', 'ticket-secret')
    if (kept) this.credentials.useSecret(kept)
    else await store.put('config', 'ticket-secret', this.credentials.ticketSecret)
  }

  /** One validated message from a connection. Errors a client can cause are answered, never thrown out. */
  handle(s: Session, msg: ClientMessage): void {
    try {
      routeMessage(this.routes, s, msg)
    } catch (e) {
      // The client hears what it did wrong, never how the coordinator is built: no stack, no paths (logged here).
      const error = publicError(
        e instanceof ShoalError
          ? e.toWire()
          : { name: 'InternalError', code: 'INTERNAL', message: `the coordinator failed on '${msg.type}'` },
      )
      if (!(e instanceof ShoalError)) this.log(`[coordinator] internal error on ${msg.type}: ${(e as Error).stack}`)
      const reqId = (msg as { reqId?: number }).reqId
      s.send(reqId !== undefined ? { type: 'reply', reqId, ok: false, error } : { type: 'error', error })
    }
  }

  /** A connection closed: see FateSharing.disconnected. */
  disconnected(s: Session): void {
    this.fate.disconnected(s)
  }

  /**
   * A node returned a minority result for a verified task: no more work goes to it (it stays connected and listed,
   * with the reason). Its leases are asked back, so their owners stop pushing to it once their tasks there end.
   */
  private quarantine(nodeId: string, reason: string): void {
    if (!this.nodes.quarantine(nodeId, reason)) return
    this.log(`[coordinator] node ${nodeId.slice(0, 8)} is QUARANTINED: it ${reason}`)
    this.leases.askBackOn(nodeId)
  }

  /**
   * An admin lifts a node's quarantine (a verified task's disagreement can also come from a task whose result depends
   * on the node it ran on: a tenant could write one to get a node quarantined). Returns whether it was quarantined.
   */
  releaseQuarantine(nodeId: string): boolean {
    if (!this.nodes.release(nodeId)) return false
    this.log(`[coordinator] node ${nodeId.slice(0, 8)} is no longer quarantined (an admin lifted it)`)
    this.scheduler.nodesChanged()
    return true
  }

  /** The state API as `viewer` may see it: see StateReader. */
  query(q: StateQuery, viewer: Viewer): unknown {
    return this.state.query(q, viewer)
  }

  taskRow(taskId: string, viewer: Viewer): TaskRow | undefined {
    return this.state.taskRow(taskId, viewer)
  }

  status(viewer: Viewer) {
    return this.state.status(viewer)
  }

  tenantGauges(): Map<string, { jobs: number; pending: number; objects: number }> {
    return this.state.tenantGauges()
  }
}

/** A monitor tick later than this is the coordinator stalling, not timer jitter. */
const MONITOR_SLACK_MS = 250
