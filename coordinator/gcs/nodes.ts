import { type NodeId, newNodeId } from '../../sdk/ids.ts'
import { fromUnits, type Resources, type ResourceUnits, toUnits } from '../../sdk/resources.ts'
import type { NodeRow } from '../../sdk/state-api.ts'

/**
 * A node as the coordinator tracks it. `available` is what the scheduler may still hand out. Quantities are in
 * fixed-point units (sdk/resources.ts).
 */
export interface NodeRecord {
  nodeId: NodeId
  state: 'ALIVE' | 'DEAD'
  total: ResourceUnits
  available: ResourceUnits
  objectStoreMemory: number
  objectStoreUsed: number
  /** Bytes this node spilled to OPFS. */
  objectStoreSpilled: number
  name: string | null
  startTime: number
  endTime: number | null
  deathReason: string | null
  lastHeartbeat: number
  /** The table's stall total when that heartbeat came (see NodeTable.stalled). */
  stalledAtHeartbeat: number
  runningTasks: number
  workers: number
  /** `volunteer`: joined without a token; runs only work whose options say `volunteers: true`. */
  trust: NodeTrust
  /** Why it gets no more work (it returned a result the other replicas outvoted), or null. */
  quarantined: string | null
  /** Its donor paused it (the /node page): what runs there finishes, nothing new is placed there. */
  paused: boolean
  /** Its donor is leaving (a drain, as Ray's drain-node): nothing new is placed there, and it goes once drained. */
  draining: boolean
}

export type NodeTrust = 'trusted' | 'volunteer'

/** The node table (Ray's GcsNodeManager): registration, heartbeats, death. */
export class NodeTable {
  private nodes = new Map<NodeId, NodeRecord>()
  /**
   * How long, in all, the coordinator could not listen (its monitor ran late: a long turn, a stalled process). A node
   * is not blamed for that time: its heartbeats were waiting, unread, in its socket. Before this, 10,000 simulated
   * nodes under a 300,000-task relayed run saw 9,444 healthy nodes declared DEAD after the coordinator stalled.
   */
  private stalled = 0
  /** The alive nodes, kept until one joins or dies: the scheduler reads them on every pass. */
  private aliveList: NodeRecord[] | undefined
  /** Where work may be placed: alive and not quarantined; trusted only, or volunteers too. Kept like aliveList. */
  private placeable: { trusted: NodeRecord[]; any: NodeRecord[] } | undefined

  /** `now` is the clock heartbeats are judged by (the simulator gives its own). */
  constructor(private readonly now: () => number = Date.now) {}

  add(
    info: { resources: Resources; objectStoreMemory: number; name?: string; paused?: boolean },
    trust: NodeTrust = 'trusted',
  ): NodeRecord {
    const now = this.now()
    const units = toUnits(info.resources)
    const rec: NodeRecord = {
      nodeId: newNodeId(),
      state: 'ALIVE',
      total: units,
      available: { ...units },
      objectStoreMemory: info.objectStoreMemory,
      objectStoreUsed: 0,
      objectStoreSpilled: 0,
      name: info.name ?? null,
      startTime: now,
      endTime: null,
      deathReason: null,
      lastHeartbeat: now,
      stalledAtHeartbeat: this.stalled,
      runningTasks: 0,
      workers: 0,
      trust,
      quarantined: null,
      paused: info.paused ?? false,
      draining: false,
    }
    this.nodes.set(rec.nodeId, rec)
    this.changed()
    return rec
  }

  get(id: string): NodeRecord | undefined {
    return this.nodes.get(id as NodeId)
  }

  /** Alive nodes in registration order: packing walks them in this order, so it is stable. */
  alive(): readonly NodeRecord[] {
    if (!this.aliveList) {
      this.aliveList = []
      for (const n of this.nodes.values()) if (n.state === 'ALIVE') this.aliveList.push(n)
    }
    return this.aliveList
  }

  /** The nodes work may go to: alive, taking work, and trusted unless the work allows volunteers. */
  placeableFor(volunteers: boolean): readonly NodeRecord[] {
    if (!this.placeable) {
      const any = this.alive().filter(takesWork)
      this.placeable = { any, trusted: any.filter((n) => n.trust === 'trusted') }
    }
    return volunteers ? this.placeable.any : this.placeable.trusted
  }

  /** An admin lifted the node's quarantine: it may get work again. Returns false if it was not quarantined. */
  release(id: string): boolean {
    const n = this.nodes.get(id as NodeId)
    if (!n?.quarantined) return false
    n.quarantined = null
    this.changed()
    return true
  }

  /** The node gets no more work (it stays connected and listed, with the reason). Returns false if it already was. */
  quarantine(id: string, reason: string): boolean {
    const n = this.nodes.get(id as NodeId)
    if (!n || n.quarantined) return false
    n.quarantined = reason
    this.changed()
    return true
  }

  /** Its donor paused or resumed it. Returns whether that changed anything. */
  setPaused(id: string, paused: boolean): boolean {
    const n = this.nodes.get(id as NodeId)
    if (n?.state !== 'ALIVE' || n.paused === paused) return false
    n.paused = paused
    this.changed()
    return true
  }

  /** Its donor leaves: it takes no more work from now on (there is no way back: a drained node leaves). */
  setDraining(id: string): boolean {
    const n = this.nodes.get(id as NodeId)
    if (n?.state !== 'ALIVE' || n.draining) return false
    n.draining = true
    this.changed()
    return true
  }

  /**
   * Its donor gives `units` of CPU now. What is free changes by the difference: below zero while running work holds
   * more than the new total, so nothing new fits there until enough of it ends. Returns the change.
   */
  setCpu(id: string, units: number): number {
    const n = this.nodes.get(id as NodeId)
    if (n?.state !== 'ALIVE') return 0
    const delta = units - (n.total.CPU ?? 0)
    if (!delta) return 0
    n.total.CPU = units
    n.available.CPU = (n.available.CPU ?? 0) + delta
    return delta
  }

  private changed(): void {
    this.aliveList = undefined
    this.placeable = undefined
  }

  heartbeat(id: string, running: number, workers: number, storeUsed?: number, storeSpilled?: number): void {
    const n = this.nodes.get(id as NodeId)
    if (n?.state !== 'ALIVE') return
    n.lastHeartbeat = this.now()
    n.stalledAtHeartbeat = this.stalled
    n.runningTasks = running
    n.workers = workers
    if (storeUsed !== undefined) n.objectStoreUsed = storeUsed
    if (storeSpilled !== undefined) n.objectStoreSpilled = storeSpilled
  }

  /** Marks a node dead; returns false if it already was. */
  markDead(id: string, reason: string): boolean {
    const n = this.nodes.get(id as NodeId)
    if (!n || n.state === 'DEAD') return false
    n.state = 'DEAD'
    this.changed()
    n.endTime = this.now()
    n.deathReason = reason
    n.available = {}
    return true
  }

  /** The coordinator could not listen for `ms` (its monitor woke that late): no node's silence counts it. */
  noteStall(ms: number): void {
    this.stalled += ms
  }

  /** Alive nodes silent for longer than `timeoutMs`, not counting the time the coordinator itself stalled. */
  silentSince(timeoutMs: number): NodeRecord[] {
    const now = this.now()
    return this.alive().filter((n) => now - n.lastHeartbeat - (this.stalled - n.stalledAtHeartbeat) > timeoutMs)
  }

  rows(): NodeRow[] {
    return [...this.nodes.values()].map((n) => ({
      nodeId: n.nodeId,
      state: n.state,
      resources: fromUnits(n.total),
      availableResources: fromUnits(n.available),
      objectStoreMemory: n.objectStoreMemory,
      objectStoreUsed: n.objectStoreUsed,
      objectStoreSpilled: n.objectStoreSpilled,
      name: n.name,
      startTime: n.startTime,
      endTime: n.endTime,
      deathReason: n.deathReason,
      runningTasks: n.runningTasks,
      workers: n.workers,
      trust: n.trust,
      quarantined: n.quarantined,
      paused: n.paused,
      draining: n.draining,
    }))
  }
}

/** Whether new work may be placed on an alive node: not quarantined, paused or leaving. */
export const takesWork = (n: NodeRecord): boolean => !n.quarantined && !n.paused && !n.draining
