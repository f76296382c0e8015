/**
 * A fleet of simulated nodes in one process (bench/sim/sim-node.ts): started with a connection ramp (so many
 * thousands do not all knock at once), counted together, stopped together.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { emptyCounters, type SimCounters, SimNode, type SimNodeOptions } from './sim-node.ts'

export interface FleetOptions extends Omit<SimNodeOptions, 'name' | 'onError'> {
  /** How many nodes. */
  nodes: number
  /** Node names are `<namePrefix>-<index>`. */
  namePrefix?: string
  /** Connection ramp: at most this many registrations in flight at once (default 256)… */
  concurrency?: number
  /** …and at most this many new nodes per second (default: no limit). */
  perSecond?: number
  /** Tries per node before the fleet gives up on it (a browser node retries its registration too; default 3). */
  attempts?: number
  /** Bound on starting the whole fleet (ms; default 10 minutes). */
  startTimeoutMs?: number
  /** Messages a node would print (default: the first 20 are printed, the rest counted). */
  onError?: (node: SimNode, message: string) => void
}

/** What the fleet did: its nodes' counters summed, and how many are alive, closed or declared dead. */
export interface FleetStats extends SimCounters {
  nodes: number
  alive: number
  /** Closed by the coordinator as DEAD while they were alive and well. */
  declaredDead: number
  /** Closed otherwise (by us, or the coordinator went away). */
  closed: number
  /** Nodes that ran at least one task. */
  nodesThatRan: number
  /** Among the nodes declared dead: the longest gap between two heartbeats any of them sent (ms). */
  declaredDeadMaxHeartbeatGapMs: number
  /** The longest gap between two heartbeats any node sent (ms): the simulator's own health. */
  maxHeartbeatGapMs: number
  /** This process's event loop: its worst delay since the fleet started (ms). */
  eventLoopMaxDelayMs: number
  /** Why nodes were declared dead (the coordinator's reasons), with how many. */
  deathReasons: Record<string, number>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class Fleet {
  readonly nodes: SimNode[] = []
  /** How long starting took (ms). */
  startMs = 0
  private readonly loop = monitorEventLoopDelay({ resolution: 20 })
  private printed = 0
  private stopped = false

  private constructor(private readonly opts: FleetOptions) {}

  /**
   * Starts `opts.nodes` nodes with the ramp and waits until every one is registered (welcomed). A node that cannot
   * register after its attempts fails the start, which first stops every node it started.
   */
  static async start(opts: FleetOptions): Promise<Fleet> {
    const fleet = new Fleet(opts)
    fleet.loop.enable()
    try {
      await fleet.ramp()
    } catch (e) {
      await fleet.stop()
      throw e
    }
    return fleet
  }

  private async ramp(): Promise<void> {
    const { nodes, concurrency = 256, perSecond, attempts = 3, startTimeoutMs = 600_000 } = this.opts
    const t0 = performance.now()
    const deadline = t0 + startTimeoutMs
    let next = 0
    let failure: Error | undefined
    const onError =
      this.opts.onError ??
      ((n: SimNode, message: string) => {
        if (this.printed++ < 20) console.warn(`[sim node ${n.name} ${n.nodeId.slice(0, 8)}] ${message}`)
      })
    const one = async (index: number): Promise<void> => {
      const name = `${this.opts.namePrefix ?? 'sim'}-${index}`
      for (let attempt = 1; ; attempt++) {
        if (this.stopped) throw new Error('the fleet was stopped while starting')
        try {
          const remaining = Math.max(1000, deadline - performance.now())
          const node = await SimNode.start({
            ...this.opts,
            name,
            onError,
            connectTimeoutMs: Math.min(this.opts.connectTimeoutMs ?? 30_000, remaining),
          })
          if (this.stopped) node.close()
          this.nodes.push(node)
          return
        } catch (e) {
          if (attempt >= attempts || performance.now() > deadline)
            throw new Error(`sim node ${name} could not register after ${attempt} attempt(s): ${(e as Error).message}`)
          await sleep(Math.min(5000, 250 * 2 ** attempt))
        }
      }
    }
    const lane = async (): Promise<void> => {
      while (!failure && next < nodes) {
        const index = next++
        if (perSecond) {
          const at = t0 + (index / perSecond) * 1000
          const wait = at - performance.now()
          if (wait > 0) await sleep(wait)
        }
        await one(index).catch((e: Error) => {
          failure ??= e
        })
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, nodes) }, lane))
    if (failure) throw failure
    this.startMs = performance.now() - t0
  }

  get alive(): SimNode[] {
    return this.nodes.filter((n) => n.alive)
  }

  stats(): FleetStats {
    const s: FleetStats = {
      ...emptyCounters(),
      nodes: this.nodes.length,
      alive: 0,
      declaredDead: 0,
      closed: 0,
      nodesThatRan: 0,
      declaredDeadMaxHeartbeatGapMs: 0,
      maxHeartbeatGapMs: 0,
      eventLoopMaxDelayMs: Math.round(this.loop.max / 1e6),
      deathReasons: {},
    }
    const now = performance.now()
    for (const n of this.nodes) {
      for (const k of Object.keys(n.counters) as (keyof SimCounters)[]) s[k] += n.counters[k]
      if (n.counters.tasksRun > 0) s.nodesThatRan++
      // A node alive now may be in the middle of its longest silence yet.
      const gap = Math.max(n.maxHeartbeatGapMs, n.alive ? now - n.lastHeartbeatAt : 0)
      s.maxHeartbeatGapMs = Math.max(s.maxHeartbeatGapMs, gap)
      if (n.alive) s.alive++
      else if (n.declaredDead) {
        s.declaredDead++
        s.declaredDeadMaxHeartbeatGapMs = Math.max(s.declaredDeadMaxHeartbeatGapMs, n.maxHeartbeatGapMs)
        const reason = n.closedReason as string
        s.deathReasons[reason] = (s.deathReasons[reason] ?? 0) + 1
      } else s.closed++
    }
    s.maxHeartbeatGapMs = Math.round(s.maxHeartbeatGapMs)
    s.declaredDeadMaxHeartbeatGapMs = Math.round(s.declaredDeadMaxHeartbeatGapMs)
    return s
  }

  /** Forgets the event loop's worst delay so far (to measure one phase). */
  resetLoopDelay(): void {
    this.loop.reset()
  }

  /** Closes every node (as closed tabs), then waits a moment for the close frames to leave. */
  async stop(): Promise<void> {
    this.stopped = true
    this.loop.disable()
    for (const n of this.nodes) if (n.alive) n.close()
    await sleep(50)
  }
}
