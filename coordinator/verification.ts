import { createHash } from 'node:crypto'
import type { WireError } from '../sdk/errors.ts'

/**
 * The vote of verified tasks (BOINC's redundant computing): each replica's outcome, reduced to a key that is equal
 * exactly when the outcomes are, and the rule that decides from the votes. Pure: the replicas themselves live in
 * VerifiedTasks.
 */

/** What one replica came back with: its returns' bytes, or the error its code threw. */
export type Outcome = { ok: true; returns: readonly Uint8Array[] } | { ok: false; error: WireError }

/**
 * Equal for equal outcomes: the SHA-256 of the returns (each length-prefixed, so [ab, c] ≠ [a, bc]), or of what an
 * error says (its code, the remote error's name and the message; never a stack, which names a node's paths).
 */
export function outcomeKey(o: Outcome): string {
  const h = createHash('sha256')
  if (o.ok) {
    h.update('ok')
    const len = Buffer.alloc(4)
    for (const r of o.returns) {
      len.writeUInt32BE(r.byteLength)
      h.update(len)
      h.update(r)
    }
  } else {
    const e = o.error
    h.update(`error\0${e.code}\0${(e.data?.remoteName as string | undefined) ?? e.name}\0${e.message}`)
  }
  return `${o.ok ? '' : 'error:'}${h.digest('hex').slice(0, 16)}`
}

export type Verdict =
  /** One outcome is agreed on: `agreed` returned it, `minority` returned something else. */
  | { kind: 'accept'; key: string; agreed: string[]; minority: string[] }
  /** Run this many more replicas, each on a node that has not run one. */
  | { kind: 'more'; count: number }
  /** No outcome can be trusted within the budget. */
  | { kind: 'undecided'; reason: string }

/** The votes of one verified task: outcome key → the nodes that returned it, in the order they came. */
export class Tally {
  private readonly groups = new Map<string, string[]>()
  private total = 0

  constructor(
    /** How many replicas must agree when none disagree (the task's `verify.replicas`). */
    readonly replicas: number,
  ) {}

  record(key: string, nodeId: string): void {
    const g = this.groups.get(key)
    if (g) g.push(nodeId)
    else this.groups.set(key, [nodeId])
    this.total++
  }

  /** Every outcome and who returned it (for VerificationError), the largest group first. */
  byOutcome(): { key: string; nodes: string[] }[] {
    return [...this.groups].map(([key, nodes]) => ({ key, nodes: [...nodes] })).sort((a, b) => b.nodes.length - a.nodes.length)
  }

  /**
   * Decides once no replica is running. All `replicas` agreeing is accepted; on disagreement an outcome with a strict
   * majority of all the votes is accepted, else as many more replicas run as could give the leader one (if `budget`,
   * the extra replicas still allowed, covers them); else nothing can be trusted.
   */
  decide(budget: number): Verdict {
    const [leader, ...others] = this.byOutcome()
    if (!leader) return this.more(this.replicas, budget, 'no replica finished')
    const c = leader.nodes.length
    if (!others.length) {
      if (this.total >= this.replicas) return { kind: 'accept', key: leader.key, agreed: leader.nodes, minority: [] }
      return this.more(this.replicas - this.total, budget, `only ${this.total} of ${this.replicas} replicas finished`)
    }
    if (c * 2 > this.total) return { kind: 'accept', key: leader.key, agreed: leader.nodes, minority: others.flatMap((g) => g.nodes) }
    // The leader wins if it gets every one of k more votes: c + k > (total + k) / 2.
    return this.more(this.total - 2 * c + 1, budget, `${this.total} replicas returned ${others.length + 1} different results`)
  }

  private more(count: number, budget: number, why: string): Verdict {
    if (count <= budget) return { kind: 'more', count }
    return { kind: 'undecided', reason: `${why}, and maxRetries allows ${budget} more replica(s) where ${count} are needed` }
  }
}
