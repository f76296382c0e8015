export interface PollerOptions {
  intervalMs: number
  /** A tick that takes longer is aborted, so a hung coordinator shows as unreachable instead of freezing the page. */
  timeoutMs: number
  tick: (signal: AbortSignal) => Promise<void>
}

/**
 * Calls `tick` every `intervalMs` after the previous tick ended (never overlapping, so a slow coordinator is not
 * piled up with requests), and not at all while the tab is hidden.
 */
export class Poller {
  private timer: ReturnType<typeof setTimeout> | undefined
  private inFlight = false
  private rerun = false

  constructor(private readonly opts: PollerOptions) {}

  start(): void {
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) this.cancelTimer()
      else this.now()
    })
    this.now()
  }

  get paused(): boolean {
    return document.hidden
  }

  /** Polls at once, e.g. after a filter changed; if a tick is running, another follows it right away. */
  now(): void {
    this.cancelTimer()
    if (document.hidden) return
    if (this.inFlight) {
      this.rerun = true
      return
    }
    void this.run()
  }

  private async run(): Promise<void> {
    this.inFlight = true
    const ctrl = new AbortController()
    const timeout = setTimeout(
      () => ctrl.abort(new DOMException('coordinator did not answer in time', 'TimeoutError')),
      this.opts.timeoutMs,
    )
    try {
      await this.opts.tick(ctrl.signal)
    } catch (err) {
      // tick handles its own errors; one escaping is a dashboard bug and must not stop polling.
      console.warn('dashboard poll failed', err)
    } finally {
      clearTimeout(timeout)
      this.inFlight = false
    }
    if (this.rerun) {
      this.rerun = false
      this.now()
    } else if (!document.hidden) {
      this.timer = setTimeout(() => this.now(), this.opts.intervalMs)
    }
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}
