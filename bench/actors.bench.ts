import { connect, type Mesh } from '../sdk/index.ts'
import type { BenchCluster } from './cluster.ts'
import { BOUNDED, fmt, ratio, repeat } from './stats.ts'

const SYNC_CALLS = 400
const ASYNC_CALLS = 4000
const RUNS = 5

class Counter {
  n = 0
  inc() {
    return ++this.n
  }
}
class AsyncCounter {
  n = 0
  async inc() {
    await Promise.resolve()
    return ++this.n
  }
}

/**
 * Ray's actor microbenchmarks in our terms (ray/_private/ray_perf.py): 1:1 sync and async calls, n:n async calls
 * (n drivers, each with its own actor), and 1:1 calls to an async actor — beside bare comlink calls to one worker.
 */
export async function benchActors(c: BenchCluster, cpusPerNode: number) {
  const n = Math.min(4, c.nodes.length * cpusPerNode)
  const meshes: Mesh[] = await Promise.all(Array.from({ length: n }, () => connect({ address: c.url })))
  const [mesh] = meshes as [Mesh]
  const counter = mesh.remote(Counter).options({ numCpus: 0 }).remote()
  const asyncCounter = mesh.remote(AsyncCounter).options({ numCpus: 0, maxConcurrency: 16 }).remote()
  await mesh.get([counter.ready(), asyncCounter.ready()] as never, BOUNDED)

  const syncLoop = async (h: typeof counter) => {
    const t0 = performance.now()
    for (let i = 0; i < SYNC_CALLS; i++) await mesh.get(h.inc.remote(), BOUNDED)
    return SYNC_CALLS / ((performance.now() - t0) / 1000)
  }
  const asyncBurst = async (m: Mesh, h: { inc: { remote(): unknown } }, calls: number) => {
    const t0 = performance.now()
    await m.get(Array.from({ length: calls }, () => h.inc.remote()) as never, BOUNDED)
    return calls / ((performance.now() - t0) / 1000)
  }
  const perDriver = meshes.map((m) => m.remote(Counter).options({ numCpus: 0 }).remote())
  await Promise.all(meshes.map((m, i) => m.get(perDriver[i]?.ready() as never, BOUNDED)))

  const ours = {
    oneToOneSyncPerSec: await repeat(RUNS, () => syncLoop(counter)),
    oneToOneAsyncPerSec: await repeat(RUNS, () => asyncBurst(mesh, counter, ASYNC_CALLS)),
    nToNAsyncPerSec: await repeat(RUNS, async () => {
      const per = Math.floor(ASYNC_CALLS / n)
      const t0 = performance.now()
      await Promise.all(meshes.map((m, i) => m.get(Array.from({ length: per }, () => perDriver[i]?.inc.remote()) as never, BOUNDED)))
      return (per * n) / ((performance.now() - t0) / 1000)
    }),
    asyncActorOneToOnePerSec: await repeat(RUNS, () => asyncBurst(mesh, asyncCounter, ASYNC_CALLS)),
  }
  await c.baseline.evaluate((size) => (window as unknown as { baseline: { start(n: number): Promise<unknown> } }).baseline.start(size), 1)
  type B = { baseline: { syncCalls(n: number): Promise<number>; asyncOneWorker(n: number): Promise<number> } }
  const baseline = {
    syncCallsPerSec: await repeat(RUNS, () => c.baseline.evaluate((k) => (window as unknown as B).baseline.syncCalls(k), SYNC_CALLS)),
    asyncCallsPerSec: await repeat(RUNS, () =>
      c.baseline.evaluate((k) => (window as unknown as B).baseline.asyncOneWorker(k), ASYNC_CALLS),
    ),
  }
  for (const m of meshes) await m.close()

  const result = {
    cluster: { nodes: c.nodes.length, cpusPerNode, drivers: n },
    ours,
    baseline: { ...baseline, where: 'bare comlink calls to one worker in one page' },
    ratios: {
      oneToOneSync: ratio(ours.oneToOneSyncPerSec.median, baseline.syncCallsPerSec.median),
      oneToOneAsync: ratio(ours.oneToOneAsyncPerSec.median, baseline.asyncCallsPerSec.median),
    },
    ray: { note: 'Ray 2.48 on 64 vCPUs', oneToOneSyncPerSec: 2012, oneToOneAsyncPerSec: 8664 },
  }
  const line = (label: string, v: number, extra = '') => console.log(`  ${label.padEnd(36)}${fmt(v).padStart(8)}${extra}`)
  console.log(`actors (${c.nodes.length} nodes × ${cpusPerNode} CPUs; calls/s, medians of ${RUNS} runs after a warm-up)`)
  line(
    '1:1 actor calls sync',
    ours.oneToOneSyncPerSec.median,
    `   bare comlink: ${fmt(baseline.syncCallsPerSec.median)}   Ray (64 vCPU): 2,012`,
  )
  line(
    '1:1 actor calls async',
    ours.oneToOneAsyncPerSec.median,
    `   bare comlink: ${fmt(baseline.asyncCallsPerSec.median)}   Ray (64 vCPU): 8,664`,
  )
  line(`n:n actor calls async (n = ${n})`, ours.nToNAsyncPerSec.median)
  line('1:1 async-actor calls async', ours.asyncActorOneToOnePerSec.median)
  return result
}
