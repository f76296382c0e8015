/**
 * Self and total time by function in a .cpuprofile (node --cpu-prof, or the CDP profiler). Run:
 *   node bench/profile/cpuprofile-summary.mjs FILE.cpuprofile
 */
import { readFileSync } from 'node:fs'

const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
const counts = new Map()
for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1)
const self = new Map(),
  total = new Map()
let all = 0
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.split('/').slice(-2).join('/')}:${n.callFrame.lineNumber + 1}`
for (const [id, c] of counts) {
  all += c
  const n = byId.get(id)
  self.set(key(n), (self.get(key(n)) ?? 0) + c)
  const seen = new Set()
  for (let x = id; x !== undefined; x = parent.get(x)) {
    const k = key(byId.get(x))
    if (!seen.has(k)) {
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + c)
    }
  }
}
console.log('SELF')
for (const [k, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(((100 * c) / all).toFixed(1).padStart(5), k)
console.log('TOTAL')
for (const [k, c] of [...total].sort((a, b) => b[1] - a[1]).slice(0, 45)) console.log(((100 * c) / all).toFixed(1).padStart(5), k)
