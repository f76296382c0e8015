import type { BenchCluster } from './cluster.ts'
import { fmt, median } from './stats.ts'

const ASYNC_TASKS = 4000
const SYNC_TRIPS = 400
const RUNS = 5

/** What the driver page measures, in the page (it imports the SDK the coordinator serves, as a web app would). */
type PageBench = {
  asyncTasksPerSec: number[]
  syncRoundTripsPerSec: number[]
  dataChannelPingsPerSec: number[]
  peerStats: { direct: number; relay: number }
}

/**
 * Task throughput from a browser driver: a page on the coordinator's origin imports `/sdk.js`, connects, and runs
 * the same shapes as the Node driver's benchmark (submit N no-op tasks then get them all; get(f.remote()) in a loop),
 * beside a bare comlink pool of one node's size in a page of the same browser.
 */
export async function benchTasksFromPage(c: BenchCluster, cpusPerNode: number) {
  const context = await c.browser.newContext()
  // Without this grant Chromium offers no loopback ICE candidate, and no data channel opens (docs/platform.md).
  await context.grantPermissions(['camera', 'microphone'], { origin: c.url })
  const page = await context.newPage()
  await page.goto(`${c.url}/bench/baseline.html`)
  // A string, not a function: the page must run this as written (a transpiler's helpers, e.g. tsx's `__name`, do
  // not exist there), and the task inside ships to the nodes as source.
  const ours = (await page.evaluate(`(async ({ asyncTasks, syncTrips, runs, node }) => {
    const { connect } = await import(location.origin + '/sdk.js')
    const mesh = await connect({ address: location.origin })
    const noop = mesh.remote(function noop(x) { return x })
    const bounded = { timeout: 120000 }
    const asyncRun = async () => {
      const t0 = performance.now()
      await mesh.get(Array.from({ length: asyncTasks }, (_, i) => noop.remote(i)), bounded)
      return asyncTasks / ((performance.now() - t0) / 1000)
    }
    const syncRun = async () => {
      const t0 = performance.now()
      for (let i = 0; i < syncTrips; i++) await mesh.get(noop.remote(i), bounded)
      return syncTrips / ((performance.now() - t0) / 1000)
    }
    // The floor of a sync round trip: a bare ping over the page's data channel to a node page and back.
    const pingRun = async () => {
      const t0 = performance.now()
      for (let i = 0; i < syncTrips; i++) await mesh.peers.ping(node)
      return syncTrips / ((performance.now() - t0) / 1000)
    }
    const out = { asyncTasksPerSec: [], syncRoundTripsPerSec: [], dataChannelPingsPerSec: [], peerStats: { direct: 0, relay: 0 } }
    await asyncRun() // warm-up: JIT, worker start, leases, links
    for (let i = 0; i < runs; i++) out.asyncTasksPerSec.push(await asyncRun())
    await syncRun()
    for (let i = 0; i < runs; i++) out.syncRoundTripsPerSec.push(await syncRun())
    if (mesh.peers) {
      await pingRun()
      for (let i = 0; i < runs; i++) out.dataChannelPingsPerSec.push(await pingRun())
    }
    out.peerStats = mesh.peerStats ?? out.peerStats // (a version before direct submission has none)
    await mesh.close()
    return out
  })(${JSON.stringify({ asyncTasks: ASYNC_TASKS, syncTrips: SYNC_TRIPS, runs: RUNS, node: c.nodes[0]?.nodeId })})`)) as PageBench
  await context.close()

  await c.baseline.evaluate(
    (n) => (window as unknown as { baseline: { start(n: number): Promise<unknown> } }).baseline.start(n),
    cpusPerNode,
  )
  type B = { baseline: { asyncCalls(n: number): Promise<number>; syncCalls(n: number): Promise<number> } }
  const runBaseline = async (fn: () => Promise<number>) => {
    await fn()
    const xs: number[] = []
    for (let i = 0; i < RUNS; i++) xs.push(await fn())
    return xs
  }
  const baseline = {
    asyncCallsPerSec: await runBaseline(() => c.baseline.evaluate((n) => (window as unknown as B).baseline.asyncCalls(n), ASYNC_TASKS)),
    syncRoundTripsPerSec: await runBaseline(() => c.baseline.evaluate((n) => (window as unknown as B).baseline.syncCalls(n), SYNC_TRIPS)),
  }
  const summary = (xs: number[]) => ({ median: median(xs), runs: xs.map(Math.round) })
  const result = {
    cluster: { nodes: c.nodes.length, cpusPerNode },
    driver: 'a browser page (import /sdk.js)',
    ours: {
      asyncTasksPerSec: summary(ours.asyncTasksPerSec),
      syncRoundTripsPerSec: summary(ours.syncRoundTripsPerSec),
      peerMessages: ours.peerStats,
    },
    dataChannelPingsPerSec: {
      ...(ours.dataChannelPingsPerSec.length && summary(ours.dataChannelPingsPerSec)),
      where: "bare ping on the page's data channel to a node page",
    },
    baseline: {
      asyncCallsPerSec: summary(baseline.asyncCallsPerSec),
      syncRoundTripsPerSec: summary(baseline.syncRoundTripsPerSec),
      poolSize: cpusPerNode,
      where: 'bare comlink pool in one page',
    },
    targets: { asyncTasksPerSec: 5_000, syncRoundTripsPerSec: 1_500 }, // the issue's, for a page on 2 × 2 CPUs
  }
  const ratio = (a: number, b: number) => (a / b).toFixed(3)
  console.log(`tasks from a browser driver (${c.nodes.length} nodes × ${cpusPerNode} CPUs; medians of ${RUNS} runs after a warm-up)`)
  console.log(
    `  async no-op tasks/s:  ${fmt(result.ours.asyncTasksPerSec.median).padStart(8)}   bare comlink pool: ${fmt(result.baseline.asyncCallsPerSec.median).padStart(8)}   ratio ${ratio(result.ours.asyncTasksPerSec.median, result.baseline.asyncCallsPerSec.median)}   (target ≥ 5,000)`,
  )
  console.log(
    `  sync round trips/s:   ${fmt(result.ours.syncRoundTripsPerSec.median).padStart(8)}   bare comlink call: ${fmt(result.baseline.syncRoundTripsPerSec.median).padStart(8)}   ratio ${ratio(result.ours.syncRoundTripsPerSec.median, result.baseline.syncRoundTripsPerSec.median)}   (target ≥ 1,500)`,
  )
  if (ours.dataChannelPingsPerSec.length)
    console.log(`  bare data channel ping, page ↔ node page (the floor of a round trip): ${fmt(median(ours.dataChannelPingsPerSec))}/s`)
  console.log(`  peer messages: ${fmt(ours.peerStats.direct)} direct, ${fmt(ours.peerStats.relay)} relayed`)
  return result
}
