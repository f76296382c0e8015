import { connect } from '../sdk/index.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import type { BenchCluster } from './cluster.ts'
import { BOUNDED, fmt, ratio, repeat } from './stats.ts'

const ASYNC_TASKS = 4000
const SYNC_TRIPS = 400
const RUNS = 5

/**
 * Task throughput from one driver (Node) against a bare comlink pool of one node's size in one page, plus the
 * seed's 30 × 1 s against the ideal. Async: submit N no-op tasks, then get them all. Sync: get(f.remote()) in a loop.
 */
export async function benchTasks(c: BenchCluster, cpusPerNode: number) {
  const mesh = await connect({ address: c.url })
  const noop = mesh.remote(function noop(x: number) {
    return x
  })
  const ours = {
    asyncTasksPerSec: await repeat(RUNS, async () => {
      const t0 = performance.now()
      await mesh.get(
        Array.from({ length: ASYNC_TASKS }, (_, i) => noop.remote(i)),
        BOUNDED,
      )
      return ASYNC_TASKS / ((performance.now() - t0) / 1000)
    }),
    syncRoundTripsPerSec: await repeat(RUNS, async () => {
      const t0 = performance.now()
      for (let i = 0; i < SYNC_TRIPS; i++) await mesh.get(noop.remote(i), BOUNDED)
      return SYNC_TRIPS / ((performance.now() - t0) / 1000)
    }),
  }
  // The floor of a sync round trip: a bare ping over the same data channel, driver to node page and back.
  const peers = (mesh as unknown as { peers?: PeerMesh }).peers
  const node = c.nodes[0]?.nodeId as string
  const dataChannelPingsPerSec = peers
    ? await repeat(RUNS, async () => {
        const t0 = performance.now()
        for (let i = 0; i < SYNC_TRIPS; i++) await peers.ping(node)
        return SYNC_TRIPS / ((performance.now() - t0) / 1000)
      })
    : undefined
  await c.baseline.evaluate(
    (n) => (window as unknown as { baseline: { start(n: number): Promise<unknown> } }).baseline.start(n),
    cpusPerNode,
  )
  type B = { baseline: { asyncCalls(n: number): Promise<number>; syncCalls(n: number): Promise<number> } }
  const baseline = {
    asyncCallsPerSec: await repeat(RUNS, () => c.baseline.evaluate((n) => (window as unknown as B).baseline.asyncCalls(n), ASYNC_TASKS)),
    syncRoundTripsPerSec: await repeat(RUNS, () => c.baseline.evaluate((n) => (window as unknown as B).baseline.syncCalls(n), SYNC_TRIPS)),
  }
  const sleep = mesh.remote(async function expensiveComputation() {
    await new Promise((r) => setTimeout(r, 1000))
    return 1
  })
  const cpus = c.nodes.length * cpusPerNode
  const t0 = performance.now()
  const sum = (
    await mesh.get(
      Array.from({ length: 30 }, () => sleep.remote()),
      BOUNDED,
    )
  ).reduce((a, b) => a + b, 0)
  const seed = { tasks: 30, sum, cpus, elapsedMs: Math.round(performance.now() - t0), idealMs: Math.ceil(30 / cpus) * 1000 }
  // Which way the tasks went: direct data channels (node-datachannel) or the coordinator's relay.
  const peerMessages = mesh.peerStats
  await mesh.close()

  const result = {
    cluster: { nodes: c.nodes.length, cpusPerNode },
    ours,
    baseline: { ...baseline, poolSize: cpusPerNode, where: 'bare comlink pool in one page' },
    dataChannelPingsPerSec: { ...dataChannelPingsPerSec, where: "bare ping on the driver's data channel to a node page" },
    ratios: {
      async: ratio(ours.asyncTasksPerSec.median, baseline.asyncCallsPerSec.median),
      sync: ratio(ours.syncRoundTripsPerSec.median, baseline.syncRoundTripsPerSec.median),
    },
    seed,
    peerMessages,
    targets: { asyncTasksPerSec: 10_000, syncRoundTripsPerSec: 2_000 },
  }
  console.log(`tasks (${c.nodes.length} nodes × ${cpusPerNode} CPUs; medians of ${RUNS} runs after a warm-up)`)
  console.log(
    `  async no-op tasks/s, one driver:  ${fmt(ours.asyncTasksPerSec.median).padStart(8)}   bare comlink pool: ${fmt(baseline.asyncCallsPerSec.median).padStart(8)}   ratio ${result.ratios.async}   (target ≥ 10,000)`,
  )
  console.log(
    `  sync round trips/s:               ${fmt(ours.syncRoundTripsPerSec.median).padStart(8)}   bare comlink call: ${fmt(baseline.syncRoundTripsPerSec.median).padStart(8)}   ratio ${result.ratios.sync}   (target ≥ 2,000)`,
  )
  if (dataChannelPingsPerSec)
    console.log(`  bare data channel ping, driver ↔ node page (the floor of a round trip): ${fmt(dataChannelPingsPerSec.median)}/s`)
  console.log(
    `  seed 30 × 1 s on ${cpus} CPUs:        ${(seed.elapsedMs / 1000).toFixed(2)} s vs ideal ${(seed.idealMs / 1000).toFixed(2)} s (${(seed.elapsedMs / seed.idealMs).toFixed(2)}×)`,
  )
  console.log(`  peer messages: ${fmt(peerMessages.direct)} direct, ${fmt(peerMessages.relay)} relayed`)
  return result
}
