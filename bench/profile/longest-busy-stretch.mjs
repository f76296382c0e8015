/**
 * The longest stretch of a .cpuprofile without an idle sample, and where its time went (inclusive, by function):
 * how to find what stalls a coordinator. Run: node bench/profile/longest-busy-stretch.mjs FILE.cpuprofile
 */
import { readFileSync } from 'node:fs'

const p = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id))
let t = 0,
  start = null,
  best = { len: 0 },
  cur = []
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i]
  const s = p.samples[i]
  if (idle.has(s)) {
    if (start !== null && t - start > best.len) best = { len: t - start, from: start, samples: cur }
    start = null
    cur = []
  } else {
    if (start === null) start = t
    cur.push(s)
  }
}
console.log('longest busy stretch ms', (best.len / 1000).toFixed(0))
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
const total = new Map()
for (const s of best.samples ?? []) {
  const seen = new Set()
  for (let x = s; x !== undefined; x = parent.get(x)) {
    const k = key(byId.get(x))
    if (!seen.has(k)) {
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + 1)
    }
  }
}
for (const [k, c] of [...total].sort((a, b) => b[1] - a[1]).slice(0, 30))
  console.log(((100 * c) / best.samples.length).toFixed(1).padStart(5), k)
