import { spawn } from 'node:child_process'
import { connect, type Mesh, type RemoteFunction } from '../sdk/index.ts'
import { type EchoBaseline, echoBaseline } from './sim/echo-baseline.ts'
import type { FleetStats } from './sim/fleet.ts'
import { FleetProcess } from './sim/fleet-process.ts'
import { type CoordinatorProcess, cpuPercentOver, killOnExit, procStat, startCoordinatorProcess, waitFor, within } from './sim/processes.ts'
import { fmt } from './stats.ts'

/**
 * Scale, with simulated nodes (bench/sim: the real node agent on a real socket, with no-op workers), so the
 * coordinator and the driver are measured at sizes no machine could run browser tabs for:
 *
 * - throughput: SHOAL_SCALE_TASKS (default 1,000,000) no-op tasks from one Node driver on 10 sim nodes × 4 CPUs,
 *   submitted SHOAL_SCALE_CHUNK at a time (default all 1,000,000 at once: the issue's "1 M queued"), every value checked; time, tasks/s, driver and
 *   coordinator RSS. Chunks stop once SHOAL_SCALE_BUDGET_S (default 300) seconds have passed, and the output says so.
 * - fleet: SHOAL_SCALE_NODES (default 10,000) sim nodes × 1 CPU: time until listNodes shows them all ALIVE, the
 *   coordinator's CPU over 10 s idle (heartbeats only), then SHOAL_SCALE_RUN_TASKS (default 100,000) tasks from one
 *   driver, counting nodes declared DEAD while alive and well (the sim nodes know they are alive), during the run and
 *   the 6 s after it.
 * - baseline: a bare msgpack WebSocket echo through a trivial relay in a child process, with frames of the size of a
 *   push: the ceiling of relayed traffic on this machine.
 *
 * The coordinator runs in a child process of its own per part (`shoal start`), read from /proc/<pid>; the fleet in
 * another (so the driver's RSS is the driver's). Drivers use `peerLinks: 'relay'`: sim nodes have no WebRTC.
 * SHOAL_SCALE_ONLY=throughput,fleet,baseline runs some parts only.
 */

const NODES_TPUT = 10
const CPUS_TPUT = 4
const IDLE_MS = 10_000
const AFTER_RUN_MS = 6_000

function envInt(key: string, fallback: number): number {
  const raw = process.env[key]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw.replace(/[_,]/g, ''))
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${key} must be a positive whole number (got '${raw}')`)
  return n
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const mib = (bytes: number) => Math.round(bytes / 1024 / 1024)

type Noop = RemoteFunction<(x: number) => number>

/** Submits `n` no-op tasks (values base..base+n-1), gets them all (bounded), and returns how many came back wrong. */
async function runTasks(mesh: Mesh, noop: Noop, base: number, n: number, timeoutMs: number): Promise<number> {
  const refs = Array.from({ length: n }, (_, i) => noop.remote(base + i))
  const values = await mesh.get(refs, { timeout: timeoutMs })
  let wrong = 0
  for (let i = 0; i < n; i++) if (values[i] !== base + i) wrong++
  return wrong
}

/** Samples this process's and the coordinator's RSS every 250 ms; their peaks. */
function rssSampler(coordinatorPid: number) {
  const peak = { driver: process.memoryUsage().rss, coordinator: 0 }
  const sample = () => {
    peak.driver = Math.max(peak.driver, process.memoryUsage().rss)
    try {
      peak.coordinator = Math.max(peak.coordinator, procStat(coordinatorPid).rssBytes)
    } catch {
      // It exited: the part fails on its own.
    }
  }
  sample()
  const timer = setInterval(sample, 250)
  return {
    peak,
    stop() {
      clearInterval(timer)
      sample()
    },
  }
}

/**
 * How fast the coordinator answers a plain HTTP request while it works (its event loop's health), every 500 ms, from
 * a small process of its own (this one is busy being the driver: its own stalls must not count as the coordinator's).
 */
function latencyProbe(url: string) {
  const code = `setInterval(async () => {
    const t0 = performance.now()
    try { await fetch(${JSON.stringify(`${url}/healthz`)}, { signal: AbortSignal.timeout(15000) }); console.log(performance.now() - t0) }
    catch { console.log(15000) }
  }, 500)`
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] })
  killOnExit(child)
  const lat: number[] = []
  child.stdout.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (line.trim()) lat.push(Number(line))
  })
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    async stop() {
      child.kill('SIGTERM')
      await within(gone, 10_000, 'the latency probe to exit')
      const sorted = [...lat].sort((a, b) => a - b)
      return {
        probes: lat.length,
        maxMs: Math.round(sorted.at(-1) ?? 0),
        p50Ms: Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0),
        over1s: lat.filter((x) => x > 1000).length,
      }
    },
  }
}

async function withCluster<T>(fn: (coordinator: CoordinatorProcess, fleet: FleetProcess) => Promise<T>): Promise<T> {
  const coordinator = await startCoordinatorProcess()
  let fleet: FleetProcess | undefined
  try {
    fleet = await FleetProcess.spawn()
    return await fn(coordinator, fleet)
  } catch (e) {
    const tail = coordinator.tail()
    if (tail) (e as Error).message += `\n--- the coordinator's last lines ---\n${tail}`
    throw e
  } finally {
    await fleet?.stop()
    await coordinator.stop()
  }
}

async function status(url: string): Promise<{ nodes: { alive: number; dead: number } }> {
  const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(10_000) })
  return (await res.json()) as { nodes: { alive: number; dead: number } }
}

const noopOf = (mesh: Mesh): Noop =>
  mesh.remote(function noop(x: number) {
    return x
  })

async function throughput(cfg: { tasks: number; chunk: number; budgetS: number }) {
  return withCluster(async (coordinator, fleet) => {
    await fleet.start({ address: coordinator.url, nodes: NODES_TPUT, cpus: CPUS_TPUT, namePrefix: 'tput' }, 60_000)
    const mesh = await connect({ address: coordinator.url, peerLinks: 'relay' })
    try {
      const noop = noopOf(mesh)
      const warmUp = Math.min(10_000, cfg.tasks)
      if ((await runTasks(mesh, noop, 0, warmUp, 120_000)) > 0) throw new Error('the warm-up got wrong values back')
      const cpu0 = procStat(coordinator.pid).cpuSeconds
      const before = await fleet.stats()
      const rss = rssSampler(coordinator.pid)
      const t0 = performance.now()
      let done = 0
      let wrong = 0
      let stoppedEarly = false
      while (done < cfg.tasks) {
        const n = Math.min(cfg.chunk, cfg.tasks - done)
        // A chunk gets at least 2 minutes, and 10 ms per task beyond that: far slower than this machine's worst.
        wrong += await runTasks(mesh, noop, done, n, Math.max(120_000, n * 10))
        done += n
        if (done < cfg.tasks && performance.now() - t0 > cfg.budgetS * 1000) {
          stoppedEarly = true
          break
        }
      }
      const elapsedMs = performance.now() - t0
      rss.stop()
      const coordinatorCpuPercent = ((procStat(coordinator.pid).cpuSeconds - cpu0) / (elapsedMs / 1000)) * 100
      const after = await fleet.stats()
      const framesIn = after.framesIn - before.framesIn
      const result = {
        nodes: NODES_TPUT,
        cpusPerNode: CPUS_TPUT,
        tasksAsked: cfg.tasks,
        tasks: done,
        chunk: cfg.chunk,
        stoppedEarly: stoppedEarly ? `stopped after ${done} tasks: the ${cfg.budgetS} s budget (SHOAL_SCALE_BUDGET_S) was spent` : null,
        elapsedMs: Math.round(elapsedMs),
        tasksPerSec: Math.round(done / (elapsedMs / 1000)),
        wrongValues: wrong,
        allCorrect: wrong === 0,
        driverPeakRssMiB: mib(rss.peak.driver),
        coordinatorPeakRssMiB: mib(rss.peak.coordinator),
        coordinatorRssNowMiB: mib(procStat(coordinator.pid).rssBytes),
        coordinatorCpuPercent: Math.round(coordinatorCpuPercent),
        sim: {
          tasksRun: after.tasksRun - before.tasksRun,
          resultsSent: after.resultsSent - before.resultsSent,
          pushesIn: after.pushesIn - before.pushesIn,
          framesIn,
          framesOut: after.framesOut - before.framesOut,
          avgFrameInBytes: framesIn ? Math.round((after.bytesIn - before.bytesIn) / framesIn) : 0,
          errors: after.errors,
          declaredDead: after.declaredDead,
        },
      }
      return result
    } finally {
      await mesh.close()
    }
  })
}

async function fleetScale(cfg: { nodes: number; runTasks: number }) {
  return withCluster(async (coordinator, fleet) => {
    const { url } = coordinator
    const concurrency = 256
    const t0 = performance.now()
    const started = fleet.start({ address: url, nodes: cfg.nodes, cpus: 1, namePrefix: 'fleet', concurrency }, 600_000)
    // Counted from the coordinator's side: every node ALIVE in its table (a cheap status poll, then listNodes).
    const polling = new AbortController()
    const allAlive = waitFor(
      async () => ((await status(url)).nodes.alive >= cfg.nodes ? performance.now() : undefined),
      600_000,
      `${cfg.nodes} sim nodes ALIVE in the coordinator's /api/status`,
      250,
      polling.signal,
    )
    const [aliveAt] = await Promise.all([allAlive, started]).finally(() => polling.abort())
    const mesh = await connect({ address: url, peerLinks: 'relay', timeout: 30_000 })
    try {
      const alive = await within(mesh.state.listNodes({ filters: [['state', '=', 'ALIVE']], limit: cfg.nodes * 2 }), 60_000, 'listNodes')
      const registerMs = performance.now() - t0
      if (alive.length !== cfg.nodes) throw new Error(`listNodes shows ${alive.length} ALIVE nodes, not ${cfg.nodes}`)

      // Idle: nothing but heartbeats (each node's every second).
      await sleep(2000)
      await fleet.resetLoopDelay()
      const beatsBefore = (await fleet.stats()).heartbeatsSent
      const [coordinatorIdleCpu, fleetIdleCpu] = await Promise.all([
        cpuPercentOver(coordinator.pid, IDLE_MS),
        cpuPercentOver(fleet.pid, IDLE_MS),
      ])
      const idle = { stats: await fleet.stats(), coordinator: procStat(coordinator.pid) }

      // A run of tasks from one driver, while every node keeps beating.
      const probe = latencyProbe(url)
      const rss = rssSampler(coordinator.pid)
      const cpu0 = procStat(coordinator.pid).cpuSeconds
      const deadBefore = idle.stats.declaredDead
      const t1 = performance.now()
      const wrong = await runTasks(mesh, noopOf(mesh), 0, cfg.runTasks, Math.max(300_000, cfg.runTasks * 10))
      const runMs = performance.now() - t1
      const coordinatorRunCpu = ((procStat(coordinator.pid).cpuSeconds - cpu0) / (runMs / 1000)) * 100
      await sleep(AFTER_RUN_MS)
      rss.stop()
      const latency = await probe.stop()
      const stats: FleetStats = await fleet.stats()

      // The coordinator's view: nodes it lists DEAD that the simulator never stopped (each one alive and well).
      const rows = await within(mesh.state.listNodes({ limit: cfg.nodes * 2 }), 60_000, 'listNodes')
      const ids = await fleet.nodeIds()
      const neverStopped = new Set(ids.filter((n) => n.alive || n.declaredDead).map((n) => n.nodeId))
      const listedDead = rows.filter((r) => r.state === 'DEAD' && neverStopped.has(r.nodeId))
      return {
        nodes: cfg.nodes,
        cpusPerNode: 1,
        ramp: { concurrency },
        registerMs: Math.round(registerMs),
        statusAllAliveMs: Math.round(aliveAt - t0),
        fleetStartMs: Math.round((await started).startMs),
        idle: {
          windowMs: IDLE_MS,
          coordinatorCpuPercent: Math.round(coordinatorIdleCpu * 10) / 10,
          coordinatorRssMiB: mib(idle.coordinator.rssBytes),
          fleetCpuPercent: Math.round(fleetIdleCpu * 10) / 10,
          heartbeatsPerSec: Math.round((idle.stats.heartbeatsSent - beatsBefore) / (IDLE_MS / 1000)),
          declaredDead: idle.stats.declaredDead,
        },
        run: {
          tasks: cfg.runTasks,
          elapsedMs: Math.round(runMs),
          tasksPerSec: Math.round(cfg.runTasks / (runMs / 1000)),
          wrongValues: wrong,
          allCorrect: wrong === 0,
          nodesThatRan: stats.nodesThatRan,
          coordinatorCpuPercent: Math.round(coordinatorRunCpu),
          coordinatorPeakRssMiB: mib(rss.peak.coordinator),
          healthzLatency: latency,
          falselyDeclaredDead: stats.declaredDead - deadBefore,
          falselyDeclaredDeadTotal: stats.declaredDead,
          listedDeadWhileAlive: listedDead.length,
          deathReasons: Object.fromEntries(coordinator.deaths),
          deadNodesMaxHeartbeatGapMs: stats.declaredDeadMaxHeartbeatGapMs,
          simMaxHeartbeatGapMs: stats.maxHeartbeatGapMs,
          simEventLoopMaxDelayMs: stats.eventLoopMaxDelayMs,
          simErrors: stats.errors,
        },
      }
    } finally {
      await mesh.close()
    }
  })
}

export async function benchScale() {
  const only = (process.env.SHOAL_SCALE_ONLY ?? 'throughput,fleet,baseline').split(',').map((s) => s.trim())
  const cfg = {
    tasks: envInt('SHOAL_SCALE_TASKS', 1_000_000),
    chunk: envInt('SHOAL_SCALE_CHUNK', 1_000_000),
    budgetS: envInt('SHOAL_SCALE_BUDGET_S', 300),
    nodes: envInt('SHOAL_SCALE_NODES', 10_000),
    runTasks: envInt('SHOAL_SCALE_RUN_TASKS', 100_000),
  }
  console.log(`scale (simulated nodes, bench/sim; the coordinator in a process of its own; drivers relay through it)`)
  const baseline: EchoBaseline | undefined = only.includes('baseline') ? await echoBaseline() : undefined
  if (baseline) {
    const b = baseline
    console.log(
      `  baseline: bare msgpack ws relay echo, ${b.pushFrameBytes}-byte push messages: ${fmt(b.singleMessagesPerSec.median)} msgs/s one per frame (${b.window} in flight), ${fmt(b.batchedMessagesPerSec.median)} msgs/s ${b.batch} per frame`,
    )
    console.log(
      `            → ceiling of relayed tasks (a push and a result each): ~${fmt(b.singleMessagesPerSec.median / 2)} /s unbatched, ~${fmt(b.batchedMessagesPerSec.median / 2)} /s batched`,
    )
  }
  const tput = only.includes('throughput') ? await throughput(cfg) : undefined
  if (tput) {
    console.log(
      `  ${fmt(tput.tasks)} no-op tasks, one Node driver, ${tput.nodes} sim nodes × ${tput.cpusPerNode} CPUs: ${(tput.elapsedMs / 1000).toFixed(1)} s, ${fmt(tput.tasksPerSec)} tasks/s, ${tput.allCorrect ? 'every value correct' : `${fmt(tput.wrongValues)} WRONG values`}`,
    )
    console.log(
      `      driver RSS peak ${fmt(tput.driverPeakRssMiB)} MiB · coordinator RSS peak ${fmt(tput.coordinatorPeakRssMiB)} MiB · coordinator CPU ${tput.coordinatorCpuPercent}% of a core · ${fmt(tput.sim.framesIn)} frames in to the nodes (avg ${fmt(tput.sim.avgFrameInBytes)} B), ${fmt(tput.sim.framesOut)} out`,
    )
    if (tput.stoppedEarly) console.log(`      NOTE: ${tput.stoppedEarly}`)
  }
  const fleet = only.includes('fleet') ? await fleetScale(cfg) : undefined
  if (fleet) {
    const r = fleet.run
    console.log(
      `  ${fmt(fleet.nodes)} sim nodes × 1 CPU: all ALIVE in listNodes after ${(fleet.registerMs / 1000).toFixed(1)} s · coordinator idle CPU ${fleet.idle.coordinatorCpuPercent}% of a core over ${IDLE_MS / 1000} s (${fmt(fleet.idle.heartbeatsPerSec)} heartbeats/s), RSS ${fmt(fleet.idle.coordinatorRssMiB)} MiB · the fleet's own CPU ${fleet.idle.fleetCpuPercent}%`,
    )
    console.log(
      `      ${fmt(r.tasks)}-task run: ${(r.elapsedMs / 1000).toFixed(1)} s (${fmt(r.tasksPerSec)} tasks/s on ${fmt(r.nodesThatRan)} nodes), ${r.allCorrect ? 'every value correct' : `${fmt(r.wrongValues)} WRONG values`} · healthy nodes declared DEAD: ${fmt(r.falselyDeclaredDead)} (listNodes: ${fmt(r.listedDeadWhileAlive)}) · /healthz max ${fmt(r.healthzLatency.maxMs)} ms`,
    )
  }
  if (tput && !tput.allCorrect) throw new Error(`the throughput run got ${tput.wrongValues} wrong values back`)
  if (fleet && !fleet.run.allCorrect) throw new Error(`the fleet run got ${fleet.run.wrongValues} wrong values back`)
  const notes = [
    'sim nodes: the real node agent (worker-page/node/agent.ts) on a real WebSocket, with no-op workers (a task ends in the next macrotask with its first argument as its value)',
    'coordinator: `shoal start` in a child process per part; CPU from /proc/<pid>/stat (utime + stime), RSS from /proc/<pid>/status',
    'driver: this process, connect({ peerLinks: "relay" }) (sim nodes have no WebRTC): every push and result crosses the coordinator',
    'the fleet runs in a child process of its own; falsely DEAD = closed by the coordinator as dead while the sim node was alive and beating',
  ]
  return { config: cfg, throughput: tput, fleet, baseline, notes }
}
