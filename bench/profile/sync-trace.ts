/**
 * A Chromium trace of 500 sync round trips (get(f.remote()) one at a time) on one headless node × 4 CPUs: the time
 * each thread of the node's browser spends per round trip, and the heaviest trace events. Run:
 *   node --import tsx bench/profile/sync-trace.ts
 */
import { startHeadlessNode } from '../../coordinator/headless-nodes.ts'
import { startCoordinator } from '../../coordinator/server.ts'
import { connect } from '../../sdk/index.ts'

type TraceEvent = { ph: string; name: string; pid: number; tid: number; dur?: number; args?: { name?: string } }
const ROUND_TRIPS = 500

const co = await startCoordinator({ port: 0, log: () => {} })
const node = await startHeadlessNode({ address: co.url, cpus: 4, index: 0 })
const m = await connect({ address: co.url })
const f = m.remote(function noop(i: number) {
  return i
})
for (let i = 0; i < 300; i++) await m.get(f.remote(i))
const browser = node.page.context().browser()
if (!browser) throw new Error('no browser to trace')
const cdp = await browser.newBrowserCDPSession()
const events: TraceEvent[] = []
cdp.on('Tracing.dataCollected', (d) => events.push(...(d.value as unknown as TraceEvent[])))
const done = new Promise((r) => cdp.once('Tracing.tracingComplete', r))
await cdp.send('Tracing.start', {
  traceConfig: { includedCategories: ['toplevel', 'disabled-by-default-devtools.timeline', 'v8', 'webrtc', 'ipc', 'mojom'] },
  transferMode: 'ReportEvents',
})
const t = performance.now()
for (let i = 0; i < ROUND_TRIPS; i++) await m.get(f.remote(i))
console.log(`sync round trips/s: ${(ROUND_TRIPS / ((performance.now() - t) / 1000)).toFixed(0)}`)
await cdp.send('Tracing.end')
await done
const threads = new Map<string, string>()
for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') threads.set(`${e.pid}:${e.tid}`, e.args?.name ?? '')
const byThread = new Map<string, number>()
const byEvent = new Map<string, number>()
for (const e of events) {
  if (e.ph !== 'X' || !e.dur) continue
  const th = threads.get(`${e.pid}:${e.tid}`) ?? `${e.pid}:${e.tid}`
  if (e.name === 'ThreadControllerImpl::RunTask') byThread.set(th, (byThread.get(th) ?? 0) + e.dur)
  byEvent.set(`${th} | ${e.name}`, (byEvent.get(`${th} | ${e.name}`) ?? 0) + e.dur)
}
console.log('µs per round trip, by thread (its tasks):')
for (const [k, v] of [...byThread].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${(v / ROUND_TRIPS).toFixed(0).padStart(6)} ${k}`)
console.log('µs per round trip, heaviest events (nested events count in each):')
for (const [k, v] of [...byEvent].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${(v / ROUND_TRIPS).toFixed(0).padStart(6)} ${k}`)
await m.close()
await node.close()
await co.close()
process.exit(0)
