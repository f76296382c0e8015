import type { SchedulingStrategy } from '../../sdk/protocol/index.ts'
import { allocate, type ResourceUnits } from '../../sdk/resources.ts'
import type { NodeRecord } from '../gcs/nodes.ts'
import { type Placement, type PolicyState, pickNode } from './policy.ts'

/** What the scheduler places: a task attempt needing resources under a strategy. */
export interface Schedulable {
  readonly resources: ResourceUnits
  readonly strategy: SchedulingStrategy
  /** Set while queued; the scheduler uses it to group tasks of one shape. */
  shapeKey?: string
  /** The node holding most bytes of the task's large arguments (locality). */
  preferNode?: string
}

export interface SchedulerHooks<T extends Schedulable> {
  /** Alive nodes in a stable order. */
  nodes(): NodeRecord[]
  /** The task was given `node` (its resources are already allocated there). */
  dispatch(task: T, node: NodeRecord): void
  /** Hard affinity to a dead node: the task cannot run. */
  fail(task: T, reason: string): void
  /** The task became (in)feasible: no alive node could ever fit it. */
  infeasible(task: T, infeasible: boolean): void
  /** No node can run the task now: it may be sent to wait in a node's local queue (pipelining). Returns whether it was. */
  pipeline?(task: T, nodes: NodeRecord[]): boolean
}

/**
 * Places ready tasks on nodes. Tasks wait in FIFO queues grouped by shape (resources + strategy), like Ray's
 * scheduling classes: when the head of a queue cannot be placed, the rest of that queue is skipped in this pass, so
 * one pass costs O(shapes + placed), not O(queued).
 */
export class Scheduler<T extends Schedulable> {
  private queues = new Map<string, T[]>()
  private infeasibleTasks = new Set<T>()
  private policy: PolicyState = { spreadCursor: 0 }
  private passScheduled = false

  constructor(private hooks: SchedulerHooks<T>) {}

  enqueue(task: T): void {
    this.queueOf(task).push(task)
    this.requestPass()
  }

  /** Puts a task back at the front (a retry keeps its place in line). */
  requeueFront(task: T): void {
    this.queueOf(task).unshift(task)
    this.requestPass()
  }

  /** The FIFO of the task's shape (resources + strategy), made on first use. */
  private queueOf(task: T): T[] {
    task.shapeKey ??= JSON.stringify([task.resources, task.strategy])
    let q = this.queues.get(task.shapeKey)
    if (!q) this.queues.set(task.shapeKey, (q = []))
    return q
  }

  /** Removes a queued task (cancelled). Returns whether it was queued. */
  remove(task: T): boolean {
    if (this.infeasibleTasks.delete(task)) return true
    const q = task.shapeKey ? this.queues.get(task.shapeKey) : undefined
    const i = q ? q.indexOf(task) : -1
    if (i < 0 || !q) return false
    q.splice(i, 1)
    return true
  }

  get queued(): number {
    let n = this.infeasibleTasks.size
    for (const q of this.queues.values()) n += q.length
    return n
  }

  /** Coalesces many triggers (a batch of submits, many results) into one pass at the end of this turn. */
  requestPass(): void {
    if (this.passScheduled) return
    this.passScheduled = true
    queueMicrotask(() => {
      this.passScheduled = false
      this.pass()
    })
  }

  /** A node joined: infeasible tasks may now fit. */
  nodesChanged(): void {
    for (const t of this.infeasibleTasks) {
      this.infeasibleTasks.delete(t)
      this.hooks.infeasible(t, false)
      this.requeueFront(t)
    }
    this.requestPass()
  }

  pass(): void {
    const nodes = this.hooks.nodes()
    for (const [key, q] of this.queues) {
      while (q.length) {
        const task = q[0] as T
        const p: Placement = pickNode(task.resources, task.strategy, nodes, this.policy, task.preferNode)
        if (p.kind === 'retryable') {
          if (!this.hooks.pipeline?.(task, nodes)) break
          q.shift()
          continue
        }
        q.shift()
        if (p.kind === 'scheduled') {
          const node = nodes.find((n) => n.nodeId === p.nodeId) as NodeRecord
          allocate(task.resources, node.available)
          this.hooks.dispatch(task, node)
        } else if (p.kind === 'infeasible') {
          this.infeasibleTasks.add(task)
          this.hooks.infeasible(task, true)
        } else this.hooks.fail(task, p.reason)
      }
      if (!q.length) this.queues.delete(key)
    }
  }
}
