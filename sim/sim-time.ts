/** What the simulation's clock reads at sim time 0 through Date.now (any fixed instant: runs must not depend on it). */
const EPOCH = Date.UTC(2025, 0, 1)

interface Timer {
  id: number
  due: number
  fn: () => void
  /** Set for setInterval: re-armed this many ms after each run. */
  every: number | undefined
}

/** What Node's setTimeout returns, enough for the code under test (`unref` is optional-called by the SDK). */
class SimTimeout {
  constructor(readonly id: number) {}
  ref(): this {
    return this
  }
  unref(): this {
    return this
  }
  hasRef(): boolean {
    return false
  }
  [Symbol.toPrimitive](): number {
    return this.id
  }
}

/**
 * The simulation's time. While installed, everything in the process that reads the clock or sets a timer
 * (`performance.now`, `Date.now`, `setTimeout`, `setInterval`) sees sim time: it moves only when the simulation says
 * (`advance`), and timers run then, in order of their due time (then of their setting). Real time never reaches the
 * participants, so neither the machine's load nor its speed changes a run: a seed replays exactly.
 *
 * Left real: `setImmediate` and microtasks, which the simulation uses to let a step's consequences run. Their order
 * does not depend on real time once no real timer can fire between them.
 */
export class SimTime {
  /** Sim time (ms). */
  now = 0
  private timers = new Map<number, Timer>()
  private ids = 0

  /** Makes the globals read sim time; returns what restores the real ones. */
  install(): () => void {
    const g = globalThis as unknown as Record<string, unknown>
    const saved = {
      setTimeout: g.setTimeout,
      clearTimeout: g.clearTimeout,
      setInterval: g.setInterval,
      clearInterval: g.clearInterval,
    }
    // A timer set before the simulation took the clock is a real one: it is cleared as such.
    const clear = (h: unknown) => {
      if (h instanceof SimTimeout) this.timers.delete(h.id)
      else if (typeof h === 'number' && this.timers.has(h)) this.timers.delete(h)
      else (saved.clearTimeout as (h: unknown) => void)(h)
    }
    g.setTimeout = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => this.set(() => fn(...args), ms, undefined)
    g.setInterval = (fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      this.set(() => fn(...args), ms, Math.max(1, Number(ms) || 0))
    g.clearTimeout = clear
    g.clearInterval = clear
    // performance.now lives on Performance.prototype: an own property hides it, and deleting it brings it back.
    Object.defineProperty(performance, 'now', { configurable: true, writable: true, value: () => this.now })
    const dateNow = Date.now
    Date.now = () => EPOCH + this.now
    return () => {
      Object.assign(g, saved)
      delete (performance as { now?: unknown }).now
      Date.now = dateNow
      this.timers.clear()
    }
  }

  /**
   * Lets time pass up to `to`, running the timers due meanwhile (each at its own time), in order; `between` runs
   * after each one (the simulation lets its consequences happen, as the event loop runs microtasks between timers).
   */
  async advance(to: number, between: () => Promise<void>): Promise<void> {
    for (;;) {
      let next: Timer | undefined
      for (const t of this.timers.values())
        if (t.due <= to && (!next || t.due < next.due || (t.due === next.due && t.id < next.id))) next = t
      if (!next) break
      this.now = Math.max(this.now, next.due)
      if (next.every === undefined) this.timers.delete(next.id)
      else next.due = this.now + next.every
      next.fn()
      await between()
    }
    this.now = Math.max(this.now, to)
  }

  private set(fn: () => void, ms: number | undefined, every: number | undefined): SimTimeout {
    const id = ++this.ids
    this.timers.set(id, { id, due: this.now + Math.max(0, Number(ms) || 0), fn, every })
    return new SimTimeout(id)
  }
}
