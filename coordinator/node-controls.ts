import type { ObjectId } from '../sdk/ids.ts'
import type { ClientMessageOf } from '../sdk/protocol/index.ts'
import { toUnits } from '../sdk/resources.ts'
import type { NodeRecord, NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { PlacedTasks } from './placed-tasks.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Session } from './session.ts'

export interface NodeControlsDeps {
  nodes: NodeTable
  leases: Pick<LeaseManager, 'askBackOn' | 'askBackBeyondTotal' | 'countOn'>
  tasks: Pick<PlacedTasks, 'countOn'>
  objects: Pick<ObjectDirectory, 'onlyOn'>
  scheduler: Pick<Scheduler<Schedulable>, 'nodesChanged'>
  nodeSession(nodeId: string): Session | undefined
  /** The node is gone (as on any node's death: what still runs there is retried elsewhere by its owners). */
  nodeDied(nodeId: string, reason: string): void
  log(line: string): void
  now?: () => number
}

/** How often a drain looks whether its node's work is done and its objects copied. */
const DRAIN_TICK_MS = 100
/** Copying a leaving node's objects may take at least this long, even past a short (or zero) deadline. */
const COPY_MIN_MS = 60_000
/** A copy not reported within this long is asked of another node (the first may have died or failed). */
const COPY_RETRY_MS = 20_000

interface Drain {
  nodeId: string
  /** When work still running there is handed back (the node goes and its owners retry it). */
  deadline: number
  /** When copying objects began (once the work was done, or at the deadline). */
  copyStart?: number
  /** Objects being copied: to which node, since when. */
  copying: Map<ObjectId, { to: string; since: number }>
  timer: ReturnType<typeof setInterval>
}

/**
 * What a node's donor decides on the /node page (its CPUs, pause, leave), applied to the node's own record only: the
 * session says which node, never the message. Leaving is Ray's drain-node: no new work is placed there and leases on it
 * are asked back; once what runs there ended (or at the deadline), every object only it holds is copied to another
 * node (the coordinator has that node pull it); then the node is told `drained` and goes, with nothing lost.
 */
export class NodeControls {
  private drains = new Map<string, Drain>()
  private readonly now: () => number

  constructor(private readonly deps: NodeControlsDeps) {
    this.now = deps.now ?? Date.now
  }

  update(s: Session, msg: ClientMessageOf<'node-update'>): void {
    const { nodes, leases, scheduler, log } = this.deps
    const node = nodes.get(s.nodeId as string)
    if (node?.state !== 'ALIVE') return
    const name = node.nodeId.slice(0, 8)
    if (msg.cpus !== undefined) {
      const delta = nodes.setCpu(node.nodeId, toUnits({ CPU: msg.cpus }).CPU as number)
      if (delta) {
        log(`[coordinator] node ${name} now gives ${msg.cpus} CPU (its donor changed it)`)
        // Fewer: leases beyond the new total are asked back. More: work waiting for CPUs (or that fit nowhere) may fit.
        if (delta < 0) leases.askBackBeyondTotal(node)
        scheduler.nodesChanged()
      }
    }
    if (msg.paused !== undefined && nodes.setPaused(node.nodeId, msg.paused)) {
      log(`[coordinator] node ${name} is ${msg.paused ? 'PAUSED' : 'resumed'} by its donor`)
      if (msg.paused) leases.askBackOn(node.nodeId)
      else scheduler.nodesChanged()
    }
  }

  drain(s: Session, msg: ClientMessageOf<'node-drain'>): void {
    const nodeId = s.nodeId as string
    if (!this.deps.nodes.setDraining(nodeId)) return
    this.deps.log(`[coordinator] node ${nodeId.slice(0, 8)} is DRAINING (its donor leaves; deadline ${msg.deadlineMs / 1000} s)`)
    this.deps.leases.askBackOn(nodeId)
    const d: Drain = {
      nodeId,
      deadline: this.now() + msg.deadlineMs,
      copying: new Map(),
      timer: setInterval(() => this.step(d), DRAIN_TICK_MS),
    }
    d.timer.unref?.()
    this.drains.set(nodeId, d)
    this.step(d)
  }

  /** Whether the node takes no work for now but will again: its donor paused it (hard affinity to it waits). */
  resting(nodeId: string): boolean {
    const n = this.deps.nodes.get(nodeId)
    return n?.state === 'ALIVE' && n.paused && !n.draining && !n.quarantined
  }

  /** Stops every drain's timer (the coordinator is shutting down). */
  close(): void {
    for (const d of this.drains.values()) clearInterval(d.timer)
    this.drains.clear()
  }

  private step(d: Drain): void {
    const { nodes, leases, tasks, objects } = this.deps
    const node = nodes.get(d.nodeId)
    if (node?.state !== 'ALIVE') return this.end(d) // it died meanwhile: its death already did the rest
    const now = this.now()
    // Work first: what still runs there may leave results (objects) there too.
    const busy = leases.countOn(d.nodeId) + tasks.countOn(d.nodeId)
    if (busy && now < d.deadline) return
    d.copyStart ??= now
    const needed = objects.onlyOn(d.nodeId)
    const copyDeadline = Math.max(d.deadline, d.copyStart + COPY_MIN_MS)
    if (needed.length && now < copyDeadline) {
      this.copy(d, needed, now)
      return
    }
    if (needed.length) this.deps.log(`[coordinator] node ${d.nodeId.slice(0, 8)} leaves with ${needed.length} object(s) not copied in time`)
    this.end(d)
    this.deps.nodeSession(d.nodeId)?.send({ type: 'drained', lost: needed.length })
    this.deps.nodeDied(d.nodeId, 'drained: its donor left')
  }

  /** Asks another node to pull each object not copied yet (again, if the node first asked is gone or silent). */
  private copy(d: Drain, needed: readonly { objectId: ObjectId; size: number }[], now: number): void {
    const byTarget = new Map<string, { ref: string; size: number; locations: string[] }[]>()
    for (const o of needed) {
      const c = d.copying.get(o.objectId)
      if (c && now - c.since < COPY_RETRY_MS && this.deps.nodes.get(c.to)?.state === 'ALIVE') continue
      const to = this.target(d.nodeId, o.size, c?.to)
      if (!to) continue
      d.copying.set(o.objectId, { to: to.nodeId, since: now })
      let list = byTarget.get(to.nodeId)
      if (!list) byTarget.set(to.nodeId, (list = []))
      list.push({ ref: o.objectId, size: o.size, locations: [d.nodeId] })
    }
    for (const [to, list] of byTarget) this.deps.nodeSession(to)?.send({ type: 'pull-objects', objects: list })
  }

  /**
   * Where a leaving node's object goes: a trusted, connected node that is not leaving or quarantined (a paused one may
   * hold objects), with the most free room; another than `not` (a copy that did not come) where there is one.
   */
  private target(from: string, size: number, not?: string): NodeRecord | undefined {
    let best: NodeRecord | undefined
    let bestRoom = Number.NEGATIVE_INFINITY
    for (const n of this.deps.nodes.alive()) {
      if (n.nodeId === from || n.draining || n.quarantined || n.trust !== 'trusted' || !this.deps.nodeSession(n.nodeId)) continue
      const room = n.objectStoreMemory - n.objectStoreUsed - size - (n.nodeId === not ? Number.MAX_SAFE_INTEGER / 2 : 0)
      if (room > bestRoom) {
        best = n
        bestRoom = room
      }
    }
    return best
  }

  private end(d: Drain): void {
    clearInterval(d.timer)
    this.drains.delete(d.nodeId)
  }
}
