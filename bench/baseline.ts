import * as Comlink from 'comlink'

/** A bare comlink pool in one page, with the same shape of work as the Shoal benchmarks. */
type Api = { noop(x: number): number; inc(): number; sleepy(ms: number): Promise<number> }
let pool: Comlink.Remote<Api>[] = []

const api = {
  start(size: number) {
    pool = Array.from({ length: size }, () =>
      Comlink.wrap<Api>(new Worker(new URL('./baseline.worker.ts', import.meta.url), { type: 'module' })),
    )
    return Promise.all(pool.map((w) => w.noop(0)))
  },
  /** Many calls in flight across the pool; calls per second. */
  async asyncCalls(n: number) {
    const t0 = performance.now()
    await Promise.all(Array.from({ length: n }, (_, i) => (pool[i % pool.length] as Comlink.Remote<Api>).noop(i)))
    return n / ((performance.now() - t0) / 1000)
  },
  /** One call at a time; round trips per second. */
  async syncCalls(n: number) {
    const w = pool[0] as Comlink.Remote<Api>
    const t0 = performance.now()
    for (let i = 0; i < n; i++) await w.noop(i)
    return n / ((performance.now() - t0) / 1000)
  },
  /** Calls to one worker's state, many in flight (the bare version of 1:1 async actor calls). */
  async asyncOneWorker(n: number) {
    const w = pool[0] as Comlink.Remote<Api>
    const t0 = performance.now()
    await Promise.all(Array.from({ length: n }, () => w.inc()))
    return n / ((performance.now() - t0) / 1000)
  },
}
;(window as unknown as { baseline: typeof api }).baseline = api
document.body.dataset.state = 'ready'
