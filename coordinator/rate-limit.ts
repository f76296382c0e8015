/** Task submissions through the coordinator (actors' creations) one connection may make per second, in bursts of twice as many. */
export const SUBMITS_PER_SECOND = 50_000

/**
 * A token bucket: `perSecond` on average, in bursts of up to `burst`. What one connection may cost the coordinator
 * per second is bounded by it, whatever it sends.
 */
export class RateLimit {
  private tokens: number
  private last: number

  constructor(
    readonly perSecond: number,
    private readonly burst = perSecond * 2,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst
    this.last = now()
  }

  /** Takes `n` if there are that many; false (and takes none) if not. */
  take(n: number): boolean {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.perSecond)
    this.last = t
    if (n > this.tokens) return false
    this.tokens -= n
    return true
  }
}
