import { Deque } from '../../sdk/deque.ts'
import type { SchedulingStrategy } from '../../sdk/protocol/index.ts'
import { allocate, type ResourceUnits } from '../../sdk/resources.ts'
import type { NodeRecord } from '../gcs/nodes.ts'
import { type Placement, type PolicyState, pickNode } from './policy.ts'

/** What the scheduler places: an actor's creation, or an owner's request for worker leases. */
export interface Schedulable {
  readonly resources: ResourceUnits
  readonly strategy: SchedulingStrategy
  /** The queue it waits in: items of one key are served in order (Ray's scheduling class; per owner for leases). */
  queueKey?: string
  /** The node holding most bytes of the item's large arguments (locality). */
  preferNode?: string
  /** How many placements it still wants (a lease request may ask for many); 1 if unset. Lowered before each dispatch. */
  count?: number
  /** Leases asked back from their owners for it that have not ended yet (see LeaseManager.waiting). */
  reclaiming?: number
  /** May run on volunteer nodes (its options said `volunteers: true`); else trusted nodes only. */
  volunteers?: boolean
  /** Nodes it must not go to (a verified task's replicas each need a node of their own). */
  avoid?: ReadonlySet<string>
}

export interface SchedulerHooks<T extends Schedulable> {
  /** The nodes this item may go to (alive, trusted unless it allows volunteers, not quarantined), in a stable order. */
  nodes(item: T): readonly NodeRecord[]
  node(nodeId: string): NodeRecord | undefined
  /** The item was given `node` (its resources are already allocated there). */
  dispatch(item: T, node: NodeRecord): void
  /** Hard affinity to a dead node: the item cannot run. */
  fail(item: T, reason: string): void
  /** The item became (in)feasible: no alive node could ever fit it. */
  infeasible(item: T, infeasible: boolean): void
  /** The head of a queue cannot be placed now (resources busy): others may be asked to give some back. */
  waiting?(item: T): void
  /** Whether this alive node takes no work for now but will again (its donor paused it): hard affinity to it waits. */
  resting?(nodeId: string): boolean
}

/**
 * Places items on nodes. Items wait in FIFO queues by key (like Ray's scheduling classes): when the head of a queue
 * cannot be placed, the rest of that queue is skipped in this pass, so one pass costs O(queues + placed), not
 * O(queued). A queue that was served moves to the back, so queues (owners) take turns when resources are scarce.
 */
export class Scheduler<T extends Schedulable> {
  private queues = new Map<string, Deque<T>>()
  private infeasibleItems = new Set<T>()
  private policy: PolicyState = { spreadCursor: 0 }
  private passScheduled = false

  constructor(private hooks: SchedulerHooks<T>) {}

  enqueue(item: T): void {
    this.queueOf(item).push(item)
    this.requestPass()
  }

  /** Puts an item back at the front (a retry keeps its place in line). */
  requeueFront(item: T): void {
    this.queueOf(item).unshift(item)
    this.requestPass()
  }

  private queueOf(item: T): Deque<T> {
    item.queueKey ??= JSON.stringify([item.resources, item.strategy, !!item.volunteers])
    let q = this.queues.get(item.queueKey)
    if (!q) this.queues.set(item.queueKey, (q = new Deque()))
    return q
  }

  /** Removes a queued item (cancelled). Returns whether it was queued. */
  remove(item: T): boolean {
    if (this.infeasibleItems.delete(item)) return true
    const q = item.queueKey ? this.queues.get(item.queueKey) : undefined
    if (!q?.remove(item)) return false
    if (!q.length) this.queues.delete(item.queueKey as string)
    return true
  }

  get queued(): number {
    let n = 0
    for (const t of this.infeasibleItems) n += t.count ?? 1
    for (const q of this.queues.values()) for (const t of q) n += t.count ?? 1
    return n
  }

  /** Coalesces many triggers (a batch of requests, many returns) into one pass at the end of this turn. */
  requestPass(): void {
    if (this.passScheduled) return
    this.passScheduled = true
    queueMicrotask(() => {
      this.passScheduled = false
      this.pass()
    })
  }

  /** A node joined: infeasible items may now fit. */
  nodesChanged(): void {
    // Back to the front of their queues, in the order they came (each goes in front of the one after it).
    const items = [...this.infeasibleItems].reverse()
    this.infeasibleItems.clear()
    for (const t of items) {
      this.hooks.infeasible(t, false)
      this.requeueFront(t)
    }
    this.requestPass()
  }

  pass(): void {
    const served: string[] = []
    for (const [key, q] of this.queues) {
      let placed = false
      while (q.length) {
        const item = q.peek() as T
        const s = item.strategy
        if (typeof s === 'object' && !s.soft && this.hooks.resting?.(s.nodeId)) break
        const nodes = this.hooks.nodes(item)
        const p: Placement = pickNode(item.resources, item.strategy, nodes, this.policy, item.preferNode)
        if (p.kind === 'retryable') {
          this.hooks.waiting?.(item)
          break
        }
        if (p.kind === 'scheduled') {
          const node = this.hooks.node(p.nodeId) as NodeRecord
          allocate(item.resources, node.available)
          placed = true
          // A request for several placements stays at the head until it has them all (`count` is what is left).
          if (item.count !== undefined) item.count--
          if (item.count === undefined || item.count <= 0) q.shift()
          this.hooks.dispatch(item, node)
          continue
        }
        q.shift()
        if (p.kind === 'infeasible') {
          this.infeasibleItems.add(item)
          this.hooks.infeasible(item, true)
        } else this.hooks.fail(item, p.reason)
      }
      if (!q.length) this.queues.delete(key)
      else if (placed) served.push(key)
    }
    // Served queues go to the back: the next pass offers freed resources to the others first.
    for (const key of served) {
      const q = this.queues.get(key)
      if (!q) continue
      this.queues.delete(key)
      this.queues.set(key, q)
    }
  }
}
