import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startTurnServer, type TurnServer } from '../coordinator/local-turn-server.ts'
import type { Mesh } from '../sdk/index.ts'
import { startCluster, type TestCluster } from './fixtures/cluster.ts'

// Item 2 of "donate a tab from anywhere": every data channel forced through a real TURN server (Debian's coturn in
// shared-secret mode, credentials minted by the coordinator), and what happens when the secret is wrong.
const SECRET = 'the-turn-secret-of-this-test'
const MiB = 1024 * 1024
let turn: TurnServer
beforeAll(async () => {
  turn = await startTurnServer(SECRET)
})
afterAll(async () => {
  await turn?.stop()
})

/** What a node page's mesh moved and how: its objects' pull stats, and the candidate types of its open links. */
async function nodeView(page: Page): Promise<{ peerBytes: number; relayBytes: number; localTypes: string[] }> {
  return page.evaluate(async () => {
    type Conn = { peerConnection: RTCPeerConnection }
    const node = (
      window as unknown as {
        shoalNode: {
          // The object manager is the agent's (private in TypeScript, there at run time).
          agent: { objects: { transferStats: { peerBytes: number; relayBytes: number } } }
          peers: { links: Map<string, { conn: Conn }> }
        }
      }
    ).shoalNode
    const localTypes: string[] = []
    for (const { conn } of node.peers.links.values()) {
      const stats = await conn.peerConnection.getStats()
      stats.forEach((s) => {
        if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated)
          localTypes.push(stats.get(s.localCandidateId)?.candidateType as string)
      })
    }
    return { ...node.agent.objects.transferStats, localTypes }
  })
}

/** The coordinator's relay counters (/metrics): what no data channel carried. */
async function relayed(c: TestCluster): Promise<{ messages: number; bytes: number }> {
  const text = await (await fetch(`${c.url}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? Number.NaN)
  return { messages: read('shoal_relayed_peer_messages_total'), bytes: read('shoal_relayed_object_bytes_total') }
}

const make = function make(size: number) {
  const a = new Uint8Array(size)
  for (let i = 0; i < size; i++) a[i] = (i * 7 + (i >> 12)) & 255
  return a
}
const checksum = async function checksum(a: Uint8Array) {
  let h = 0x811c9dc5
  for (let i = 0; i < a.length; i += 61) h = Math.imul(h ^ (a[i] as number), 16777619)
  return (h ^ a.length) >>> 0
}
class Counter {
  n = 0
  add(k: number) {
    this.n += k
    return this.n
  }
}

describe('relay-only through coturn', () => {
  let cluster: TestCluster
  let mesh: Mesh
  beforeAll(async () => {
    cluster = await startCluster({
      nodes: 2,
      cpus: 2,
      objectStoreMemory: '256MiB',
      ice: { servers: [turn.url], turnSecret: SECRET, transportPolicy: 'relay' },
    })
    mesh = await cluster.connect()
  })
  afterAll(async () => {
    await cluster?.stop()
    expect(cluster?.pageErrors ?? []).toEqual([])
  })

  it('runs tasks, an actor and a 16 MiB object node to node over TURN-relayed data channels, the coordinator relaying nothing', async () => {
    const [a, b] = cluster.nodes
    if (!a || !b) throw new Error('two nodes expected')
    const square = mesh.remote(function square(x: number) {
      return x * x
    })
    expect(await mesh.get(Array.from({ length: 20 }, (_, i) => square.remote(i)))).toEqual(Array.from({ length: 20 }, (_, i) => i * i))

    const counter = mesh.remote(Counter).remote()
    expect(await mesh.get([1, 2, 3].map((k) => counter.add.remote(k)))).toEqual([1, 3, 6])

    // Made on a, read on b: b pulls the 16 MiB from a over their data channel.
    const made = mesh
      .remote(make)
      .options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
      .remote(16 * MiB)
    const sum = mesh.remote(checksum).options({ schedulingStrategy: { nodeId: b.nodeId, soft: false } })
    const expected = await checksum(make(16 * MiB))
    expect(await mesh.get(sum.remote(made))).toBe(expected)
    await mesh.kill(counter)

    expect(mesh.peerStats.direct).toBeGreaterThan(0)
    expect(mesh.peerStats.relay).toBe(0)
    const onB = await nodeView(b.page)
    expect(onB.peerBytes).toBeGreaterThanOrEqual(16 * MiB)
    expect(onB.relayBytes).toBe(0)
    // Every open link of the node pages goes through a TURN allocation (local candidate type `relay`).
    for (const n of [a, b]) {
      const { localTypes } = await nodeView(n.page)
      expect(localTypes.length).toBeGreaterThan(0)
      expect(new Set(localTypes)).toEqual(new Set(['relay']))
    }
    expect(await relayed(cluster)).toEqual({ messages: 0, bytes: 0 })
    // coturn authenticated allocations with the usernames the coordinator minted (`expiry:participant`).
    const log = await turn.log()
    expect(log).toMatch(/ALLOCATE processed, success/)
    for (const n of [a, b]) expect(log).toMatch(new RegExp(`username=<?\\d+:${n.nodeId}`))
    // …and the Node driver's too (node-datachannel), under its peer id `d-…`.
    expect(log).toMatch(/username=<\d+:d-[0-9a-f]+>/)
  })
  it('a page driver takes the same TURN credentials and policy from its welcome', async () => {
    const page = await cluster.driverPage()
    const out = await page.evaluate<{ results: number[]; direct: number; relay: number }>(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const mesh = await connect()
      const square = mesh.remote(function square(x) { return x * x })
      const results = await mesh.get(Array.from({ length: 10 }, (_, i) => square.remote(i)))
      const { direct, relay } = mesh.peerStats
      await mesh.close()
      return { results, direct, relay }
    })()`)
    expect(out.results).toEqual(Array.from({ length: 10 }, (_, i) => i * i))
    expect(out.direct).toBeGreaterThan(0)
    expect(out.relay).toBe(0)
    // Its peer id (`d-…`) allocated on coturn: with the relay policy nothing else could carry its channels.
    const drivers = new Set((await turn.log()).match(/username=<\d+:d-[0-9a-f]+>/g))
    expect(drivers.size).toBeGreaterThanOrEqual(2)
    await page.context().close()
  })
})

describe('a wrong TURN secret', () => {
  let cluster: TestCluster
  let mesh: Mesh
  const driverWarnings: string[] = []
  const nodeWarnings = new Map<number, string[]>()
  beforeAll(async () => {
    cluster = await startCluster({
      nodes: 2,
      cpus: 2,
      objectStoreMemory: '256MiB',
      ice: { servers: [turn.url], turnSecret: 'not-the-secret-coturn-has', transportPolicy: 'relay' },
    })
    for (const n of cluster.nodes) {
      nodeWarnings.set(n.index, [])
      n.page.on('console', (m) => {
        if (m.type() === 'warning' && m.text().includes('no data channel')) nodeWarnings.get(n.index)?.push(m.text())
      })
    }
    vi.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
      if (String(args[0]).includes('no data channel')) driverWarnings.push(String(args[0]))
    })
    mesh = await cluster.connect()
  })
  afterAll(async () => {
    vi.restoreAllMocks()
    await cluster?.stop()
    expect(cluster?.pageErrors ?? []).toEqual([])
  })

  it('opens no channel: the coordinator relay carries the work, and each participant warns once, naming the ICE failure', async () => {
    const [a, b] = cluster.nodes
    if (!a || !b) throw new Error('two nodes expected')
    const square = mesh.remote(function square(x: number) {
      return x * x
    })
    expect(await mesh.get(Array.from({ length: 20 }, (_, i) => square.remote(i)))).toEqual(Array.from({ length: 20 }, (_, i) => i * i))
    const made = mesh
      .remote(make)
      .options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
      .remote(4 * MiB)
    const sum = mesh.remote(checksum).options({ schedulingStrategy: { nodeId: b.nodeId, soft: false } })
    expect(await mesh.get(sum.remote(made))).toBe(await checksum(make(4 * MiB)))
    // More work after the first failures: nobody warns again.
    expect(await mesh.get(Array.from({ length: 20 }, (_, i) => square.remote(i + 1)))).toHaveLength(20)

    const onB = await nodeView(b.page)
    expect(onB.peerBytes).toBe(0)
    expect(onB.relayBytes).toBeGreaterThanOrEqual(4 * MiB)
    const r = await relayed(cluster)
    expect(r.messages).toBeGreaterThan(0)
    expect(r.bytes).toBeGreaterThanOrEqual(4 * MiB)

    expect(driverWarnings).toHaveLength(1)
    expect(driverWarnings[0]).toMatch(/ICE .*relay only/)
    for (const n of [a, b]) {
      const said = nodeWarnings.get(n.index) ?? []
      expect(said).toHaveLength(1)
      // Chromium names the TURN server's refusal: 401 Unauthorized.
      expect(said[0]).toMatch(/ICE .*relay only: TURN candidates\): none; turn:127\.0\.0\.1:\d+\?transport=udp answered 401/)
    }
  })
})
