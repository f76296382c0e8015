import { Cluster } from '../coordinator/cluster.ts'
import type { ActorHandleBase } from '../sdk/actor-handle.ts'
import { encodeValue } from '../sdk/codec.ts'
import { TaskError, type WireError } from '../sdk/errors.ts'
import { resetRandomPool } from '../sdk/ids.ts'
import type { ExecResult } from '../sdk/protocol/index.ts'
import { RESOURCE_UNITS, type ResourceUnits, toUnits } from '../sdk/resources.ts'
import { MemoryNetwork } from './network.ts'
import { Rng } from './rng.ts'
import { SimDriver, type Submitted } from './sim-driver.ts'
import { type Execution, SimNode } from './sim-node.ts'
import { SimTime } from './sim-time.ts'

export interface SimOptions {
  seed: number
  /** Random steps before the run settles (default 300). */
  steps?: number
  /** Nodes at the start (default 3). */
  nodes?: number
  /** Drivers at the start (default 2). */
  drivers?: number
}

/** What the simulation knows of every task it submitted, to check what nodes do with it. */
interface TaskInfo {
  units: ResourceUnits
  driver: SimDriver
  submitted: Submitted
  /** For an actor call: its actor and whether that actor runs one call at a time. */
  actorId?: string
  ordered?: boolean
}

const HEARTBEAT_MS = 1000
const STEP_MS = 50
const TASK_SOURCE = function simTask(x: unknown) {
  return x
}
class SimActor {
  m(x: unknown) {
    return x
  }
}

/**
 * A deterministic simulation of the control plane, the way FoundationDB and TigerBeetle test theirs: the real
 * coordinator, real node agents (with simulated workers) and real driver SDKs, in one process, over a simulated
 * network whose delivery order, delays and failures come from one seed. After every step it checks the safety
 * invariants; at the end it lets everything settle and checks that nothing is left waiting and everything was given
 * back. A failing seed replays exactly.
 */
export class Simulation {
  readonly rng: Rng
  /** The only clock and timers the participants see while the simulation runs (see SimTime). */
  readonly time = new SimTime()
  readonly cluster: Cluster
  readonly network: MemoryNetwork
  readonly nodes: SimNode[] = []
  readonly drivers: SimDriver[] = []
  readonly violations: string[] = []
  /** The last steps taken, for the report of a failing seed. */
  readonly trace: string[] = []
  /** What the participants printed (warnings of infeasible tasks…): kept for the report, not printed. */
  readonly console: string[] = []
  private tasks = new Map<string, TaskInfo>()
  /** Per actor incarnation (its worker), the calls started, by caller: each caller's must start in its order. */
  private started = new Map<string, Map<SimDriver, number>>()
  private names = 0
  private nextBeat = HEARTBEAT_MS

  constructor(private readonly opts: SimOptions) {
    this.rng = new Rng(opts.seed)
    this.cluster = new Cluster({ log: () => {}, monitor: false, now: () => this.time.now, heartbeatTimeoutMs: 5 * HEARTBEAT_MS })
    this.network = new MemoryNetwork(this.cluster)
  }

  /** Sim time (ms): it moves only by ticks. */
  get clock(): number {
    return this.time.now
  }

  /** Runs the seed to the end and returns the violations found (none is a pass). */
  async run(): Promise<string[]> {
    const restore = this.takeRandomness()
    try {
      for (let i = 0; i < (this.opts.nodes ?? 3); i++) this.addNode(this.rng.pick([1, 2, 4]))
      for (let i = 0; i < (this.opts.drivers ?? 2); i++) this.addDriver()
      await this.settleFrames()
      const steps = this.opts.steps ?? 300
      for (let i = 0; i < steps && !this.violations.length; i++) {
        await this.step()
        this.checkSafety()
      }
      if (!this.violations.length) await this.finish()
    } catch (e) {
      this.violations.push(`the simulation threw: ${(e as Error).stack}`)
    } finally {
      this.cluster.close()
      restore()
    }
    return this.violations
  }

  /**
   * Ids come from crypto.getRandomValues: during the run they come from the seed instead, so it replays exactly. The
   * clock and the timers are the simulation's (SimTime): neither the machine's speed nor its load changes a run.
   * Stack traces are not captured meanwhile (errors are made by the thousand; their stacks change nothing), and what
   * the participants print is kept for the report.
   */
  private takeRandomness(): () => void {
    const restoreTime = this.time.install()
    const { warn, error } = console
    console.warn = (...a: unknown[]) => void this.console.push(a.join(' '))
    console.error = (...a: unknown[]) => void this.console.push(a.join(' '))
    const stackTraceLimit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    const crypto = globalThis.crypto
    const original = crypto.getRandomValues
    // Ids are cut from a pool of random bytes (sdk/ids.ts) that outlives a run: what the run before left in it would
    // make this one's ids. Emptied now, the pool's first refill comes from this seed, whatever ran before in this process.
    resetRandomPool()
    Object.defineProperty(crypto, 'getRandomValues', {
      configurable: true,
      value: <T extends ArrayBufferView | null>(a: T): T => {
        if (a) this.rng.fill(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
        return a
      },
    })
    return () => {
      restoreTime()
      console.warn = warn
      console.error = error
      Error.stackTraceLimit = stackTraceLimit
      Object.defineProperty(crypto, 'getRandomValues', { configurable: true, value: original })
    }
  }

  private note(what: string): void {
    this.trace.push(`t=${this.clock} ${what}`)
    if (this.trace.length > (Number(process.env.SHOAL_SIM_TRACE) || 60)) this.trace.shift()
  }

  // ---- the actors of the world ----

  private addNode(cpus: number): SimNode {
    const n: SimNode = new SimNode(
      this.network,
      `node-${this.names++}`,
      cpus,
      (e) => this.onStart(e),
      (m) => {
        if (m.type === 'assign')
          for (const t of m.tasks)
            this.note(`${n.name} is assigned ${t.type} ${t.taskId.slice(0, 8)}#${t.attempt} (${(t.units.CPU ?? 0) / RESOURCE_UNITS} CPU)`)
      },
    )
    this.nodes.push(n)
    this.note(`${n.name} joins with ${cpus} CPU`)
    return n
  }

  private addDriver(): SimDriver {
    const d = new SimDriver(this.network, `driver-${this.names++}`)
    this.drivers.push(d)
    this.note(`${d.name} connects`)
    return d
  }

  // ---- one step ----

  private async step(): Promise<void> {
    const r = this.rng.next()
    if (r < 0.45) this.network.deliverOne(this.rng)
    else if (r < 0.62) this.completeOne()
    else if (r < 0.72) this.submitTasks()
    else if (r < 0.77) this.actorWork()
    else if (r < 0.775) this.putOne()
    else if (r < 0.78) this.freeOne()
    else if (r < 0.79) this.cancelOne()
    else if (r < 0.8) this.killActor()
    else if (r < 0.81) this.crashWorker()
    else if (r < 0.815) this.killNode()
    else if (r < 0.818) this.freezeNode()
    else if (r < 0.822) await this.driverLeaves()
    else await this.tick()
    await drain()
  }

  /**
   * Sim time passes: the participants' timers due meanwhile run (event flushes, a lease's linger, a re-ask after a
   * refusal…), heartbeats go out, and the coordinator judges who is silent.
   */
  private async tick(): Promise<void> {
    await this.time.advance(this.clock + STEP_MS, drain)
    if (this.clock < this.nextBeat) return
    this.nextBeat += HEARTBEAT_MS
    for (const n of this.nodes) if (n.alive && !n.frozen) n.agent?.sendHeartbeat()
    this.cluster.checkHeartbeats()
  }

  private liveDrivers(): SimDriver[] {
    return this.drivers.filter((d) => d.alive && d.mesh)
  }

  private submitTasks(): void {
    const d = this.liveDrivers()
    if (!d.length) return
    const driver = this.rng.pick(d)
    const mesh = driver.mesh as NonNullable<SimDriver['mesh']>
    const count = 1 + this.rng.int(4)
    for (let i = 0; i < count; i++) {
      const cpus = this.rng.pick([0, 0.25, 0.5, 1, 1, 2])
      const f = mesh.remote(TASK_SOURCE).options({
        numCpus: cpus,
        maxRetries: this.rng.pick([0, 1, 3]),
        retryExceptions: this.rng.chance(0.3),
        ...(this.rng.chance(0.1) && { schedulingStrategy: 'SPREAD' as const }),
      })
      const earlier = driver.submitted.filter((s) => s.kind === 'task' || (s.kind === 'put' && s.settled))
      const dep = earlier.length && this.rng.chance(0.35) ? this.rng.pick(earlier) : undefined
      const nested = earlier.length && this.rng.chance(0.25) ? this.rng.pick(earlier) : undefined
      // A top-level ref is a dependency; a ref inside a list is only passed along (it must not hold the task back).
      const arg = dep ? dep.ref : nested ? [nested.ref] : i
      const ref = f.remote(arg as never)
      const s = driver.track(ref, 'task', dep ? [dep.taskId] : [])
      this.tasks.set(s.taskId, { units: toUnits({ CPU: cpus }), driver, submitted: s })
      this.note(`${driver.name} submits ${s.taskId.slice(0, 8)} (${cpus} CPU${dep ? `, after ${dep.taskId.slice(0, 8)}` : ''})`)
    }
  }

  private actorWork(): void {
    const d = this.liveDrivers()
    if (!d.length) return
    const driver = this.rng.pick(d)
    const mesh = driver.mesh as NonNullable<SimDriver['mesh']>
    const live = driver.actors.filter((a) => !a.creation.settled?.error)
    if (!live.length || (live.length < 3 && this.rng.chance(0.3))) {
      const maxConcurrency = this.rng.pick([1, 1, 3])
      const cpus = this.rng.pick([0, 0.5, 1])
      const handle = mesh
        .remote(SimActor)
        .options({ maxConcurrency, numCpus: cpus, maxRestarts: this.rng.pick([0, 1, -1]), maxTaskRetries: this.rng.pick([0, 2]) })
        .remote()
      const creation = driver.track(handle.ready() as NonNullable<ReturnType<typeof handle.ready>>, 'create', [], handle.actorId)
      this.tasks.set(creation.taskId, { units: toUnits({ CPU: cpus }), driver, submitted: creation })
      driver.actors.push({ handle, actorId: handle.actorId, maxConcurrency, creation })
      this.note(`${driver.name} creates actor ${handle.actorId.slice(0, 8)} (maxConcurrency ${maxConcurrency}, ${cpus} CPU)`)
      return
    }
    const a = this.rng.pick(live)
    const calls = 1 + this.rng.int(3)
    for (let i = 0; i < calls; i++) {
      const ref = (a.handle as unknown as { m: { remote(x: number): NonNullable<Submitted['ref']> } }).m.remote(i)
      const s = driver.track(ref, 'call', [], a.actorId)
      this.tasks.set(s.taskId, { units: {}, driver, submitted: s, actorId: a.actorId, ordered: a.maxConcurrency === 1 })
    }
    this.note(`${driver.name} calls actor ${a.actorId.slice(0, 8)} ${calls} time(s)`)
  }

  /** A small put (its ref is then passed to tasks like any other). The reply comes when the simulation delivers it. */
  private putOne(): void {
    const d = this.liveDrivers()
    if (!d.length) return
    const driver = this.rng.pick(d)
    const value = { put: driver.name, n: driver.submitted.length }
    void driver.mesh?.put(value).then(
      (ref) => {
        const s = driver.track(ref, 'put')
        this.note(`${driver.name} put ${s.taskId.slice(0, 8)}`)
      },
      () => {},
    )
  }

  /** `free` of something made: whoever reads it later gets ObjectFreedError, tasks that need it fail the same. */
  private freeOne(): void {
    const d = this.liveDrivers()
    if (!d.length) return
    const driver = this.rng.pick(d)
    const made = driver.submitted.filter((s) => s.settled && s.kind !== 'create')
    if (!made.length) return
    const s = this.rng.pick(made)
    this.note(`${driver.name} frees ${s.taskId.slice(0, 8)}`)
    void driver.mesh?.free([s.ref]).catch(() => {})
  }

  private cancelOne(): void {
    const d = this.liveDrivers()
    if (!d.length) return
    const driver = this.rng.pick(d)
    const open = driver.submitted.filter((s) => !s.settled && s.kind !== 'create')
    if (!open.length) return
    const s = this.rng.pick(open)
    s.cancelled = true
    this.note(`${driver.name} cancels ${s.taskId.slice(0, 8)}`)
    // Its reply comes only when the simulation delivers it: the step goes on without waiting.
    void driver.mesh?.cancel(s.ref, { force: this.rng.chance(0.5) }).catch(() => {})
  }

  private killActor(): void {
    const d = this.liveDrivers()
    const withActors = d.filter((x) => x.actors.length)
    if (!withActors.length) return
    const driver = this.rng.pick(withActors)
    const a = this.rng.pick(driver.actors)
    const noRestart = this.rng.chance(0.7)
    this.note(`${driver.name} kills actor ${a.actorId.slice(0, 8)}${noRestart ? '' : ' (it may restart)'}`)
    void driver.mesh?.kill(a.handle as ActorHandleBase, { noRestart }).catch(() => {})
  }

  private executions(): Execution[] {
    return this.nodes.flatMap((n) => (n.alive && !n.frozen ? n.executions : []))
  }

  /** Ends a random execution: mostly with a value, sometimes with an exception of the user's code. */
  private completeOne(outcomes = true): void {
    const all = this.executions()
    if (!all.length) return
    const e = this.rng.pick(all)
    const t = e.task
    const fail = outcomes && this.rng.chance(e.kind === 'create' ? 0.1 : 0.15)
    let r: ExecResult
    if (fail) {
      const error: WireError = new TaskError(t.name, t.taskId, 'SimError', `simulated failure of attempt ${t.attempt}`, undefined).toWire()
      r = { ok: false, error, userError: true }
    } else r = { ok: true, returns: [encodeValue({ taskId: t.taskId, attempt: t.attempt }, 'result')] }
    this.note(`${e.node.name} ends ${e.kind} ${t.taskId.slice(0, 8)}#${t.attempt}: ${fail ? 'throws' : 'ok'}`)
    e.node.complete(e, r)
  }

  private crashWorker(): void {
    const all = this.executions()
    if (!all.length) return
    const e = this.rng.pick(all)
    this.note(`${e.node.name}: the worker running ${e.kind} ${e.task.taskId.slice(0, 8)} crashes`)
    e.node.workers.crash(e.slot)
  }

  /** A node's tab closes (its socket drops at once); a new one joins, as volunteers come and go. */
  private killNode(): void {
    const alive = this.nodes.filter((n) => n.alive)
    if (alive.length <= 1) return
    const n = this.rng.pick(alive)
    this.note(`${n.name} dies`)
    this.network.close(n.link, 'simulated tab close')
    this.addNode(this.rng.pick([1, 2, 4]))
  }

  /** A node stops answering (it will be declared dead by missed heartbeats); a new one joins. */
  private freezeNode(): void {
    const alive = this.nodes.filter((n) => n.alive && !n.frozen)
    if (alive.length <= 1) return
    const n = this.rng.pick(alive)
    n.frozen = true
    this.note(`${n.name} freezes`)
    this.addNode(this.rng.pick([1, 2, 4]))
  }

  /** A driver closes its connection (gracefully, or its tab dies); another one arrives. */
  private async driverLeaves(): Promise<void> {
    const d = this.liveDrivers()
    if (d.length <= 1) {
      this.addDriver()
      return
    }
    const driver = this.rng.pick(d)
    if (this.rng.chance(0.5)) {
      this.note(`${driver.name} closes`)
      await driver.mesh?.close()
    } else {
      this.note(`${driver.name}'s tab dies`)
      this.network.close(driver.link, 'simulated driver crash')
    }
    this.addDriver()
  }

  // ---- invariants ----

  /** An execution starts on a node: record who runs what, for the checks. */
  private onStart(e: Execution): void {
    this.note(`${e.node.name} starts ${e.kind} ${e.task.taskId.slice(0, 8)}#${e.task.attempt}`)
    const info = this.tasks.get(e.task.taskId)
    if (!info) return this.violate(`${e.node.name} runs ${e.task.taskId}, which no driver submitted`)
    if (e.kind !== 'call' || !info.ordered) return
    // maxConcurrency 1: each caller's calls start in the order it submitted them, within one incarnation.
    let byCaller = this.started.get(e.slot.id)
    if (!byCaller) this.started.set(e.slot.id, (byCaller = new Map()))
    const last = byCaller.get(info.driver) ?? -1
    if (info.submitted.seq < last)
      this.violate(`actor ${info.actorId?.slice(0, 8)}: call #${info.submitted.seq} of ${info.driver.name} started after call #${last}`)
    byCaller.set(info.driver, Math.max(last, info.submitted.seq))
  }

  private violate(what: string): void {
    this.violations.push(`${what} (at t=${this.clock})`)
  }

  /** After every step: no node runs more than its CPUs; no value reaches a driver twice; values are the right ones. */
  private checkSafety(): void {
    for (const n of this.nodes) {
      if (!n.alive) continue
      let used = 0
      for (const e of n.executions) if (e.kind === 'task') used += this.tasks.get(e.task.taskId)?.units.CPU ?? 0
      for (const slot of n.workers.slots) {
        if (!slot.actorId) continue
        const creation = [...this.tasks.values()].find((t) => t.submitted.kind === 'create' && t.submitted.actorId === slot.actorId)
        used += creation?.units.CPU ?? 0
      }
      if (used > (n.total.CPU ?? 0)) this.violate(`${n.name} runs ${used / RESOURCE_UNITS} CPUs of work with ${n.cpus} CPUs`)
    }
    for (const d of this.drivers) {
      for (const [id, count] of d.updates) if (count > 1) this.violate(`${d.name} received object ${id.slice(0, 12)} ${count} times`)
      for (const s of d.submitted) {
        const v = s.settled?.value as { taskId?: string } | undefined
        if (v && (s.kind === 'task' || s.kind === 'call') && v.taskId !== s.taskId)
          this.violate(`${d.name}: ${s.taskId.slice(0, 8)} resolved to ${v.taskId}`)
      }
    }
  }

  /**
   * The run settles: no more faults, a node big enough for anything joins, every frame is delivered and every
   * execution ends. Then nothing a live driver waits for may still be pending; then every driver leaves, and
   * everything must be given back: no task, object or live actor left, every node's resources whole.
   */
  private async finish(): Promise<void> {
    this.addNode(64)
    await this.settle()
    for (const d of this.liveDrivers()) {
      for (const s of d.submitted) {
        if (s.settled) continue
        const row = this.cluster.events.get(s.taskId)
        this.violate(`${d.name}: ${s.kind} ${s.taskId.slice(0, 8)} is still pending with nothing left to do (${row?.state ?? 'no row'})`)
      }
    }
    for (const d of this.drivers) if (d.alive) await d.mesh?.close()
    await this.settle()
    const c = this.cluster
    if (c.tasks.pending) this.violate(`${c.tasks.pending} task(s) still tracked by the coordinator after every job ended`)
    if (c.leases.count) this.violate(`${c.leases.count} lease(s) still granted after every job ended`)
    if (c.events.live) this.violate(`${c.events.live} task row(s) still live after every job ended`)
    if (c.objects.size) this.violate(`${c.objects.size} object(s) still in the directory after every job ended`)
    for (const a of c.actors.rows())
      if (a.state !== 'DEAD') this.violate(`actor ${a.actorId.slice(0, 8)} is ${a.state} after its job ended`)
    for (const n of this.nodes) {
      if (!n.alive || !n.nodeId) continue
      const rec = c.nodes.get(n.nodeId)
      if (rec?.state === 'ALIVE' && JSON.stringify(rec.available) !== JSON.stringify(rec.total))
        this.violate(`${n.name}: the coordinator counts ${JSON.stringify(rec.available)} free of ${JSON.stringify(rec.total)}`)
      const leases = n.agent?.leaseIds ?? []
      if (rec?.state === 'ALIVE' && leases.length) this.violate(`${n.name} still holds ${leases.length} lease(s) after every job ended`)
      if (n.executions.length) this.violate(`${n.name} still runs ${n.executions.length} execution(s)`)
    }
  }

  /** Delivers, completes and lets time pass until nothing moves any more (bounded). */
  private async settle(): Promise<void> {
    let quiet = 0
    for (let i = 0; i < 20_000; i++) {
      if (this.network.deliverOne(this.rng)) {
        await drain()
        continue
      }
      if (this.executions().length) {
        this.completeOne(false)
        await drain()
        continue
      }
      // Quiet: let time pass, so silent nodes are declared dead and work a node cannot start goes back (bounded).
      const frozen = this.nodes.some((n) => n.alive && n.frozen)
      const waiting = this.liveDrivers().some((d) => d.submitted.some((s) => !s.settled))
      if ((!frozen && !waiting) || ++quiet > 30) return
      for (let k = 0; k < HEARTBEAT_MS / STEP_MS; k++) await this.tick()
      await drain()
    }
    this.violate('the run did not settle within 20,000 steps')
  }

  private async settleFrames(): Promise<void> {
    while (this.network.deliverOne(this.rng)) await drain()
  }
}

/** Runs every microtask (and anything queued with setImmediate before): a step's consequences, all of them. */
const drain = () => new Promise<void>((r) => setImmediate(r))
