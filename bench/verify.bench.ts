import { connect } from '../sdk/index.ts'
import type { BenchCluster } from './cluster.ts'
import { BOUNDED, fmt, ratio, repeat } from './stats.ts'

const ASYNC_TASKS = 2000
const SYNC_TASKS = 200
const RUNS = 5

const noop = function noop(x: number) {
  return x
}

/**
 * Verified tasks (`verify: { replicas: 2 }`, docs/trust.md) beside plain tasks of the same function on the same cluster in
 * the same run: what verification costs. A verified task goes through the coordinator (it places both replicas and
 * compares their bytes); a plain one is pushed by its owner straight to a leased worker. Ray has no counterpart.
 */
export async function benchVerify(c: BenchCluster, cpusPerNode: number) {
  const mesh = await connect({ address: c.url })
  const plain = mesh.remote(noop)
  const verified = plain.options({ verify: { replicas: 2 } })
  await mesh.get([plain.remote(0), verified.remote(0)], BOUNDED)
  const burst = async (f: typeof plain) => {
    const t0 = performance.now()
    await mesh.get(
      Array.from({ length: ASYNC_TASKS }, (_, i) => f.remote(i)),
      BOUNDED,
    )
    return ASYNC_TASKS / ((performance.now() - t0) / 1000)
  }
  const loop = async (f: typeof plain) => {
    const t0 = performance.now()
    for (let i = 0; i < SYNC_TASKS; i++) await mesh.get(f.remote(i), BOUNDED)
    return SYNC_TASKS / ((performance.now() - t0) / 1000)
  }
  const ours = {
    verifiedAsyncPerSec: await repeat(RUNS, () => burst(verified)),
    verifiedSyncPerSec: await repeat(RUNS, () => loop(verified)),
  }
  const baseline = { plainAsyncPerSec: await repeat(RUNS, () => burst(plain)), plainSyncPerSec: await repeat(RUNS, () => loop(plain)) }
  await mesh.close()
  const result = {
    cluster: { nodes: c.nodes.length, cpusPerNode, replicas: 2 },
    ours,
    baseline: { ...baseline, where: 'plain (unverified) tasks of the same function, same driver and cluster, same run' },
    ratios: {
      async: ratio(ours.verifiedAsyncPerSec.median, baseline.plainAsyncPerSec.median),
      sync: ratio(ours.verifiedSyncPerSec.median, baseline.plainSyncPerSec.median),
    },
  }
  console.log(`verified tasks, replicas 2 (${c.nodes.length} nodes × ${cpusPerNode} CPUs; medians of ${RUNS} runs after a warm-up)`)
  console.log(
    `  async verified tasks/s:     ${fmt(ours.verifiedAsyncPerSec.median).padStart(8)}   plain tasks: ${fmt(baseline.plainAsyncPerSec.median)}   ratio ${result.ratios.async}`,
  )
  console.log(
    `  sync verified round trips/s: ${fmt(ours.verifiedSyncPerSec.median).padStart(7)}   plain tasks: ${fmt(baseline.plainSyncPerSec.median)}   ratio ${result.ratios.sync}`,
  )
  return result
}
