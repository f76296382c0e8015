import { ConnectionError, ShoalError, toWireError, ValidationError } from '../sdk/errors.ts'
import type { ObjectId } from '../sdk/ids.ts'
import type { ClientMessage, ClientMessageOf, RTCIceServerLike, StateFilter, StateQuery } from '../sdk/protocol.ts'
import { PROTOCOL_VERSION } from '../sdk/protocol.ts'
import { ActorManager } from './actor-manager.ts'
import { FunctionTable } from './gcs/functions.ts'
import { JobTable } from './gcs/jobs.ts'
import { NodeTable } from './gcs/nodes.ts'
import { ObjectDirectory } from './gcs/object-directory.ts'
import { TaskEvents } from './gcs/task-events.ts'
import { ObjectTransfers } from './object-transfers.ts'
import type { Session } from './session.ts'
import { TaskManager } from './task-manager.ts'

export interface ClusterOptions {
  /** If set, every driver and node must present it. */
  token?: string
  /** A node silent for this long is declared dead. */
  heartbeatTimeoutMs?: number
  iceServers?: RTCIceServerLike[]
  peerjsPath?: string
  log?: (line: string) => void
}

/**
 * The coordinator's cluster state and the rules that change it (Ray's GCS + scheduler). It never runs user code and
 * never decodes user values. Routes hand it validated messages; everything else happens here.
 */
export class Cluster {
  readonly nodes = new NodeTable()
  readonly jobs = new JobTable()
  readonly functions = new FunctionTable()
  readonly objects = new ObjectDirectory()
  readonly events = new TaskEvents()
  readonly tasks: TaskManager
  readonly actors: ActorManager
  readonly transfers: ObjectTransfers
  private nodeSessions = new Map<string, Session>()
  private monitor: ReturnType<typeof setInterval>
  private readonly log: (line: string) => void

  constructor(private readonly opts: ClusterOptions = {}) {
    this.log = opts.log ?? ((l) => console.log(l))
    const nodeSession = (id: string) => this.nodeSessions.get(id)
    this.tasks = new TaskManager({ nodes: this.nodes, functions: this.functions, objects: this.objects, events: this.events, nodeSession })
    this.actors = new ActorManager(this.tasks, { nodes: this.nodes, events: this.events, nodeSession })
    this.tasks.actors = this.actors
    this.transfers = new ObjectTransfers({ nodes: this.nodes, objects: this.objects, nodeSession, log: this.log })
    this.objects.onDelete = (id, nodes) => {
      for (const n of nodes) this.nodeSessions.get(n)?.send({ type: 'delete-objects', objectIds: [id] })
    }
    const timeout = opts.heartbeatTimeoutMs ?? 5000
    this.monitor = setInterval(
      () => {
        for (const n of this.nodes.silentSince(timeout)) this.nodeDied(n.nodeId, `missed heartbeats for ${timeout / 1000} s`)
      },
      Math.min(1000, timeout / 2),
    )
    this.monitor.unref?.()
  }

  close(): void {
    clearInterval(this.monitor)
  }

  /** One validated message from a connection. Errors a client can cause are answered, never thrown out. */
  handle(s: Session, msg: ClientMessage): void {
    try {
      if (msg.type === 'hello') return this.hello(s, msg)
      if (!s.role) throw new ConnectionError('say hello first')
      this.dispatch(s, msg)
    } catch (e) {
      const error = e instanceof ShoalError ? e.toWire() : toWireError(e)
      if (!(e instanceof ShoalError)) this.log(`[coordinator] internal error on ${msg.type}: ${(e as Error).stack}`)
      const reqId = (msg as { reqId?: number }).reqId
      s.send(reqId !== undefined ? { type: 'reply', reqId, ok: false, error } : { type: 'error', error })
    }
  }

  private dispatch(s: Session, msg: Exclude<ClientMessage, { type: 'hello' }>): void {
    switch (msg.type) {
      case 'register-functions':
        for (const f of msg.functions) this.functions.put(f)
        return
      case 'submit':
        this.requireRole(s, 'driver', msg.type)
        for (const t of msg.tasks) this.tasks.submit(s, t)
        return
      case 'put':
        this.requireRole(s, 'driver', msg.type)
        return this.transfers.onPut(s, msg)
      case 'subscribe':
        for (const id of msg.objectIds) this.objects.subscribe(id as ObjectId, s)
        return
      case 'release':
        for (const id of msg.objectIds) this.objects.release(id as ObjectId)
        return
      case 'borrow':
        for (const id of msg.objectIds) {
          if (!this.objects.has(id)) continue
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
        this.tasks.cancel(msg.objectId as ObjectId, msg.force)
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: null })
      case 'state':
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: this.query(msg.query) })
      case 'get-actor':
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: this.actors.lookup(msg.name, msg.namespace) })
      case 'kill-actor':
        this.actors.kill(msg.actorId)
        return s.send({ type: 'reply', reqId: msg.reqId, ok: true, value: null })
      case 'heartbeat':
        this.requireRole(s, 'node', msg.type)
        this.nodes.heartbeat(s.nodeId as string, msg.running, msg.workers, msg.storeUsed, msg.storeSpilled)
        return
      case 'object-chunk':
        this.transfers.onChunk(s, msg)
        return
      case 'put-remote':
        this.requireRole(s, 'driver', msg.type)
        this.transfers.onPutRemote(s, msg)
        return
      case 'fetch-objects':
        this.transfers.fetch(s, msg.objectIds as ObjectId[])
        return
      case 'objects-stored':
        this.requireRole(s, 'node', msg.type)
        this.transfers.onStored(s, msg.objects)
        return
      case 'objects-spilled':
        this.requireRole(s, 'node', msg.type)
        for (const id of msg.objectIds) this.objects.setSpilled(id as ObjectId, s.nodeId as string, msg.spilled)
        if (msg.log) this.log(`[node ${s.nodeId?.slice(0, 8)}] ${msg.log}`)
        return
      case 'upload-failed':
        this.requireRole(s, 'node', msg.type)
        this.transfers.onUploadFailed(s, msg.objectId as ObjectId, msg.reason)
        return
      case 'task-events':
        this.requireRole(s, 'node', msg.type)
        for (const e of msg.events) {
          if (this.tasks.get(e.taskId)?.nodeId !== s.nodeId) continue // stale: from an attempt this node no longer runs
          this.events.state(e.taskId, e.state, {
            attempt: e.attempt,
            nodeId: s.nodeId,
            ...(e.workerId && { workerId: e.workerId }),
            time: e.time,
          })
        }
        return
      case 'task-results':
        this.requireRole(s, 'node', msg.type)
        this.tasks.onResults(s, msg.results)
        return
      case 'task-blocked':
        this.requireRole(s, 'node', msg.type)
        this.tasks.onBlocked(s, msg.taskId, msg.attempt, msg.blocked)
        return
      case 'actor-died':
        this.requireRole(s, 'node', msg.type)
        this.actors.workerDied(msg.actorId, msg.reason)
        return
      default:
        msg satisfies never
    }
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
    if (this.opts.token && msg.token !== this.opts.token) {
      const error = new ConnectionError(
        msg.token ? 'the coordinator refused the token' : 'the coordinator requires a token (connect({ token }))',
      ).toWire()
      s.send({ type: 'reply', reqId: msg.reqId, ok: false, error })
      s.close(4001, error.message)
      return
    }
    const base = {
      type: 'welcome' as const,
      reqId: msg.reqId,
      peerjsPath: this.opts.peerjsPath ?? '/peerjs',
      iceServers: this.opts.iceServers ?? [],
    }
    if (msg.role === 'node') {
      if (!msg.node) throw new ValidationError('a node must describe its resources in hello')
      const rec = this.nodes.add(msg.node)
      s.role = 'node'
      s.nodeId = rec.nodeId
      this.nodeSessions.set(rec.nodeId, s)
      this.log(`[coordinator] node ${rec.nodeId.slice(0, 8)} joined: ${JSON.stringify(rec.total)}${rec.name ? ` (${rec.name})` : ''}`)
      s.send({ ...base, nodeId: rec.nodeId, namespace: 'default' })
      this.tasks.scheduler.nodesChanged()
      this.transfers.onNodeJoined()
      return
    }
    s.role = 'driver'
    if (msg.attachJob) {
      const job = this.jobs.get(msg.attachJob)
      if (job?.state !== 'RUNNING') throw new ConnectionError(`job ${msg.attachJob} is not running`)
      s.jobId = job.jobId
      s.namespace = job.namespace
    } else {
      const job = this.jobs.create(msg.namespace ?? 'default')
      s.jobId = job.jobId
      s.namespace = job.namespace
      s.isJobRoot = true
    }
    s.send({ ...base, jobId: s.jobId, namespace: s.namespace })
  }

  /** A connection closed. A node's close is its death; a job root's close ends the job. */
  disconnected(s: Session): void {
    if (s.closed && !s.borrowed.size) return
    s.closed = true
    // What it borrowed is no longer held by it.
    for (const [id, n] of s.borrowed) for (let i = 0; i < n; i++) this.objects.unpin(id as ObjectId)
    s.borrowed.clear()
    if (s.role === 'node' && s.nodeId) this.nodeDied(s.nodeId, 'its connection closed (tab closed or network lost)')
    if (s.role === 'driver') this.transfers.dropUploads(s)
    if (s.role === 'driver' && s.isJobRoot && s.jobId) this.endJob(s.jobId)
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
    this.tasks.onNodeDead(nodeId)
  }

  private endJob(jobId: string): void {
    this.jobs.finish(jobId)
    this.tasks.onJobEnd(jobId)
    this.actors.onJobEnd(jobId)
    this.objects.releaseJob(jobId)
  }

  /** The state API, shared by the WebSocket and REST. */
  query(q: StateQuery): unknown {
    const limit = q.limit ?? 10_000
    switch (q.resource) {
      case 'tasks':
        return filterRows(this.events.list(), q.filters, limit)
      case 'nodes':
        return filterRows(this.nodes.rows(), q.filters, limit)
      case 'jobs':
        return filterRows(this.jobs.list(), q.filters, limit)
      case 'actors':
        return filterRows(this.actors.rows(), q.filters, limit)
      case 'objects':
        return filterRows(this.objects.rows(), q.filters, limit)
      case 'summary-tasks':
        return this.events.summarize()
      case 'status':
        return this.status()
      default:
        return q.resource satisfies never
    }
  }

  status() {
    const alive = this.nodes.alive()
    const total: Record<string, number> = {}
    const used: Record<string, number> = {}
    for (const n of alive) {
      for (const [k, v] of Object.entries(n.total)) {
        total[k] = (total[k] ?? 0) + v
        used[k] = (used[k] ?? 0) + v - (n.available[k] ?? 0)
      }
    }
    const summary = this.events.summarize()
    return {
      nodes: { alive: alive.length, dead: this.nodes.rows().length - alive.length },
      resources: { total, used },
      jobs: { running: this.jobs.list().filter((j) => j.state === 'RUNNING').length },
      tasks: { pending: this.tasks.pending, queued: this.tasks.scheduler.queued },
      objects: this.objects.size,
      infeasible: summary.infeasible,
    }
  }
}

function filterRows<T extends object>(rows: T[], filters: StateFilter[] | undefined, limit: number): T[] {
  const out: T[] = []
  for (const r of rows) {
    if (filters?.some(([k, op, v]) => (String((r as Record<string, unknown>)[k]) === String(v)) !== (op === '='))) continue
    out.push(r)
    if (out.length >= limit) break
  }
  return out
}
