import { BoundedMap } from '../sdk/bounded.ts'
import { jobIdOfObject, type ObjectId } from '../sdk/ids.ts'
import type { ClientMessage } from '../sdk/protocol/index.ts'

/** Pairs of jobs remembered (a node serves a bounded number of jobs at once; forgotten pairs are asked again). */
const MAX_PAIRS = 10_000

/**
 * Whether a pushed task may take its large arguments: an owner names them (and where they live) itself, so a hostile
 * driver could name another tenant's object, and this node would fetch it from its holder and hand it to the task.
 * An object of the task's own job is its own; for another job's, the coordinator is asked once per pair of jobs
 * whether they share a tenant (Ray's refs are usable by any job of the tenant).
 */
export class TenancyCheck {
  private known = new BoundedMap<string, Promise<boolean>>(MAX_PAIRS)
  private asks = new Map<number, (sameTenant: readonly string[]) => void>()
  private nextReq = 1

  constructor(private readonly send: (msg: ClientMessage) => void) {}

  /** The ids among `objectIds` that a task of `jobId` may not take (another tenant's, or of a job nobody knows). */
  async foreign(jobId: string, objectIds: readonly string[]): Promise<string[]> {
    const verdicts = await Promise.all(
      objectIds.map((id) => {
        const owner = jobIdOfObject(id as ObjectId)
        return owner === jobId ? true : this.sameTenant(jobId, owner)
      }),
    )
    return objectIds.filter((_, i) => !verdicts[i])
  }

  private sameTenant(jobId: string, other: string): Promise<boolean> {
    const key = `${jobId}:${other}`
    let p = this.known.get(key)
    if (!p) {
      const reqId = this.nextReq++
      p = new Promise<boolean>((resolve) => this.asks.set(reqId, (same) => resolve(same.includes(other))))
      this.known.set(key, p)
      this.send({ type: 'may-use', reqId, jobId, objectJobIds: [other] })
    }
    return p
  }

  /** A reply from the coordinator. Returns whether it answered one of these questions. */
  onReply(reqId: number, ok: boolean, value: unknown): boolean {
    const answer = this.asks.get(reqId)
    if (!answer) return false
    this.asks.delete(reqId)
    answer(ok && Array.isArray(value) ? (value as string[]) : [])
    return true
  }

  /** The connection ended: nothing pending will be answered, so nothing is allowed. */
  closed(): void {
    for (const answer of this.asks.values()) answer([])
    this.asks.clear()
    this.known.clear()
  }
}
