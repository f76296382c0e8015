import {
  type Assignment,
  type ClientMessage,
  type NodeBound,
  type PeerMessageOf,
  parsePeerMessage,
  RELAY_OVERHEAD_BYTES,
  type ServerMessage,
} from '../../sdk/protocol/index.ts'
import { fromUnits, type ResourceUnits, toUnits } from '../../sdk/resources.ts'
import { TaskEventReporter } from '../../sdk/task-event-reporter.ts'
import type { FramedTransport } from '../../sdk/transport/framed.ts'
import { PeerLinks, type Route } from '../../sdk/transport/peer-links.ts'
import type { PeerMesh } from '../../sdk/transport/peer-mesh.ts'
import { batchBytesFor } from '../../sdk/turn-batch.ts'
import { type LeaseCheck, LeaseVerifier } from '../lease-verifier.ts'
import { TenancyCheck } from '../tenancy-check.ts'
import { ActorHost } from './actor-host.ts'
import { LeaseAdmission } from './admission.ts'
import { AssignedRuns } from './assigned-runs.ts'
import { Functions } from './functions.ts'
import { LeaseRunner } from './lease-runner.ts'
import type { NodeActivity, NodeObjects, NodeWorkers } from './ports.ts'
import { systemError } from './pushed.ts'
import { type RunningTask, WorkerRuns } from './worker-runs.ts'

/**
 * The node (Ray's raylet and its leased workers): runs the tasks owners push to it under leases the coordinator
 * signed, answering each owner directly; hosts actors the coordinator places here; carries its workers' control
 * traffic; reports RUNNING and its heartbeat to the coordinator. It routes what comes in to the part that handles
 * it: leased tasks (LeaseRunner), hosted actors (ActorHost), tasks the coordinator placed (AssignedRuns).
 */
export class NodeAgent {
  readonly stats = { running: 0, finished: 0, failed: 0 }
  onActivity: (a: NodeActivity) => void = () => {}
  onClose: (reason: string) => void = () => {}
  /** The peer wire: owners push tasks here over it, and results go back. */
  readonly links: PeerLinks

  private readonly functions = new Functions()
  /** Whether pushed tasks' large arguments are their own tenant's (asked of the coordinator). */
  private readonly tenancy = new TenancyCheck((msg) => this.send(msg))
  private readonly events: TaskEventReporter
  private readonly admission: LeaseAdmission
  private readonly assigned: AssignedRuns
  private readonly leases: LeaseRunner
  private readonly actors: ActorHost
  private heartbeat: ReturnType<typeof setInterval> | undefined
  private stopped = false
  private readonly runs: WorkerRuns
  private isPaused = false
  private leaving: Promise<{ lost: number }> | undefined
  private drained: { resolve(r: { lost: number }): void; reject(e: Error): void } | undefined

  constructor(
    readonly nodeId: string,
    private readonly transport: FramedTransport,
    private readonly workers: NodeWorkers,
    private readonly objects: NodeObjects,
    readonly total: ResourceUnits,
    opts: { heartbeatMs?: number; leaseKey?: string; peers?: PeerMesh; verifier?: LeaseCheck; paused?: boolean } = {},
  ) {
    this.isPaused = opts.paused ?? false
    const heartbeatMs = opts.heartbeatMs ?? 1000
    const send = (msg: ClientMessage) => this.send(msg)
    this.events = new TaskEventReporter(send)
    this.links = new PeerLinks(
      nodeId,
      opts.peers,
      (to, msgs) => this.send({ type: 'peer-send', to, msgs }),
      false,
      () => batchBytesFor(this.transport.maxFrameBytes - RELAY_OVERHEAD_BYTES),
      // After the queued tasks: workers finish tasks in message events of their own, so a busy node sends the results
      // of many (of all its leases for one owner) in one message. Measured: 1.9 → 4 results per send.
      'queued-tasks',
    )
    const toPeer = this.links.send.bind(this.links)
    this.admission = new LeaseAdmission(
      nodeId,
      opts.verifier ?? (opts.leaseKey ? new LeaseVerifier(nodeId, opts.leaseKey) : undefined),
      toPeer,
    )
    const runs = new WorkerRuns(nodeId, workers, objects, this.events, this.tenancy, this.stats, (a) => this.onActivity(a), toPeer)
    this.runs = runs
    this.assigned = new AssignedRuns(runs, send, () => batchBytesFor(this.transport.maxFrameBytes))
    this.leases = new LeaseRunner(runs, this.admission, this.functions, send)
    this.actors = new ActorHost(runs, this.admission, this.assigned, send)
    this.links.onMessage = (from, raw, route) => this.onPeerMessage(from, raw, route)
    workers.onCrash = (w, reason) => {
      this.leases.workerCrashed(w, reason)
      this.assigned.workerCrashed(w, reason)
      this.actors.workerCrashed(w, reason)
    }
    workers.onBatchResults = (w, from, results) => {
      if (!this.actors.onBatchResults(w, from, results)) this.leases.onBatchResults(w, from, results)
    }
    workers.onRelay = (channel, frame) => this.send({ type: 'relay-up', channel, frame })
    workers.onChannelsClosed = (channels) => this.send({ type: 'relay-close', channels })
    transport.onMessage = (m) => this.onMessage(m)
    transport.onClose = (reason) => this.stop(reason)
    // Batches are cut well under the limit; should one message still not fit, it is said, not lost in silence.
    transport.onTooLarge = (m, bytes) =>
      console.error(`[shoal node] a '${m.type}' message of ${bytes} bytes is over the frame limit; not sent`)
    if (heartbeatMs > 0) this.heartbeat = setInterval(() => this.sendHeartbeat(), heartbeatMs)
  }

  get workerCount(): number {
    return this.workers.size
  }

  /** Leases this node serves now (for checks). */
  get leaseIds(): string[] {
    return this.leases.ids
  }

  /** The page joined the peer mesh: owners' links to it carry tasks and results from now on. */
  attachPeers(peers: PeerMesh): void {
    this.links.attach(peers)
  }

  sendHeartbeat(): void {
    this.events.flush()
    this.send({
      type: 'heartbeat',
      running: this.stats.running,
      workers: this.workers.size,
      storeUsed: this.objects.used,
      storeSpilled: this.objects.spilledBytes,
    })
  }

  /** What runs here now and what this node gave so far (the page's live view). */
  get live(): { running: RunningTask[]; cpuMs: number } {
    const now = performance.now()
    let cpuMs = this.runs.cpuMs
    for (const r of this.runs.runningNow.values()) cpuMs += now - r.since
    return { running: [...this.runs.runningNow.values()], cpuMs }
  }

  /** The CPUs this node gives now. */
  get cpus(): number {
    return fromUnits({ CPU: this.total.CPU ?? 0 }).CPU ?? 0
  }

  /** Whether its donor paused it (no new work comes; what runs finishes). */
  get paused(): boolean {
    return this.isPaused
  }

  /**
   * Its donor gives this many CPUs now (a whole number, at least 1): the coordinator takes the new total (work beyond
   * it finishes, nothing new goes past it) and the worker pool follows.
   */
  setCpus(cpus: number): void {
    if (!Number.isInteger(cpus) || cpus < 1) throw new RangeError(`CPUs must be a whole number of at least 1; got ${cpus}`)
    this.total.CPU = toUnits({ CPU: cpus }).CPU as number
    this.workers.resize?.(cpus)
    this.send({ type: 'node-update', cpus })
  }

  /** Paused: what runs here finishes, and the coordinator places nothing new here until resumed. */
  setPaused(paused: boolean): void {
    this.isPaused = paused
    this.send({ type: 'node-update', paused })
  }

  /**
   * Leaves gracefully (Ray's drain-node): no new work; what runs finishes, or is handed back at `deadlineMs`; the
   * objects only this node holds that someone needs are copied to another node first. Resolves once the coordinator
   * says it is drained (with how many objects it could not copy in time), when the node stops.
   */
  leave(deadlineMs: number): Promise<{ lost: number }> {
    this.leaving ??= new Promise((resolve, reject) => {
      this.drained = { resolve, reject }
      this.send({ type: 'node-drain', deadlineMs })
    })
    return this.leaving
  }

  /** Leaves the cluster: workers stop, and owners retry their tasks elsewhere. */
  stop(reason = 'stopped'): void {
    if (this.stopped) return
    this.stopped = true
    if (this.heartbeat) clearInterval(this.heartbeat)
    this.workers.terminateAll()
    this.actors.close()
    this.leases.close()
    this.events.close()
    this.tenancy.closed()
    this.objects.close(`the node left the cluster: ${reason}`)
    if (this.transport.isOpen) this.transport.close()
    this.onActivity({ kind: 'disconnected', text: `disconnected: ${reason}` })
    this.drained?.reject(new Error(`the node was disconnected before it was drained: ${reason}`))
    this.onClose(reason)
  }

  send(msg: ClientMessage): void {
    if (this.transport.isOpen) this.transport.send(msg)
  }

  /**
   * Handles one message from the coordinator. A node is sent only NodeBound messages (DriverBound ones go to drivers
   * only); anything else is ignored.
   */
  onMessage(m: ServerMessage): void {
    const msg = m as NodeBound
    switch (msg.type) {
      case 'welcome':
        if (msg.leaseKey) this.admission.keyFrom(msg.leaseKey)
        return
      case 'assign':
        // Functions are their job's own (docs/trust.md): one job's definition never answers for another job's id.
        for (const t of msg.tasks) {
          const f = msg.functions.find((d) => d.functionId === t.functionId)
          if (f) this.functions.set(t.jobId, f)
        }
        for (const t of msg.tasks) this.accept(t)
        return
      case 'peer-recv':
        this.links.receiveRelayed(msg.from, msg.msgs)
        return
      case 'lease-ended':
        for (const id of msg.leaseIds) this.leases.end(id, msg.kill)
        return
      case 'kill-actor':
        if (this.actors.kill(msg.actorId)) this.onActivity({ kind: 'actor', text: `actor ${msg.actorId.slice(0, 8)} killed` })
        return
      case 'relay-down':
        this.workers.deliver(msg.channel, msg.frame)
        return
      case 'retire-workers':
        this.workers.retire(msg.jobId, msg.channels)
        return
      case 'error':
        console.warn(`[shoal node] coordinator: ${msg.error.message}`)
        return
      case 'object-chunk':
        this.objects.onChunk(msg.objectId, msg.offset, msg.total, msg.data)
        return
      case 'upload-object':
        void this.objects.upload(msg.objectId)
        return
      case 'delete-objects':
        void this.objects.delete(msg.objectIds)
        return
      case 'objects':
        this.objects.onObjects(msg.objects)
        return
      case 'pull-objects':
        this.objects.copyHere?.(msg.objects)
        return
      case 'drained':
        this.onActivity({
          kind: 'disconnected',
          text: `drained${msg.lost ? `: ${msg.lost} object(s) could not be copied in time` : ': every object handed over'}`,
        })
        this.drained?.resolve({ lost: msg.lost })
        this.drained = undefined
        this.stop('left the cluster (drained)')
        return
      case 'reply':
        this.tenancy.onReply(msg.reqId, msg.ok, msg.ok ? msg.value : undefined)
        return
      default:
        msg satisfies never
    }
  }

  /** A leased task started or stopped waiting in get/wait: its lease's resources are lent meanwhile (as in Ray). */
  taskBlocked(taskId: string, blocked: boolean): void {
    this.leases.blocked(taskId, blocked)
  }

  /** What an owner sends over the peer wire: tasks pushed under a lease (leased tasks or actor calls), or a cancel. */
  private onPeerMessage(from: string, raw: unknown, route: Route): void {
    const parsed = parsePeerMessage(raw)
    if ('problem' in parsed) return console.warn(`[shoal node] a peer message from ${from} was refused: ${parsed.problem}`)
    const msg = parsed.msg
    if (msg.type === 'push') msg.lease.actor ? this.actors.push(from, msg, route) : this.leases.push(from, msg, route)
    else if (msg.type === 'cancel') this.onCancel(from, msg)
  }

  private onCancel(from: string, msg: PeerMessageOf<'cancel'>): void {
    if (!this.actors.cancel(from, msg)) this.leases.cancel(from, msg)
  }

  /** A task the coordinator placed here: an actor's creation, or a replica of a verified task. */
  private accept(t: Assignment): void {
    const fn = this.functions.get(t.jobId, t.functionId)
    if (!fn || (t.type !== 'ACTOR_CREATION_TASK' && t.type !== 'NORMAL_TASK'))
      return this.assigned.report(t, {
        ok: false,
        error: systemError('VALIDATION', 'ValidationError', `node has no function ${t.functionId}`),
        userError: false,
      })
    if (t.type === 'NORMAL_TASK') this.assigned.run(t, fn)
    else this.actors.create(t, fn)
  }
}
