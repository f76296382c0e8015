/**
 * Where a no-op task's time goes on a node page: one coordinator (in this process), one headless node × 4 CPUs and a
 * Node driver (in this process). Prints the CPU each process used per task (from /proc) and the node page main
 * thread's self time by function (CDP profiler); writes /tmp/node-page.cpuprofile (open it in Chrome DevTools).
 *   node --import tsx bench/profile/node-page.ts            # async: N tasks in batches of 4,000
 *   SYNC=1 N=2000 node --import tsx bench/profile/node-page.ts   # sync: get(f.remote()) one at a time
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { startHeadlessNode } from '../../coordinator/headless-nodes.ts'
import { startCoordinator } from '../../coordinator/server.ts'
import { connect } from '../../sdk/index.ts'

type Profile = { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[]; samples: number[] }

/** CPU ticks (1/100 s) per process: this one, and every Chromium process by its type. */
function cpuByProcess(): Map<string, number> {
  const out = new Map<string, number>()
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ticks = Number(f[11]) + Number(f[12])
      const kind = /chromium/.test(cmd)
        ? (cmd.match(/--type=(\S+)/)?.[1] ?? 'browser')
        : pid === String(process.pid)
          ? 'driver+coordinator'
          : ''
      if (kind) out.set(`${kind}:${pid}`, ticks)
    } catch {
      // the process ended meanwhile
    }
  }
  return out
}

const sync = process.env.SYNC === '1'
const N = Number(process.env.N ?? (sync ? 2000 : 20000))
const co = await startCoordinator({ port: 0, log: () => {} })
const node = await startHeadlessNode({ address: co.url, cpus: 4, index: 0 })
const m = await connect({ address: co.url })
const f = m.remote(function noop(i: number) {
  return i
})
await m.get(Array.from({ length: 2000 }, (_, i) => f.remote(i)))
const cdp = await node.page.context().newCDPSession(node.page)
await cdp.send('Profiler.enable')
await cdp.send('Profiler.setSamplingInterval', { interval: Number(process.env.INTERVAL ?? 200) })
await cdp.send('Profiler.start')
const before = cpuByProcess()
const t = performance.now()
if (sync) for (let k = 0; k < N; k++) await m.get(f.remote(k))
else
  for (let k = 0; k < N / 4000; k++)
    await m.get(
      Array.from({ length: 4000 }, (_, i) => f.remote(i)),
      { timeout: 60_000 },
    )
const secs = (performance.now() - t) / 1000
const after = cpuByProcess()
const { profile } = (await cdp.send('Profiler.stop')) as unknown as { profile: Profile }
writeFileSync('/tmp/node-page.cpuprofile', JSON.stringify(profile))
console.log(`${sync ? 'sync round trips' : 'async tasks'}/s: ${(N / secs).toFixed(0)}`, m.peerStats)
for (const [k, v] of after) {
  const d = v - (before.get(k) ?? v)
  if (d > 5) console.log(`CPU ${k}: ${((d / secs) * 1).toFixed(0)}% of a core, ${((d * 10 * 1000) / N).toFixed(1)} µs per task`)
}
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<string, number>()
for (const s of profile.samples) {
  const n = byId.get(s)
  if (!n) continue
  const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`
  self.set(key, (self.get(key) ?? 0) + 1)
}
console.log('node page main thread, self time:')
for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30))
  console.log(`${((100 * c) / profile.samples.length).toFixed(1).padStart(5)}% ${k}`)
await m.close()
await node.close()
await co.close()
process.exit(0)
