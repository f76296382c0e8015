import { createHmac, randomBytes } from 'node:crypto'
import { BoundedMap } from '../sdk/bounded.ts'
import { TaskUnschedulableError, ValidationError } from '../sdk/errors.ts'
import { randomHex } from '../sdk/ids.ts'
import { type ClientMessageOf, type Lease, leaseSigningText } from '../sdk/protocol/index.ts'
import { allocate, quantityProblem, type ResourceUnits, release, toUnits } from '../sdk/resources.ts'
import { type NodeRecord, type NodeTable, takesWork } from './gcs/nodes.ts'
import { infeasibleWarning } from './scheduler/policy.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'

/** An owner's wish for `count` more leases of one shape: waits in the scheduler like a task, placed `count` times. */
export interface LeaseRequest extends Schedulable {
  readonly kind: 'lease'
  readonly owner: Session
  readonly ownerAddress: string
  readonly jobId: string
  readonly shapeId: string
  readonly resources: ResourceUnits
  count: number
  head: { taskId: string; name: string }
}

interface LeaseRecord {
  lease: Lease
  owner: Session
  shapeId: string
  nodeId: string
  /** The task under it waits in get/wait: its resources are lent back to the node meanwhile (as Ray's blocked workers). */
  blocked: boolean
  /** Asked back for this waiting item (a lease request or an actor's creation); it no longer counts as kept. */
  reclaimedFor?: Schedulable
}

/** Most distinct shapes one owner may have waiting at once. */
const MAX_SHAPES_PER_OWNER = 4096
/** Most leases one request may want at once (an owner asks again as it needs more). */
const MAX_COUNT_PER_REQUEST = 1024

/**
 * Worker leases (Ray's lease manager, the GCS/raylet side): owners ask for leases per shape of task; the scheduler
 * places them like tasks; a granted lease is signed with the node's own key so the node can check it when the owner
 * pushes tasks under it, without asking the coordinator. The coordinator sees leases, never the tasks under them.
 */
export class LeaseManager {
  private requests = new Map<Session, Map<string, LeaseRequest>>()
  private leases = new Map<string, LeaseRecord>()
  private byNode = new Map<string, Set<LeaseRecord>>()
  private byOwner = new Map<Session, Set<LeaseRecord>>()
  /** Per owner, how many of its leases are not asked back: its share when requests compete. */
  private kept = new Map<Session, number>()
  /** Leases not yet asked back, oldest first: where a waiting request looks for resources to reclaim. */
  private reclaimable = new Map<string, LeaseRecord>()
  /** Per node, how many of its leases each job holds: a node may speak of a job's tasks only while it runs some. */
  private jobsOnNode = new Map<string, Map<string, number>>()
  private keys = new Map<string, Buffer>()
  /** When a node's last lease of a job ended, by `node:job` (bounded, oldest dropped first). */
  private jobsEnded = new BoundedMap<string, number>(ENDED_REMEMBERED)

  constructor(
    private readonly deps: {
      nodes: NodeTable
      scheduler: Scheduler<Schedulable>
      nodeSession(nodeId: string): Session | undefined
    },
  ) {}

  get count(): number {
    return this.leases.size
  }

  get(leaseId: string): Readonly<LeaseRecord> | undefined {
    return this.leases.get(leaseId)
  }

  /** A new key for a node's leases (sent to it in its welcome; only it and the coordinator know it). */
  keyFor(nodeId: string): string {
    const key = randomBytes(32)
    this.keys.set(nodeId, key)
    return key.toString('hex')
  }

  /** Signs a lease (a worker lease, or an actor lease) with its node's key; undefined if the node has none. */
  sign(unsigned: Omit<Lease, 'sig'>): Lease | undefined {
    const key = this.keys.get(unsigned.nodeId)
    if (!key) return undefined
    return { ...unsigned, sig: createHmac('sha256', key).update(leaseSigningText(unsigned)).digest('hex') }
  }

  /** Whether `nodeId` holds a lease of `jobId` now (it may report events of that job's tasks). */
  holdsJob(nodeId: string, jobId: string): boolean {
    if ((this.jobsOnNode.get(nodeId)?.get(jobId) ?? 0) > 0) return true
    // Its events are batched: those of a lease's last tasks may arrive a moment after the lease went back.
    const ended = this.jobsEnded.get(`${nodeId}:${jobId}`)
    return ended !== undefined && Date.now() - ended < EVENTS_GRACE_MS
  }

  request(owner: Session, ownerAddress: string, msg: ClientMessageOf<'lease-request'>): void {
    for (const [k, q] of Object.entries(msg.resources)) {
      const problem = quantityProblem(k, q)
      if (problem) return this.refuse(owner, msg.shapeId, msg.head.taskId, `task ${msg.head.name} cannot run: ${problem}`)
    }
    let mine = this.requests.get(owner)
    if (!mine) this.requests.set(owner, (mine = new Map()))
    const resources = toUnits(msg.resources)
    const key = JSON.stringify([resources, msg.strategy, msg.preferNode ?? null, !!msg.volunteers])
    const existing = mine.get(msg.shapeId)
    if (existing?.queueKey?.endsWith(key)) {
      existing.count = Math.min(MAX_COUNT_PER_REQUEST, existing.count + msg.count)
      existing.head = msg.head
      return this.deps.scheduler.requestPass()
    }
    if (existing) this.cancel(owner, msg.shapeId)
    if (mine.size >= MAX_SHAPES_PER_OWNER)
      throw new ValidationError(`an owner may wait for leases of at most ${MAX_SHAPES_PER_OWNER} shapes of task at once`)
    const req: LeaseRequest = {
      kind: 'lease',
      owner,
      ownerAddress,
      jobId: owner.jobId as string,
      shapeId: msg.shapeId,
      resources,
      strategy: msg.strategy,
      ...(msg.preferNode && { preferNode: msg.preferNode }),
      ...(msg.volunteers && { volunteers: true }),
      count: msg.count,
      head: msg.head,
      // One queue per owner and shape: owners take turns for scarce resources (see Scheduler.pass).
      queueKey: `${owner.id}:${key}`,
    }
    mine.set(msg.shapeId, req)
    this.deps.scheduler.enqueue(req)
  }

  /** The owner no longer wants the leases of this shape it is waiting for. */
  cancel(owner: Session, shapeId: string): void {
    const req = this.requests.get(owner)?.get(shapeId)
    if (!req) return
    this.requests.get(owner)?.delete(shapeId)
    this.deps.scheduler.remove(req)
  }

  /** The scheduler placed one lease of the request on `node` (its resources are already allocated there). */
  grant(req: LeaseRequest, node: NodeRecord): void {
    const key = this.keys.get(node.nodeId)
    const session = this.deps.nodeSession(node.nodeId)
    if (!key || !session || req.owner.closed) {
      // The node is going (its death not processed yet) or the owner left: no lease; the request still wants it.
      release(req.resources, node.available)
      if (req.owner.closed) return
      if (++req.count === 1) this.deps.scheduler.requeueFront(req)
      return
    }
    if (req.count <= 0) this.requests.get(req.owner)?.delete(req.shapeId) // its last lease: no longer waiting
    const lease = this.sign({
      leaseId: randomHex(16),
      nodeId: node.nodeId,
      owner: req.ownerAddress,
      jobId: req.jobId,
      units: req.resources,
    })
    if (!lease) return
    const rec: LeaseRecord = { lease, owner: req.owner, shapeId: req.shapeId, nodeId: node.nodeId, blocked: false }
    this.leases.set(lease.leaseId, rec)
    this.reclaimable.set(lease.leaseId, rec)
    index(this.byNode, node.nodeId, rec)
    index(this.byOwner, req.owner, rec)
    this.keep(req.owner, 1)
    let jobs = this.jobsOnNode.get(node.nodeId)
    if (!jobs) this.jobsOnNode.set(node.nodeId, (jobs = new Map()))
    jobs.set(req.jobId, (jobs.get(req.jobId) ?? 0) + 1)
    node.runningTasks++
    req.owner.send({ type: 'lease-granted', shapeId: req.shapeId, lease })
  }

  /** The owner is done with these leases: their resources go back, and their nodes forget them. */
  giveBack(owner: Session, leaseIds: readonly string[]): void {
    const ended = new Map<string, string[]>()
    for (const id of leaseIds) {
      const rec = this.leases.get(id)
      if (rec?.owner !== owner) continue
      this.end(rec, true)
      let ids = ended.get(rec.nodeId)
      if (!ids) ended.set(rec.nodeId, (ids = []))
      ids.push(id)
    }
    // Anything still running under a returned lease is a task its owner already gave up (cancelled): it stops.
    for (const [nodeId, ids] of ended) this.deps.nodeSession(nodeId)?.send({ type: 'lease-ended', leaseIds: ids, kill: true })
  }

  /** The node says the task under a lease waits for objects (or stopped waiting): its resources are lent meanwhile. */
  blocked(node: Session, leaseId: string, blocked: boolean): void {
    const rec = this.leases.get(leaseId)
    if (!rec || rec.nodeId !== node.nodeId || rec.blocked === blocked) return
    const n = this.deps.nodes.get(rec.nodeId)
    if (n?.state !== 'ALIVE') return
    rec.blocked = blocked
    // Unblocking may over-commit the node for a moment, as in Ray: the task was already running.
    if (blocked) release(rec.lease.units, n.available)
    else allocate(rec.lease.units, n.available)
    this.deps.scheduler.requestPass()
  }

  /**
   * An item waits for resources held by leases: owners keeping more leases than the waiting owner will have are asked
   * to give some back (each returns a lease once the tasks pushed under it are done). Two busy owners end up splitting
   * the cluster; on one slot they take turns, as Ray's raylet serves lease requests in turn. An actor's creation
   * (owner unset) may ask back any owner's lease. Each lease asked back counts for the item until it ends, so the
   * item asks again if the resources it freed went to someone else.
   */
  waiting(item: Schedulable, owner?: Session): void {
    let want = (item.count ?? 1) - (item.reclaiming ?? 0)
    if (want <= 0) return
    const asked = new Map<Session, string[]>()
    const mine = owner ? (this.kept.get(owner) ?? 0) : 0
    let scanned = 0
    for (const rec of this.reclaimable.values()) {
      if (want <= 0 || ++scanned > 2 * want + 64) break
      if (rec.owner === owner) continue
      if ((this.kept.get(rec.owner) ?? 0) <= mine + (item.reclaiming ?? 0)) continue
      const node = this.deps.nodes.get(rec.nodeId)
      if (!node || !couldServe(item, rec, node)) continue
      rec.reclaimedFor = item
      this.keep(rec.owner, -1)
      this.reclaimable.delete(rec.lease.leaseId)
      let ids = asked.get(rec.owner)
      if (!ids) asked.set(rec.owner, (ids = []))
      ids.push(rec.lease.leaseId)
      want--
      item.reclaiming = (item.reclaiming ?? 0) + 1
    }
    for (const [owner, leaseIds] of asked) owner.send({ type: 'lease-reclaim', leaseIds })
  }

  /** No alive node could ever fit the request: it waits for one (as in Ray), and its owner is told once per shape. */
  infeasible(req: LeaseRequest, yes: boolean): void {
    if (!yes || req.owner.warnedShapes.has(req.shapeId)) return
    req.owner.warnedShapes.add(req.shapeId)
    const message = infeasibleWarning(req.head.name, req.head.taskId, req.resources, this.deps.nodes.alive())
    req.owner.send({ type: 'warning', message, taskIds: [req.head.taskId], shapeId: req.shapeId })
  }

  /** The request can never be placed (hard affinity to a node that is gone or too small). */
  fail(req: LeaseRequest, reason: string): void {
    this.requests.get(req.owner)?.delete(req.shapeId)
    this.refuse(req.owner, req.shapeId, req.head.taskId, reason)
  }

  private refuse(owner: Session, shapeId: string, taskId: string, reason: string): void {
    owner.send({ type: 'lease-failed', shapeId, error: new TaskUnschedulableError(taskId, reason).toWire() })
  }

  /** A node died: its leases are gone; their owners retry what ran under them. */
  onNodeDead(nodeId: string): void {
    const revoked = new Map<Session, string[]>()
    for (const rec of this.byNode.get(nodeId) ?? []) {
      this.end(rec, false)
      let ids = revoked.get(rec.owner)
      if (!ids) revoked.set(rec.owner, (ids = []))
      ids.push(rec.lease.leaseId)
    }
    this.byNode.delete(nodeId)
    this.jobsOnNode.delete(nodeId)
    this.keys.delete(nodeId)
    const reason = this.deps.nodes.get(nodeId)?.deathReason ?? 'it died'
    for (const [owner, leaseIds] of revoked) owner.send({ type: 'lease-revoked', leaseIds, nodeId, reason })
    this.deps.scheduler.requestPass()
  }

  /**
   * The node was quarantined, paused or is leaving: every lease on it is asked back from its owner (returned once what runs under it ends),
   * and no new one is granted there.
   */
  askBackOn(nodeId: string): void {
    const asked = new Map<Session, string[]>()
    for (const rec of this.byNode.get(nodeId) ?? []) {
      this.reclaimable.delete(rec.lease.leaseId)
      let ids = asked.get(rec.owner)
      if (!ids) asked.set(rec.owner, (ids = []))
      ids.push(rec.lease.leaseId)
    }
    for (const [owner, leaseIds] of asked) owner.send({ type: 'lease-reclaim', leaseIds })
  }

  /**
   * The node's donor gave it fewer CPUs: leases on it are asked back, newest first, until what stays fits the new total
   * (each returns once what runs under it ends). Running work is not stopped; it just is not followed by more there.
   */
  askBackBeyondTotal(node: NodeRecord): void {
    let short = -(node.available.CPU ?? 0)
    if (short <= 0) return
    const asked = new Map<Session, string[]>()
    // Those asked back already free their CPUs when they end: they count toward what is missing.
    const onNode = [...(this.byNode.get(node.nodeId) ?? [])]
    for (const rec of onNode) if (!this.reclaimable.has(rec.lease.leaseId) && !rec.blocked) short -= rec.lease.units.CPU ?? 0
    for (const rec of onNode.reverse()) {
      if (short <= 0) break
      if (!this.reclaimable.has(rec.lease.leaseId)) continue
      this.reclaimable.delete(rec.lease.leaseId)
      if (!rec.blocked) short -= rec.lease.units.CPU ?? 0
      let ids = asked.get(rec.owner)
      if (!ids) asked.set(rec.owner, (ids = []))
      ids.push(rec.lease.leaseId)
    }
    for (const [owner, leaseIds] of asked) owner.send({ type: 'lease-reclaim', leaseIds })
  }

  /** How many leases are out on this node now. */
  countOn(nodeId: string): number {
    return this.byNode.get(nodeId)?.size ?? 0
  }

  /** An owner went away: its requests go, and its leases end with what runs under them (fate sharing). */
  ownerGone(owner: Session): void {
    for (const req of this.requests.get(owner)?.values() ?? []) this.deps.scheduler.remove(req)
    this.requests.delete(owner)
    const ids = [...(this.byOwner.get(owner) ?? [])].map((r) => r.lease.leaseId)
    this.giveBack(owner, ids)
    this.byOwner.delete(owner)
  }

  private keep(owner: Session, delta: number): void {
    const n = (this.kept.get(owner) ?? 0) + delta
    if (n > 0) this.kept.set(owner, n)
    else this.kept.delete(owner)
  }

  private rememberEnded(key: string): void {
    this.jobsEnded.delete(key)
    this.jobsEnded.set(key, Date.now())
  }

  private end(rec: LeaseRecord, giveResources: boolean): void {
    const id = rec.lease.leaseId
    this.leases.delete(id)
    this.reclaimable.delete(id)
    this.byNode.get(rec.nodeId)?.delete(rec)
    const mine = this.byOwner.get(rec.owner)
    mine?.delete(rec)
    if (mine?.size === 0) this.byOwner.delete(rec.owner)
    if (!rec.reclaimedFor) this.keep(rec.owner, -1)
    else rec.reclaimedFor.reclaiming = Math.max(0, (rec.reclaimedFor.reclaiming ?? 0) - 1)
    const jobs = this.jobsOnNode.get(rec.nodeId)
    const n = (jobs?.get(rec.lease.jobId) ?? 0) - 1
    if (n > 0) jobs?.set(rec.lease.jobId, n)
    else if (jobs?.delete(rec.lease.jobId)) this.rememberEnded(`${rec.nodeId}:${rec.lease.jobId}`)
    const node = this.deps.nodes.get(rec.nodeId)
    if (node?.state !== 'ALIVE') return
    node.runningTasks = Math.max(0, node.runningTasks - 1)
    if (giveResources && !rec.blocked) release(rec.lease.units, node.available)
    this.deps.scheduler.requestPass()
  }
}

/** How long after its last lease of a job a node may still report that job's task events. */
const EVENTS_GRACE_MS = 5000
const ENDED_REMEMBERED = 10_000

function index<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key)
  if (!set) map.set(key, (set = new Set()))
  set.add(value)
}

/** Whether giving back `rec` would let `req` be placed on its node. */
function couldServe(req: Schedulable, rec: LeaseRecord, node: NodeRecord): boolean {
  if (typeof req.strategy === 'object' && req.strategy.nodeId !== node.nodeId) return false
  if (!takesWork(node) || (node.trust === 'volunteer' && !req.volunteers)) return false
  for (const k in req.resources) {
    const need = req.resources[k] as number
    if (need > (node.total[k] ?? 0)) return false
    if (need > (node.available[k] ?? 0) + (rec.lease.units[k] ?? 0)) return false
  }
  return true
}
