import { ConnectionError, ObjectStoreFullError, ShoalError, TaskCancelledError, ValidationError } from '../sdk/errors.ts'
import { jobIdOfObject, jobIdOfTask, type ObjectId, type TaskId, taskIdOfObject } from '../sdk/ids.ts'
import type { ClientMessage, ClientMessageOf, RTCIceServerLike, StateQuery, TaskResult } from '../sdk/protocol/index.ts'
import { MAX_FRAME_BYTES, PROTOCOL_VERSION, RELAY_OVERHEAD_BYTES } from '../sdk/protocol/index.ts'
import { fromUnits, type ResourceUnits } from '../sdk/resources.ts'
import type { TaskRow } from '../sdk/state-api.ts'
import { ActorManager } from './actor-manager.ts'
import { Credentials, DEFAULT_TENANT } from './auth.ts'
import { publicError, receiveFrame } from './edge.ts'
import { FunctionTable } from './gcs/functions.ts'
import { JobTable } from './gcs/jobs.ts'
import { NodeTable } from './gcs/nodes.ts'
import { ObjectDirectory } from './gcs/object-directory.ts'
import { MAX_TASK_ROWS, TaskEvents } from './gcs/task-events.ts'
import { LeaseManager, type LeaseRequest } from './lease-manager.ts'
import { ObjectTransfers } from './object-transfers.ts'
import { PeerRelay } from './peer-relay.ts'
import { PlacedTasks, type TaskRecord } from './placed-tasks.ts'
import { SUBMITS_PER_SECOND } from './rate-limit.ts'
import { type Schedulable, Scheduler } from './scheduler/scheduler.ts'
import { Session } from './session.ts'
import { filterRows } from './state-query.ts'
import type { ControlStore } from './store/control-store.ts'
import { isReplica } from './verified-tasks.ts'

export interface ClusterOptions {
  /** Who may connect, as what (issue 9). Default: none configured, everyone is an admin of the default tenant. */
  credentials?: Credentials
  /** Shorthand for `credentials`: one admin token. */
  token?: string
  /** Let nodes without a token join as volunteers (they run only work whose options say `volunteers: true`). */
  volunteers?: boolean
  /** A node silent for this long is declared dead. */
  heartbeatTimeoutMs?: number
  iceServers?: RTCIceServerLike[]
  peerjsPath?: string
  /** Largest frame a driver may send (a node's may be larger by RELAY_OVERHEAD_BYTES, to carry its workers'). */
  maxFrameBytes?: number
  log?: (line: string) => void
  /** The clock heartbeats are judged by (the simulator gives its own). */
  now?: () => number
  /** Check heartbeats on a timer (the simulator calls `checkHeartbeats` itself). */
  monitor?: boolean
  /**
   * Where jobs and functions are kept across restarts (Ray's GCS storage; issue 10). Without one, nothing outlives
   * the process. Call `restore()` before the first connection.
   */
  store?: ControlStore
}

/**
 * The coordinator's cluster state and the rules that change it (Ray's GCS + scheduler). It never runs user code and
 * never decodes user values. Routes hand it validated messages; everything else happens here.
 */
export class Cluster {
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
  private readonly relay: PeerRelay
  private nodeSessions = new Map<string, Session>()
  /** Drivers by their peer id: owners of leases (results find them by it), and pages serving their own large puts. */
  private peerSessions = new Map<string, Session>()
  /** The channels of the workers that host each actor: they end with the actor's incarnation. */
  private actorChannels = new Map<string, Set<Session>>()
  private monitor: ReturnType<typeof setInterval> | undefined
  private readonly log: (line: string) => void
  private readonly heartbeatTimeoutMs: number
  readonly credentials: Credentials
  /** Bytes admitted per tenant this second and not in the directory yet (uploads under way: see checkStored). */
  private admitted = new Map<string, number>()
  private admittedAt = 0

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
    const nodeSession = (id: string) => this.nodeSessions.get(id)
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
    })
    this.leases = new LeaseManager({ nodes: this.nodes, scheduler: this.scheduler, nodeSession })
    this.tasks = new PlacedTasks({
      nodes: this.nodes,
      functions: this.functions,
      objects: this.objects,
      events: this.events,
      scheduler: this.scheduler,
      nodeSession,
      visible: (owner, id) => this.mayTouch(owner, id),
      quotaOf: (tenant) => this.credentials.quotaOf(tenant),
      quarantine: (nodeId, reason) => this.quarantine(nodeId, reason),
    })
    this.actors = new ActorManager(this.tasks, {
      nodes: this.nodes,
      nodeSession,
      // An actor's incarnation ended (killed, died, restarting): its worker's channel ends with it at once, and what
      // that worker owned shares its fate, before any later call can reach what it made.
      incarnationEnded: (actorId) => {
        for (const sub of this.actorChannels.get(actorId) ?? []) this.disconnected(sub)
        this.actorChannels.delete(actorId)
      },
      addressOf: (s) => this.addressOf(s),
      sign: (unsigned) => this.leases.sign(unsigned),
      tenantOf: (jobId) => this.jobs.tenantOf(jobId),
    })
    this.tasks.actors = this.actors
    this.relay = new PeerRelay({
      objects: this.objects,
      leaseOf: (leaseId) => this.leases.get(leaseId) ?? this.actors.lease(leaseId),
      sessionAt: (address) => this.sessionAt(address),
      addressOf: (s) => this.addressOf(s),
      endScope: (node, scope) => this.endScope(node, scope),
    })
    this.transfers = new ObjectTransfers({
      nodes: this.nodes,
      objects: this.objects,
      nodeSession,
      holderSession: (location) => this.nodeSessions.get(location) ?? this.peerSessions.get(location),
      log: this.log,
    })
    this.objects.onDelete = (id, holders) => {
      for (const n of holders) (this.nodeSessions.get(n) ?? this.peerSessions.get(n))?.send({ type: 'delete-objects', objectIds: [id] })
    }
    this.objects.onCollected = (id) => this.actors.handlesGone(id)
    this.objects.onUnreferencedPending = (id) => this.actors.handlesGone(id)
    this.objects.onOwnerEmpty = (owner) => this.ownerEmpty(owner as Session)
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
    for (const n of this.nodes.silentSince(timeout)) this.nodeDied(n.nodeId, `missed heartbeats for ${timeout / 1000} s`)
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
      if (msg.type === 'hello') return this.hello(s, msg)
      if (!s.role) throw new ConnectionError('say hello first')
      this.dispatch(s, msg)
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

  private dispatch(s: Session, msg: Exclude<ClientMessage, { type: 'hello' }>): void {
    switch (msg.type) {
      case 'register-functions':
        this.requireRole(s, 'driver', msg.type)
        for (const f of msg.functions) this.functions.put(s.jobId as string, f)
        return
      case 'submit': {
        this.requireRole(s, 'driver', msg.type)
        // A submit costs the coordinator per task: a connection gets so many per second (then its tasks fail, clearly).
        if (!s.submitRate.take(msg.tasks.length)) {
          const why = `over the rate limit of ${SUBMITS_PER_SECOND} task submissions per second per connection; slow down`
          for (const t of msg.tasks) this.tasks.reject(s, t, why, () => {})
          throw new ValidationError(why)
        }
        let unnamed = 0
        let first = ''
        for (const t of msg.tasks)
          this.tasks.submit(s, t, (why) => {
            if (!unnamed++) first = why
          })
        // One error for the specs that did not even name their task, however many there were.
        if (unnamed) throw new ValidationError(`${unnamed} task spec(s) refused; the first: ${first}`)
        return
      }
      case 'publish':
        this.requireRole(s, 'driver', msg.type)
        return this.publish(s, msg.objects)
      case 'lease-request': {
        this.requireRole(s, 'driver', msg.type)
        const address = this.addressOf(s)
        if (!address) throw new ValidationError('a driver must say its peerId in hello to hold leases')
        return this.leases.request(s, address, msg)
      }
      case 'lease-cancel':
        return this.leases.cancel(s, msg.shapeId)
      case 'lease-return':
        return this.leases.giveBack(s, msg.leaseIds)
      case 'lease-blocked':
        this.requireRole(s, 'node', msg.type)
        return this.leases.blocked(s, msg.leaseId, msg.blocked)
      case 'peer-send':
        return this.relay.send(s, msg)
      case 'actor-lease-request':
        this.requireRole(s, 'driver', msg.type)
        // Another tenant's actor is answered as no actor at all.
        return this.actors.requestLease(s, msg.actorId, this.sees(s, this.actors.jobOf(msg.actorId)))
      case 'put':
        this.requireRole(s, 'driver', msg.type)
        this.checkRefs(s, msg.nestedRefs)
        this.checkStored(s, msg.data.byteLength)
        return this.transfers.onPut(s, msg)
      case 'subscribe':
        // Another tenant's object is answered as an unknown one: the same reply, whether or not it exists.
        for (const id of msg.objectIds) this.objects.subscribe(id as ObjectId, s, !this.mayTouch(s, id))
        return
      case 'release':
        for (const id of msg.objectIds) if (this.mayTouch(s, id)) this.objects.release(id as ObjectId, s)
        return
      case 'free': {
        this.requireRole(s, 'driver', msg.type)
        const foreign = msg.objectIds.find((id) => !this.mayTouch(s, id))
        if (foreign) throw new ValidationError(`free: ObjectRef(${foreign}) is not one of this tenant's objects; nothing was freed`)
        for (const id of msg.objectIds) this.objects.free(id as ObjectId)
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: null })
      }
      case 'borrow':
        for (const id of msg.objectIds) {
          if (!this.mayTouch(s, id) || !this.objects.has(id)) continue
          this.objects.pin(id as ObjectId)
          s.borrowed.set(id, (s.borrowed.get(id) ?? 0) + 1)
        }
        return
      case 'unborrow':
        for (const id of msg.objectIds) {
          const n = s.borrowed.get(id)
          if (!n) continue
          if (n === 1) s.borrowed.delete(id)
          else s.borrowed.set(id, n - 1)
          this.objects.unpin(id as ObjectId)
        }
        return
      case 'cancel':
        this.cancel(s, msg.objectId as ObjectId, msg.force)
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: null })
      case 'state':
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: this.query(msg.query, s) })
      case 'get-actor': {
        const found: { handleId?: string } = this.actors.lookup(s.tenant, msg.name, msg.namespace)
        // A detached actor outlives its handles: the object they were counted through may be gone.
        if (found.handleId && !this.objects.has(found.handleId)) delete found.handleId
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: found })
      }
      case 'kill-actor':
        if (!this.sees(s, this.actors.jobOf(msg.actorId))) throw new ValidationError(`no actor ${msg.actorId} exists on this coordinator`)
        this.actors.kill(msg.actorId, msg.noRestart)
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: null })
      case 'heartbeat':
        this.requireRole(s, 'node', msg.type)
        this.nodes.heartbeat(s.nodeId as string, msg.running, msg.workers, msg.storeUsed, msg.storeSpilled)
        return
      case 'object-chunk':
        this.checkRefs(s, msg.nestedRefs)
        if (s.role === 'driver' && msg.offset === 0) this.checkStored(s, msg.total)
        this.transfers.onChunk(s, msg)
        return
      case 'put-remote':
        this.requireRole(s, 'driver', msg.type)
        if (msg.peerId !== s.peerId) throw new ValidationError("put-remote must name this connection's own peerId (from hello)")
        this.checkRefs(s, msg.nestedRefs)
        this.checkStored(s, msg.size)
        this.transfers.onPutRemote(s, msg)
        return
      case 'fetch-objects': {
        const mine: ObjectId[] = []
        for (const id of msg.objectIds) {
          if (this.mayTouch(s, id)) mine.push(id as ObjectId)
          else this.objects.subscribe(id as ObjectId, s, true) // answered as unknown
        }
        this.transfers.fetch(s, mine)
        return
      }
      case 'objects-stored':
        this.requireRole(s, 'node', msg.type)
        this.transfers.onStored(s, msg.objects)
        return
      case 'objects-spilled':
        this.requireRole(s, 'node', msg.type)
        for (const id of msg.objectIds) this.objects.setSpilled(id as ObjectId, s.nodeId as string, msg.spilled)
        if (msg.log) this.log(`[node ${s.nodeId?.slice(0, 8)}] ${msg.log}`)
        return
      case 'may-use': {
        this.requireRole(s, 'node', msg.type)
        // The jobs the task's job may see, by the one rule of tenancy (as a driver of its tenant would).
        const tenant = this.jobs.tenantOf(msg.jobId)
        const viewer = tenant === undefined ? undefined : { admin: false, tenant }
        const same = viewer ? msg.objectJobIds.filter((j) => this.sees(viewer, j)) : []
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: same })
      }
      case 'upload-failed':
        this.transfers.onUploadFailed(s, msg.objectId as ObjectId, msg.reason)
        return
      case 'task-events':
        if (msg.dropped) this.events.droppedAtSource += msg.dropped
        return this.taskEvents(s, msg.events)
      case 'task-results':
        this.requireRole(s, 'node', msg.type)
        this.tasks.onResults(s, msg.results)
        // What the tasks' workers let go at their end goes only now, after their results took what they contain.
        for (const r of msg.results) if (r.scope) this.endScope(s, r.scope)
        return
      case 'actor-died':
        this.requireRole(s, 'node', msg.type)
        this.actors.workerDied(msg.actorId, s.nodeId as string, msg.attempt, msg.reason)
        return
      case 'relay-up':
        this.requireRole(s, 'node', msg.type)
        return this.relayUp(s, msg.channel, msg.frame)
      case 'relay-close':
        this.requireRole(s, 'node', msg.type)
        for (const c of msg.channels) {
          const sub = s.relays.get(c)
          if (sub) this.disconnected(sub)
        }
        return
      default:
        msg satisfies never
    }
  }

  /**
   * Whether `s` may see and touch an object (by its id's job): an admin, a node (it stores and serves what the
   * coordinator places), or a driver of the object's tenant. Refs work across a tenant's jobs, as in Ray.
   */
  private mayTouch(s: Session, objectId: string): boolean {
    return s.role === 'node' || this.sees(s, jobIdOfObject(objectId))
  }

  /**
   * A put of `bytes` must fit the tenant's quota of stored bytes: what its objects in the directory take (kept there
   * as they change), plus the puts admitted this second that may still be uploading.
   */
  private checkStored(s: Session, bytes: number): void {
    const quota = this.credentials.quotaOf(s.tenant).maxStoredBytes
    // What the directory holds, plus what was admitted this second: an upload counts there only once it is done,
    // and many started at once must not each pass against the same count.
    const now = Date.now()
    if (now - this.admittedAt > 1000) {
      this.admittedAt = now
      this.admitted.clear()
    }
    const admitted = this.admitted.get(s.tenant) ?? 0
    const used = this.objects.storedBy(s.tenant) + admitted
    if (used + bytes > quota)
      throw new ObjectStoreFullError(
        `put of ${bytes} bytes refused: the tenant's quota of ${quota} stored bytes would be exceeded (${used} in use; free or drop refs first)`,
      )
    this.admitted.set(s.tenant, admitted + bytes)
  }

  /** Refs a value holds must be ones this connection may see: another tenant's are unknown here. */
  private checkRefs(s: Session, ids: readonly string[] | undefined): void {
    for (const id of ids ?? [])
      if (!this.mayTouch(s, id)) throw new ValidationError(`the value holds ObjectRef(${id}), which this coordinator does not know`)
  }

  /**
   * The one rule of tenancy: whether `viewer` (a driver's connection, or a reader of the state API) may see and touch
   * the work of `jobId` — its own tenant's; an admin's, anyone's.
   */
  private sees(viewer: Viewer, jobId: string | undefined): boolean {
    if (jobId === undefined) return false
    return viewer.admin || this.jobs.tenantOf(jobId) === viewer.tenant
  }

  /** The filter of rows by job `viewer` may see; undefined when it sees them all. */
  private keepFor(viewer: Viewer): ((jobId: string) => boolean) | undefined {
    return viewer.admin ? undefined : (jobId) => this.sees(viewer, jobId)
  }

  private requireRole(s: Session, role: 'driver' | 'node', what: string): void {
    if (s.role !== role) throw new ValidationError(`'${what}' is only for ${role}s`)
  }

  private hello(s: Session, msg: ClientMessageOf<'hello'>): void {
    if (s.role) throw new ValidationError('hello was already received on this connection')
    if (msg.protocol !== PROTOCOL_VERSION)
      throw new ConnectionError(
        `protocol version ${msg.protocol} is not supported (the coordinator speaks ${PROTOCOL_VERSION}); update the SDK or node page`,
      )
    // A worker's channel is vouched for by its node, and only to join a job that node runs work of (below); every
    // socket shows a token, unless it volunteers a node.
    if (s.carrier && (msg.role !== 'driver' || !msg.attachJob))
      throw new ConnectionError("a node's worker channel may only join a job it runs work of (role 'driver' with attachJob)")
    if (!s.carrier && !this.admit(s, msg)) return
    const base = {
      type: 'welcome' as const,
      reqId: msg.reqId,
      peerjsPath: this.opts.peerjsPath ?? '/peerjs',
      iceServers: this.opts.iceServers ?? [],
      maxFrameBytes: this.opts.maxFrameBytes ?? MAX_FRAME_BYTES,
    }
    if (msg.role === 'node') {
      if (!msg.node) throw new ValidationError('a node must describe its resources in hello')
      const rec = this.nodes.add(msg.node, s.trust ?? 'trusted')
      s.role = 'node'
      s.nodeId = rec.nodeId
      this.nodeSessions.set(rec.nodeId, s)
      this.log(
        `[coordinator] ${s.trust === 'volunteer' ? 'volunteer ' : ''}node ${rec.nodeId.slice(0, 8)} joined: ${JSON.stringify(fromUnits(rec.total))}${rec.name ? ` (${rec.name})` : ''}`,
      )
      const peerjsKey = this.credentials.ticketFor(rec.nodeId)
      s.send({ ...base, nodeId: rec.nodeId, namespace: '', leaseKey: this.leases.keyFor(rec.nodeId), peerjsKey })
      this.scheduler.nodesChanged()
      this.transfers.onNodeJoined()
      return
    }
    if (msg.namespace === '') throw new ValidationError('namespace must not be empty (leave it out for an anonymous namespace of this job)')
    if (msg.attachJob) {
      // Only a node's worker (a task of that job, on its relay channel) joins a job; a driver starts its own.
      if (!s.carrier) throw new ValidationError('only a task running on a node can join an existing job')
      // A job that ended may still have detached actors working for it: their workers may join it.
      const job = this.jobs.get(msg.attachJob)
      if (!job) throw new ConnectionError(`job ${msg.attachJob} does not exist`)
      // A node speaks for the jobs it runs work of, and no other: a volunteer cannot act as any job it likes.
      if (!this.runsJob(s.carrier.node, job.jobId)) throw new ConnectionError(`this node runs no task of job ${msg.attachJob}`)
      s.role = 'driver'
      s.tenant = job.tenant
      s.jobId = job.jobId
      s.namespace = job.namespace
      if (msg.actorId) {
        s.actorId = msg.actorId
        let set = this.actorChannels.get(msg.actorId)
        if (!set) this.actorChannels.set(msg.actorId, (set = new Set()))
        set.add(s)
      }
    } else {
      // A job that names no namespace gets an anonymous one of its own, as in Ray.
      const job = this.jobs.create(msg.namespace, s.tenant)
      s.role = 'driver'
      s.jobId = job.jobId
      s.namespace = job.namespace
      s.isJobRoot = true
    }
    if (msg.peerId && !s.carrier) {
      if (this.peerSessions.has(msg.peerId)) throw new ValidationError('that peerId is taken by another connection')
      s.peerId = msg.peerId
      this.peerSessions.set(msg.peerId, s)
    }
    s.send({ ...base, jobId: s.jobId, namespace: s.namespace, ...(s.peerId && { peerjsKey: this.credentials.ticketFor(s.peerId) }) })
  }

  /**
   * Checks a socket's token against the role it says hello as. Refused: one reply with the reason, then close 4001.
   * A node without a token may join as a volunteer where the coordinator allows them.
   */
  private admit(s: Session, msg: ClientMessageOf<'hello'>): boolean {
    const who = this.credentials.authenticate(msg.token)
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
      this.tasks.runsJobOn(nodeId, jobId) ||
      this.leases.holdsJob(nodeId, jobId) ||
      this.actors.callsOnNode(nodeId, jobId) ||
      this.actors.hostsJobOn(nodeId, jobId)
    )
  }

  /**
   * A connection closed. A node's close is its death (and its workers' channels close with it); a job root's close
   * ends the job; any driver's close (a worker's channel too) lets go of every object it owned or borrowed.
   */
  disconnected(s: Session): void {
    if (s.closed) return
    s.closed = true
    for (const sub of s.relays.values()) this.disconnected(sub)
    s.relays.clear()
    if (s.carrier) {
      s.carrier.node.relays.delete(s.carrier.channel)
      s.carrier.node.endedRelays.add(s.carrier.channel)
    }
    if (s.actorId) this.actorChannels.get(s.actorId)?.delete(s)
    // What it borrowed is no longer held by it.
    for (const [id, n] of s.borrowed) for (let i = 0; i < n; i++) this.objects.unpin(id as ObjectId)
    s.borrowed.clear()
    if (s.role === 'node' && s.nodeId) this.nodeDied(s.nodeId, 'its connection closed (tab closed or network lost)')
    if (s.role === 'driver') {
      // Fate sharing, as Ray's owners: what this connection submitted and created ends with it (a job's driver, or
      // the worker of a task that submitted tasks and made actors); then it holds nothing any more.
      const why = s.isJobRoot ? 'cancelled because its job ended' : 'cancelled because the task that submitted it ended with its worker'
      this.tasks.ownerGone(s)
      this.leases.ownerGone(s)
      this.actors.callerGone(s)
      this.events.ownerGone(s, (taskId) => new TaskCancelledError(taskId, why).toWire())
      this.actors.ownerGone(
        s,
        s.isJobRoot ? 'its job ended (the driver disconnected)' : 'its owner (the worker of the task that made it) died',
      )
      this.transfers.dropUploads(s)
      if (s.peerId) {
        this.peerSessions.delete(s.peerId)
        this.transfers.onHolderGone(s.peerId)
      }
      this.objects.ownerDied(s, s.isJobRoot ? `its driver (job ${s.jobId})` : `the worker that made it (job ${s.jobId})`)
      if (s.isJobRoot && s.jobId) {
        this.events.jobEnded(s.jobId, (taskId) => new TaskCancelledError(taskId, why).toWire())
        this.endJob(s.jobId)
      }
    }
  }

  /**
   * A frame from one of a node's workers: it goes through the same edge checks as a socket's, on a channel session
   * of its own (created by the frame that says hello), so the worker's messages are ordered with the node's.
   */
  private relayUp(node: Session, channel: string, frame: Uint8Array): void {
    if (node.endedRelays.has(channel)) return // a late frame of a worker whose channel was ended
    let sub = node.relays.get(channel)
    if (!sub) {
      if (node.relays.size >= MAX_RELAY_CHANNELS)
        throw new ValidationError(`a node may carry at most ${MAX_RELAY_CHANNELS} worker channels`)
      sub = new Session(
        (bytes) => node.send({ type: 'relay-down', channel, frame: bytes }),
        () => this.disconnected(sub as Session),
      )
      sub.carrier = { node, channel }
      node.relays.set(channel, sub)
    }
    receiveFrame(this, sub, frame, this.opts.maxFrameBytes ?? MAX_FRAME_BYTES)
  }

  /** A task's worker let go of what it made during the task (carried in the task's result, see TaskResult.scope). */
  private endScope(node: Session, scope: NonNullable<TaskResult['scope']>): void {
    const sub = node.relays.get(scope.channel)
    if (!sub) return
    for (const id of scope.release) this.objects.release(id as ObjectId, sub)
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

  private nodeDied(nodeId: string, reason: string): void {
    if (!this.nodes.markDead(nodeId, reason)) return
    this.log(`[coordinator] node ${nodeId.slice(0, 8)} is DEAD: ${reason}`)
    const s = this.nodeSessions.get(nodeId)
    this.nodeSessions.delete(nodeId)
    if (s && !s.closed) s.close(4002, `declared dead: ${reason}`)
    const lost = this.objects.removeNode(nodeId)
    if (lost.length) this.log(`[coordinator] ${lost.length} object(s) lost with node ${nodeId.slice(0, 8)}`)
    this.transfers.onNodeDead(nodeId)
    this.leases.onNodeDead(nodeId)
    this.tasks.onNodeDead(nodeId)
  }

  /**
   * The job's driver left. Its own tasks, actors and objects went with it (above); the nodes retire the job's idle
   * workers, whose channels then close and take what they owned too. Detached actors, and what they own, live on.
   */
  private endJob(jobId: string): void {
    this.jobs.finish(jobId)
    if (!this.actors.hasLiveDetached(jobId)) this.functions.forgetStored(jobId)
    for (const n of this.nodeSessions.values()) {
      const idle = [...n.relays].filter(([, sub]) => sub.jobId === jobId && !this.objects.owns(sub)).map(([c]) => c)
      n.send({ type: 'retire-workers', jobId, channels: idle })
    }
  }

  /** A worker of an ended job that owned things owns nothing any more: it can go now. */
  private ownerEmpty(owner: Session): void {
    const carrier = owner.carrier
    if (!carrier || this.jobs.get(owner.jobId ?? '')?.state === 'RUNNING') return
    carrier.node.send({ type: 'retire-workers', channels: [carrier.channel] })
  }

  /** The session at a peer address: a node (its id), a driver (its `d-…` id), or a task's connection (`node/worker/job`). */
  private sessionAt(address: string): Session | undefined {
    if (address.startsWith('d-')) return this.peerSessions.get(address)
    if (address.length === 56) return this.nodeSessions.get(address)
    const slash = address.indexOf('/')
    return this.nodeSessions.get(address.slice(0, slash))?.relays.get(address.slice(slash + 1))
  }

  private addressOf(s: Session): string | undefined {
    if (s.role === 'node') return s.nodeId
    if (s.carrier) return `${s.carrier.node.nodeId}/${s.carrier.channel}`
    return s.peerId
  }

  /**
   * An owner's objects that others can now reach (see the `publish` message): pending ones are entered as such, and
   * get their value or error when the owner publishes it. Only the owner's own job's objects.
   */
  private publish(s: Session, objects: ClientMessageOf<'publish'>['objects']): void {
    for (const o of objects) {
      const id = o.objectId as ObjectId
      if (jobIdOfTask(taskIdOfObject(id)) !== s.jobId) throw new ValidationError(`object ${id} is not of this job`)
      const e = this.objects.read(id)
      const result = o.data ? { data: o.data } : o.error ? { error: o.error } : undefined
      if (!e) {
        if (result) this.objects.put(id, s.jobId as string, s, result)
        else this.objects.create(id, s.jobId as string, s)
      } else if (e.owner === s && result) this.objects.resolve(id, result, false)
    }
  }

  /**
   * Task events: an owner reports the tasks it submitted (of its own job); a node reports RUNNING for the tasks it runs
   * — those the coordinator placed on it, or those of a job it holds a lease of now.
   */
  private taskEvents(s: Session, events: ClientMessageOf<'task-events'>['events']): void {
    if (s.role === 'driver') {
      const jobId = s.jobId as string
      const mine = events.filter((e) => jobIdOfTask(e.taskId as TaskId) === jobId)
      return this.events.report(mine, jobId, s)
    }
    for (const e of events) {
      const rec = this.tasks.get(e.taskId)
      if (rec) {
        if (rec.nodeId !== s.nodeId || rec.attempt !== e.attempt) continue // stale: an attempt this node no longer runs
        const at = { attempt: e.attempt, nodeId: s.nodeId, time: e.time, ...(e.workerId && { workerId: e.workerId }) }
        this.events.state(e.taskId, e.state, at)
        continue
      }
      const jobId = jobIdOfTask(e.taskId as TaskId)
      // What a node may say of others' tasks: that it runs them (or, for an actor's call, that it waits its turn).
      const nodeState = e.state === 'RUNNING' || e.state === 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY'
      const runsJob = this.leases.holdsJob(s.nodeId as string, jobId) || this.actors.callsOnNode(s.nodeId as string, jobId)
      if (!nodeState || !runsJob) continue
      this.events.report([{ ...e, nodeId: s.nodeId }], jobId, undefined, this.jobs.get(jobId)?.state === 'RUNNING')
    }
  }

  /**
   * `cancel(ref)`: a task the coordinator placed (an actor's creation) is not cancelled but killed; any other is its
   * owner's to cancel, so the request goes to the owner. Only tasks of the caller's own job.
   */
  private cancel(s: Session, objectId: ObjectId, force: boolean): void {
    const taskId = taskIdOfObject(objectId)
    if (!this.sees(s, jobIdOfTask(taskId)))
      throw new ValidationError(`cancel: ObjectRef(${objectId}) is not one of this tenant's tasks; nothing was cancelled`)
    const placed = this.tasks.get(taskId)
    if (placed) return this.tasks.cancel(placed)
    // Its owner: the one that reported it, or (if its report is still on the way) the owner of its published return.
    const owner = (this.events.ownerOf(taskId) ?? this.objects.read(objectId)?.owner) as Session | undefined
    if (owner && owner !== s && !owner.closed) owner.send({ type: 'cancel-owned', taskId, force })
  }

  /**
   * The state API, shared by the WebSocket and REST, as `viewer` may see it: an admin sees everything; a driver its
   * tenant's jobs, tasks, actors and objects (and every node: they serve all tenants).
   */
  query(q: StateQuery, viewer: Viewer): unknown {
    const limit = q.limit ?? 10_000
    const keep = this.keepFor(viewer)
    const mine = <R>(rows: R[], jobOf: (r: R) => string) => (keep ? rows.filter((r) => keep(jobOf(r))) : rows)
    switch (q.resource) {
      case 'tasks':
        return filterRows(
          'tasks',
          mine(this.events.list(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'nodes':
        return filterRows('nodes', this.nodes.rows(), q.filters, limit)
      case 'jobs':
        return filterRows(
          'jobs',
          mine(this.jobs.list(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'actors':
        return filterRows(
          'actors',
          mine(this.actors.rows(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'objects':
        return filterRows(
          'objects',
          mine(this.objects.rows(), (r) => jobIdOfObject(r.objectId)),
          q.filters,
          limit,
        )
      case 'summary-tasks':
        return this.events.summarize(keep)
      case 'status':
        return this.status(viewer)
      default:
        return q.resource satisfies never
    }
  }

  /** The task row of `taskId`, if `viewer` may see it. */
  taskRow(taskId: string, viewer: Viewer): TaskRow | undefined {
    const row = this.events.get(taskId)
    return row && this.sees(viewer, row.jobId) ? row : undefined
  }

  status(viewer: Viewer) {
    const alive = this.nodes.alive()
    const total: ResourceUnits = {}
    const used: ResourceUnits = {}
    for (const n of alive) {
      for (const [k, v] of Object.entries(n.total)) {
        total[k] = (total[k] ?? 0) + v
        used[k] = (used[k] ?? 0) + v - (n.available[k] ?? 0)
      }
    }
    const keep = this.keepFor(viewer)
    const summary = this.events.summarize(keep)
    const jobs = this.jobs.list().filter((j) => j.state === 'RUNNING' && (!keep || keep(j.jobId)))
    return {
      nodes: { alive: alive.length, dead: this.nodes.rows().length - alive.length },
      resources: { total: fromUnits(total), used: fromUnits(used) },
      jobs: { running: jobs.length },
      tasks: keep
        ? { pending: countWhere(this.events.liveJobs(), keep) }
        : { pending: this.events.live, queued: this.scheduler.queued, leases: this.leases.count },
      objects: keep ? countWhere(this.objects.ids(), (id) => keep(jobIdOfObject(id))) : this.objects.size,
      infeasible: summary.infeasible,
    }
  }

  /** Per tenant: jobs running, tasks not finished, objects (the metrics' tenant labels). */
  tenantGauges(): Map<string, { jobs: number; pending: number; objects: number }> {
    const out = new Map<string, { jobs: number; pending: number; objects: number }>()
    const of = (jobId: string) => {
      const t = this.jobs.tenantOf(jobId) ?? '?'
      let g = out.get(t)
      if (!g) out.set(t, (g = { jobs: 0, pending: 0, objects: 0 }))
      return g
    }
    for (const j of this.jobs.list()) if (j.state === 'RUNNING') of(j.jobId).jobs++
    for (const jobId of this.events.liveJobs()) of(jobId).pending++
    for (const id of this.objects.ids()) of(jobIdOfObject(id)).objects++
    return out
  }
}

function countWhere<T>(items: Iterable<T>, pred: (x: T) => boolean): number {
  let n = 0
  for (const x of items) if (pred(x)) n++
  return n
}

/** Who reads the state API: an admin, or a driver of one tenant. */
export interface Viewer {
  admin: boolean
  tenant: string
}

/** A monitor tick later than this is the coordinator stalling, not timer jitter. */
const MONITOR_SLACK_MS = 250

/** How many worker channels one node may carry (a worker per CPU, and per job it ran). */
const MAX_RELAY_CHANNELS = 4096
