import type { BenchCluster } from './cluster.ts'
import { fmt, median, ratio } from './stats.ts'

const MiB = 1024 * 1024
const RUNS = 5
const TRANSFER = 32 * MiB

type Mode = 'all' | 'relay'
type NodePage = BenchCluster['nodes'][number]['page']

// Page code is passed as strings: a bundler or tsx must not rewrite it (helpers like __name do not exist there).
const RANDOM_ID = `() => Array.from(crypto.getRandomValues(new Uint8Array(28)), (b) => b.toString(16).padStart(2, '0')).join('')`
async function pageCall<T>(page: NodePage, code: string): Promise<T> {
  return page.evaluate<T>(`(async () => { const randomId = ${RANDOM_ID}; const node = window.shoalNode; ${code} })()`)
}

/** The local candidate type of each open link of a node page (`host` direct, `relay` through TURN). */
const linkTypes = (page: NodePage) =>
  pageCall<string[]>(
    page,
    `const types = [];
     for (const { conn } of node.peers.links.values()) {
       const stats = await conn.peerConnection.getStats();
       stats.forEach((s) => { if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) types.push(stats.get(s.localCandidateId).candidateType) });
     }
     return types`,
  )

/**
 * Node → node over the peer mesh, through a TURN server (coturn on loopback, credentials minted by the coordinator)
 * beside the same transfer over a direct link, between the same two pages in the same run. Each run switches both
 * pages' ICE transport policy, closes their links, warms the new link with one transfer, then times one.
 */
export async function benchTurn(c: BenchCluster) {
  const [a, b] = c.nodes
  if (!a || !b) throw new Error('two nodes needed')
  const id = await pageCall<string>(
    a.page,
    `const id = randomId(); await node.store.put(id, new Uint8Array(${TRANSFER}).fill(5)); return id`,
  )
  const fetchOnce = () =>
    pageCall<number>(
      b.page,
      `const t0 = performance.now(); const bytes = await node.peers.fetch(${JSON.stringify(a.nodeId)}, ${JSON.stringify(id)}); if (bytes.byteLength !== ${TRANSFER}) throw new Error('short'); return ${TRANSFER / MiB} / ((performance.now() - t0) / 1000)`,
    )
  const types: Record<Mode, Set<string>> = { all: new Set(), relay: new Set() }
  const run = async (mode: Mode) => {
    for (const p of [a.page, b.page])
      await pageCall(p, `node.peers.setIceTransportPolicy(${JSON.stringify(mode)}); node.peers.closeLinks()`)
    await fetchOnce()
    const mibps = await fetchOnce()
    for (const t of await linkTypes(b.page)) types[mode].add(t)
    return mibps
  }
  await run('all')
  await run('relay')
  const direct: number[] = []
  const turn: number[] = []
  for (let i = 0; i < RUNS; i++) {
    direct.push(await run('all'))
    turn.push(await run('relay'))
  }
  await pageCall(a.page, `await node.store.delete(${JSON.stringify(id)})`)
  // The figures mean what they say only if the links were what they claim.
  if ([...types.relay].some((t) => t !== 'relay') || types.relay.size === 0) throw new Error(`TURN runs used ${[...types.relay]} links`)
  if (types.all.has('relay')) throw new Error('direct runs went through TURN')
  const result = {
    transferMiB: TRANSFER / MiB,
    turnMiBps: { median: median(turn), runs: turn.map(Math.round) },
    directMiBps: { median: median(direct), runs: direct.map(Math.round) },
    ratio: ratio(median(turn), median(direct)),
    linkCandidateTypes: { direct: [...types.all], turn: [...types.relay] },
  }
  console.log(`turn (medians of ${RUNS} runs after a warm-up; MiB/s; coturn on loopback, same two node pages)`)
  console.log(
    `  node→node transfer, ${TRANSFER / MiB} MiB, through TURN: ${fmt(result.turnMiBps.median).padStart(6)}   direct: ${fmt(result.directMiBps.median).padStart(6)}   ratio ${result.ratio}`,
  )
  return result
}
