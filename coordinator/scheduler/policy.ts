import type { SchedulingStrategy } from '../../sdk/protocol/index.ts'
import { fits, formatResources, type ResourceUnits } from '../../sdk/resources.ts'

/** Ray's hybrid policy packs a node until this share of its critical resource is in use, then spreads. */
export const SPREAD_THRESHOLD = 0.5

/** A node as placement sees it; quantities in fixed-point units (sdk/resources.ts). */
export interface NodeView {
  nodeId: string
  total: ResourceUnits
  available: ResourceUnits
}

/** A placement decision; the reason a task cannot run now is part of the type. */
export type Placement =
  | { kind: 'scheduled'; nodeId: string }
  | { kind: 'retryable' } // some node could fit it once resources free up
  | { kind: 'infeasible' } // no alive node could ever fit it: wait for a bigger node
  | { kind: 'failed'; reason: string } // hard affinity to a node that is gone, or that can never fit it

/** The share in use of the most used resource the task asks for. */
function utilization(n: NodeView, req: ResourceUnits): number {
  let u = 0
  for (const k in req) {
    const total = n.total[k] ?? 0
    if (total > 0) u = Math.max(u, (total - (n.available[k] ?? 0)) / total)
  }
  return u
}

export interface PolicyState {
  spreadCursor: number
}

/**
 * Picks a node for a task. `nodes` are the alive nodes in a stable order; `preferNodeId` is where its data is.
 * - DEFAULT (Ray's hybrid): the first node (in order) below SPREAD_THRESHOLD utilization, else the least utilized.
 * - SPREAD: round robin over nodes that can take it now.
 * - { nodeId, soft }: that node; if it cannot take it, soft falls back to DEFAULT, hard waits (or fails if it is gone).
 */
export function pickNode(
  req: ResourceUnits,
  strategy: SchedulingStrategy,
  nodes: readonly NodeView[],
  st: PolicyState,
  preferNodeId?: string,
): Placement {
  if (typeof strategy === 'object') {
    const target = nodes.find((n) => n.nodeId === strategy.nodeId)
    if (target && fits(req, target.available)) return { kind: 'scheduled', nodeId: target.nodeId }
    if (!strategy.soft) {
      if (!target) return { kind: 'failed', reason: `node ${strategy.nodeId} (hard affinity) is not alive` }
      if (!fits(req, target.total)) return { kind: 'failed', reason: `node ${strategy.nodeId} (hard affinity) can never fit it` }
      return { kind: 'retryable' }
    }
    return pickNode(req, 'DEFAULT', nodes, st)
  }
  // Ray's locality: the node holding most bytes of the task's large arguments, if it can take the task now.
  if (preferNodeId && strategy === 'DEFAULT') {
    const n = nodes.find((x) => x.nodeId === preferNodeId)
    if (n && fits(req, n.available)) return { kind: 'scheduled', nodeId: n.nodeId }
  }
  let feasible = false
  if (strategy === 'SPREAD') {
    for (let i = 0; i < nodes.length; i++) {
      const n = nodes[(st.spreadCursor + i) % nodes.length] as NodeView
      if (!fits(req, n.total)) continue
      feasible = true
      if (fits(req, n.available)) {
        st.spreadCursor = (st.spreadCursor + i + 1) % nodes.length
        return { kind: 'scheduled', nodeId: n.nodeId }
      }
    }
    return feasible ? { kind: 'retryable' } : { kind: 'infeasible' }
  }
  let best: NodeView | undefined
  let bestScore = Number.POSITIVE_INFINITY
  for (const n of nodes) {
    if (!fits(req, n.total)) continue
    feasible = true
    if (!fits(req, n.available)) continue
    const u = utilization(n, req)
    const score = u < SPREAD_THRESHOLD ? 0 : u
    if (score < bestScore) {
      best = n
      bestScore = score
      if (score === 0) break
    }
  }
  if (best) return { kind: 'scheduled', nodeId: best.nodeId }
  return feasible ? { kind: 'retryable' } : { kind: 'infeasible' }
}

/** A node as pipelining sees it: how many tasks already wait in its local queue, and how many may. */
export interface BacklogView extends NodeView {
  backlog: number
  backlogLimit: number
}

/**
 * Pipelining (Ray's worker-lease reuse, in our terms): when no node can run a short task now, it may wait in the
 * local queue of a node that could run it, so that node starts it the moment a slot frees instead of a coordinator
 * round trip later. Picks the node with the shortest local queue; honours node affinity.
 */
export function pickBacklogNode(req: ResourceUnits, strategy: SchedulingStrategy, nodes: readonly BacklogView[]): string | undefined {
  let best: BacklogView | undefined
  for (const n of nodes) {
    if (typeof strategy === 'object' && n.nodeId !== strategy.nodeId) continue
    if (n.backlog >= n.backlogLimit || !fits(req, n.total)) continue
    if (!best || n.backlog < best.backlog) best = n
  }
  return best?.nodeId
}

/**
 * What an owner is told when no alive node could ever fit a task (Ray warns once per shape): the task, what it needs,
 * and the largest node there is, instead of a silent wait.
 */
export function infeasibleWarning(name: string, taskId: string, req: ResourceUnits, nodes: readonly NodeView[]): string {
  let largest: ResourceUnits | undefined
  for (const n of nodes) if (!largest || (n.total.CPU ?? 0) > (largest.CPU ?? 0)) largest = n.total
  return (
    `task '${name}' (${taskId}) cannot be scheduled: it requires ${formatResources(req)}, ` +
    `which no node in the cluster can provide (${largest ? `the largest has ${formatResources(largest)}` : 'there are no nodes'}). ` +
    'It waits until a node that fits joins; consider asking for less.'
  )
}
