import type { Resources, SchedulingStrategy } from '../../sdk/protocol.ts'

/** Ray's hybrid policy packs a node until this share of its critical resource is in use, then spreads. */
export const SPREAD_THRESHOLD = 0.5

export interface NodeView {
  nodeId: string
  total: Resources
  available: Resources
}

/** A placement decision; the reason a task cannot run now is part of the type. */
export type Placement =
  | { kind: 'scheduled'; nodeId: string }
  | { kind: 'retryable' } // some node could fit it once resources free up
  | { kind: 'infeasible' } // no alive node could ever fit it: wait for a bigger node
  | { kind: 'failed'; reason: string } // hard affinity to a node that is gone

export function fits(req: Resources, have: Resources): boolean {
  for (const k in req) {
    const need = req[k] as number
    if (need > 0 && (have[k] ?? 0) < need - 1e-9) return false
  }
  return true
}

/** The share in use of the most used resource the task asks for. */
function utilization(n: NodeView, req: Resources): number {
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
  req: Resources,
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
      return fits(req, target.total) ? { kind: 'retryable' } : { kind: 'infeasible' }
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
export function pickBacklogNode(req: Resources, strategy: SchedulingStrategy, nodes: readonly BacklogView[]): string | undefined {
  let best: BacklogView | undefined
  for (const n of nodes) {
    if (typeof strategy === 'object' && n.nodeId !== strategy.nodeId) continue
    if (n.backlog >= n.backlogLimit || !fits(req, n.total)) continue
    if (!best || n.backlog < best.backlog) best = n
  }
  return best?.nodeId
}

export function allocate(req: Resources, from: Resources): void {
  for (const k in req) from[k] = (from[k] ?? 0) - (req[k] as number)
}

export function free(req: Resources, to: Resources): void {
  for (const k in req) to[k] = (to[k] ?? 0) + (req[k] as number)
}
