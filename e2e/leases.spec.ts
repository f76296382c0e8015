import { describe, expect, it } from 'vitest'
import type { Mesh } from '../sdk/index.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

// Direct submission (Ray's ownership model, README "How it works"): an owner leases workers from the coordinator and pushes its tasks straight to
// the leased nodes; results come straight back. Where no direct channel opens, the coordinator relays: slower,
// never broken. Owners and nodes die at any moment: what ran under a lease is retried or shares its owner's fate.
const cluster = useCluster({ nodes: 2, cpus: 2 })
const T = 30_000
/** Tasks, calls and actor creations the cluster's nodes have finished so far (each node page counts its own). */
const finishedOnNodes = async () => {
  let n = 0
  for (const node of cluster().nodes) n += (await node.page.evaluate('window.shoalNode.agent.stats.finished')) as number
  return n
}

describe('leases and direct submission', () => {
  it('a Node driver pushes tasks over direct channels, and the same work gives the same results through the relay', async () => {
    const big = 300 * 1024
    for (const peerLinks of ['direct', 'relay'] as const) {
      const mesh = await cluster().connect({ peerLinks })
      const square = mesh.remote(async function square(i: number) {
        return i * i
      })
      // A task that submits tasks (they use its node's channels) and one with a large return (a plasma object).
      const fanOut = mesh.remote(async function fanOut(n: number) {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        const sq = shoal.remote(async function sq(i: number) {
          return i * i
        })
        return (await shoal.get(Array.from({ length: n }, (_, i) => sq.remote(i)))).reduce((a: number, b: number) => a + b, 0)
      })
      const large = mesh.remote(async function large(n: number) {
        return new Uint8Array(n).fill(7)
      })
      const squares = await mesh.get(
        Array.from({ length: 200 }, (_, i) => square.remote(i)),
        { timeout: T },
      )
      expect(squares).toEqual(Array.from({ length: 200 }, (_, i) => i * i))
      expect(await mesh.get(fanOut.remote(10), { timeout: T })).toBe(285)
      const bytes = await mesh.get(large.remote(big), { timeout: T })
      expect(bytes.byteLength).toBe(big)
      expect(bytes[big - 1]).toBe(7)
      const stats = mesh.peerStats
      if (peerLinks === 'relay') expect(stats.direct).toBe(0)
      else expect(stats.direct).toBeGreaterThan(0)
      if (peerLinks === 'relay') expect(stats.relay).toBeGreaterThan(0)
      const rows = await mesh.state.listTasks({
        filters: [
          ['funcOrClassName', '=', 'square'],
          ['jobId', '=', mesh.jobId],
        ],
      })
      expect(rows.filter((r) => r.state === 'FINISHED')).toHaveLength(200)
      expect(rows.every((r) => r.events.some((e) => e.state === 'SUBMITTED_TO_WORKER'))).toBe(true)
      await mesh.close()
    }
  })

  it("actor calls go straight to the actor's node and run in the order made, whichever way each goes; the same through the relay", async () => {
    for (const peerLinks of ['direct', 'relay'] as const) {
      const mesh = await cluster().connect({ peerLinks })
      const Log = mesh
        .remote(
          class Log {
            items: unknown[] = []
            add(x: unknown) {
              this.items.push(Array.isArray(x) ? 'ref' : x)
              return this.items.length
            }
            all() {
              return this.items
            }
          },
        )
        .options({ numCpus: 0 })
      const slow = mesh.remote(async function slow(x: number) {
        await new Promise((r) => setTimeout(r, 300))
        return x
      })
      const log = Log.remote()
      const shared = await mesh.put('shared')
      const expected: unknown[] = []
      const refs = []
      for (let i = 0; i < 300; i++) {
        // A call holding a ref goes through the coordinator; one waiting for a slow task's result holds back the rest.
        if (i % 7 === 3) refs.push(log.add.remote([shared]))
        else if (i === 100) refs.push(log.add.remote(slow.remote(i) as never))
        else refs.push(log.add.remote(i))
        expected.push(i % 7 === 3 ? 'ref' : i)
      }
      expect(await mesh.get(refs, { timeout: T })).toEqual(expected.map((_, i) => i + 1))
      expect(await mesh.get(log.all.remote(), { timeout: T })).toEqual(expected)
      const stats = mesh.peerStats
      if (peerLinks === 'relay') expect(stats.direct).toBe(0)
      else expect(stats.direct).toBeGreaterThan(0)
      expect(stats.relay).toBeGreaterThan(0) // the calls that hold refs
      await eventually(async () => {
        const rows = await mesh.state.listTasks({
          filters: [
            ['funcOrClassName', '=', 'Log.add'],
            ['jobId', '=', mesh.jobId],
          ],
        })
        expect(rows.filter((r) => r.state === 'FINISHED')).toHaveLength(300)
        expect(rows.every((r) => r.type === 'ACTOR_TASK' && r.actorId === log.actorId && r.nodeId)).toBe(true)
        return true
      }, 'every call listed as FINISHED on the actor node')
      await mesh.close()
    }
  })

  it('short tasks run in batches on a node; a slow one among them neither holds back nor loses the others', async () => {
    const mesh = await cluster().connect()
    const maybeSlow = mesh.remote(async function maybeSlow(ms: number, i: number) {
      if (ms) await new Promise((r) => setTimeout(r, ms))
      return i
    })
    // Learned short, then pipelined: many go to a worker in one message, so far fewer peer messages than tasks.
    await mesh.get(maybeSlow.remote(0, 0), { timeout: T })
    const before = mesh.peerStats.direct
    const n = 2000
    expect(
      await mesh.get(
        Array.from({ length: n }, (_, i) => maybeSlow.remote(0, i)),
        { timeout: T },
      ),
    ).toEqual(Array.from({ length: n }, (_, i) => i))
    expect(mesh.peerStats.direct - before).toBeLessThan(n / 2)
    // One slow task in a burst of quick ones on one lease (the node's 2 CPUs, pinned): those before it in its batch
    // come back while it runs; those after it wait for it, as tasks pipelined to a busy lease do.
    const oneLease = maybeSlow.options({ numCpus: 2, schedulingStrategy: { nodeId: cluster().nodes[0]?.nodeId as string, soft: false } })
    await mesh.get(oneLease.remote(0, 0), { timeout: T })
    const refs = Array.from({ length: 40 }, (_, i) => oneLease.remote(i === 5 ? 3000 : 0, i))
    const { ready } = await mesh.wait(refs, { numReturns: 40, timeout: 2000 })
    expect(new Set(ready)).toEqual(new Set(refs.slice(0, 5)))
    // Cancelling the slow one (force) stops its worker: the rest of its batch fails as a crash would, and is retried
    // by its owner; every other task comes back once, with its value.
    await mesh.cancel(refs[5] as never, { force: true })
    const values = await Promise.all(refs.map((r) => mesh.get(r, { timeout: T }).catch((e: Error) => e.name)))
    expect(values[5]).toBe('TaskCancelledError')
    expect(values.filter((_, i) => i !== 5)).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 5))
    await mesh.close()
  })

  it('links that close with tasks and actor calls in flight lose nothing: each runs once, calls in order', async () => {
    const before = await finishedOnNodes()
    const mesh = await cluster().connect()
    const peers = (mesh as unknown as { peers: PeerMesh }).peers
    const sleepy = mesh.remote(async function sleepy(i: number) {
      await new Promise((r) => setTimeout(r, 100))
      return i
    })
    const Log = mesh
      .remote(
        class DropLog {
          items: number[] = []
          add(x: number) {
            this.items.push(x)
            return this.items.length
          }
          all() {
            return this.items
          }
        },
      )
      .options({ numCpus: 0 })
    const log = Log.remote()
    await mesh.get([sleepy.remote(-1), log.add.remote(-1)], { timeout: T }) // leases and links are up
    const tasks = []
    const calls = []
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 25; i++) {
        tasks.push(sleepy.remote(round * 25 + i))
        calls.push(log.add.remote(round * 25 + i))
      }
      // Once a link is open (the last round closed them; a new one takes ~100 ms to open in Node) the pushes leave
      // on it; nothing can have acknowledged them yet (the tasks sleep, a node acknowledges after 20 ms): closing now
      // loses them on the channel, and they must come again through the relay.
      const open = () => cluster().nodes.some((n) => peers.isOpen(n.nodeId))
      for (const t0 = performance.now(); !open() && performance.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 1))
      expect(peers.closeLinks()).toBeGreaterThan(0)
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(await mesh.get(tasks, { timeout: T })).toEqual(Array.from({ length: 100 }, (_, i) => i))
    expect(await mesh.get(calls, { timeout: T })).toEqual(Array.from({ length: 100 }, (_, i) => i + 2))
    expect(await mesh.get(log.all.remote(), { timeout: T })).toEqual([-1, ...Array.from({ length: 100 }, (_, i) => i)])
    expect(mesh.peerStats.resent).toBeGreaterThan(0)
    // Each ran once: one attempt per task, nothing retried.
    await eventually(async () => {
      const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'sleepy']] })
      expect(rows.filter((r) => r.state === 'FINISHED' && r.attempt === 0)).toHaveLength(101)
      return true
    }, 'every sleepy task FINISHED on its first attempt')
    // Ran on the nodes: 101 tasks, 101 calls, the read of the log and the actor's creation; each once.
    expect((await finishedOnNodes()) - before).toBe(101 + 101 + 1 + 1)
    await mesh.close()
  })

  it('the same from a browser driver: its links close mid-flight, and every task and call runs once', async () => {
    // A browser closes a data channel gracefully (what is queued on it still goes), so here what was in flight
    // arrives and is then sent again through the relay: the nodes must drop those copies, not run them twice.
    const page = await cluster().driverPage()
    const nodeIds = cluster().nodes.map((n) => n.nodeId)
    const before = await finishedOnNodes()
    const out = (await page.evaluate(`(async (nodeIds) => {
      const { connect } = await import(location.origin + '/sdk.js')
      const m = await connect()
      const sleepy = m.remote(async function pageSleepy(i) { await new Promise((r) => setTimeout(r, 100)); return i })
      const Log = m.remote(class PageDropLog { constructor() { this.items = [] } add(x) { this.items.push(x); return this.items.length } all() { return this.items } }).options({ numCpus: 0 })
      const log = Log.remote()
      await m.get([sleepy.remote(-1), log.add.remote(-1)], { timeout: ${T} })
      const tasks = [], calls = []
      let closed = 0
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 20; i++) { tasks.push(sleepy.remote(round * 20 + i)); calls.push(log.add.remote(round * 20 + i)) }
        const open = () => nodeIds.some((n) => m.peers.isOpen(n))
        for (const t0 = performance.now(); !open() && performance.now() - t0 < 5000; ) await new Promise((r) => setTimeout(r, 1))
        closed += m.peers.closeLinks()
        await new Promise((r) => setTimeout(r, 20))
      }
      const result = { tasks: await m.get(tasks, { timeout: ${T} }), calls: await m.get(calls, { timeout: ${T} }), all: await m.get(log.all.remote(), { timeout: ${T} }), resent: m.peerStats.resent, closed }
      await m.close()
      return result
    })(${JSON.stringify(nodeIds)})`)) as { tasks: number[]; calls: number[]; all: number[]; resent: number; closed: number }
    expect(out.closed).toBeGreaterThan(0)
    expect(out.tasks).toEqual(Array.from({ length: 60 }, (_, i) => i))
    expect(out.calls).toEqual(Array.from({ length: 60 }, (_, i) => i + 2))
    expect(out.all).toEqual([-1, ...Array.from({ length: 60 }, (_, i) => i)])
    expect(out.resent).toBeGreaterThan(0)
    // Ran on the nodes: 61 tasks, 61 calls, the read of the log and the actor's creation; each once.
    expect((await finishedOnNodes()) - before).toBe(61 + 61 + 1 + 1)
    await page.close()
  })

  it('a browser driver and a Node driver share the cluster at once, and both finish', async () => {
    const page = await cluster().driverPage()
    const fromPage = page.evaluate(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const m = await connect()
      const f = m.remote(async function pageTask(i) { await new Promise((r) => setTimeout(r, 5)); return i + 1 })
      const out = await m.get(Array.from({ length: 300 }, (_, i) => f.remote(i)), { timeout: ${T} })
      await m.close()
      return out.reduce((a, b) => a + b, 0)
    })()`)
    const mesh = await cluster().connect()
    const g = mesh.remote(async function nodeDriverTask(i: number) {
      await new Promise((r) => setTimeout(r, 5))
      return i * 2
    })
    const mine = await mesh.get(
      Array.from({ length: 300 }, (_, i) => g.remote(i)),
      { timeout: T },
    )
    expect(mine.reduce((a, b) => a + b, 0)).toBe(299 * 300)
    expect(await fromPage).toBe((300 * 301) / 2)
    await mesh.close()
    await page.close()
  })

  it("an owner that dies mid-lease takes its tasks with it, and its leases' resources come back", async () => {
    const page = await cluster().driverPage()
    await page.evaluate(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const m = window.doomed = await connect()
      const hang = m.remote(async function doomedHang() { await new Promise((r) => setTimeout(r, 600000)) })
      window.refs = Array.from({ length: 4 }, () => hang.remote())
    })()`)
    const mesh = await cluster().connect()
    await eventually(
      async () =>
        (await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'doomedHang']] })).filter((r) => r.state === 'RUNNING').length ===
        4,
      'the doomed tasks to run',
    )
    await page.close() // the owner's tab closes mid-lease
    await eventually(
      async () => (await mesh.state.listNodes()).every((n) => n.availableResources.CPU === n.resources.CPU),
      'every CPU to be free again',
    )
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'doomedHang']] })
    expect(rows.map((r) => r.state)).toEqual(['FAILED', 'FAILED', 'FAILED', 'FAILED'])
    // The cluster is whole: this driver gets all four CPUs.
    const f = mesh.remote(async function after(i: number) {
      return i
    })
    expect(await mesh.get([f.remote(1), f.remote(2)], { timeout: T })).toEqual([1, 2])
    await mesh.close()
  })

  it('a node that dies mid-lease has its pushed tasks retried by their owner, each delivered once', async () => {
    const extra = await cluster().addNode(2)
    const mesh = await cluster().connect()
    const slow = mesh.remote(async function slowOnExtra(i: number) {
      await new Promise((r) => setTimeout(r, 400))
      return i
    })
    const refs = Array.from({ length: 24 }, (_, i) => slow.remote(i))
    await eventually(
      async () => (await mesh.state.listTasks({ filters: [['nodeId', '=', extra.nodeId]] })).some((r) => r.state === 'RUNNING'),
      'tasks to run on the extra node',
    )
    await extra.close()
    expect(await mesh.get(refs, { timeout: T })).toEqual(Array.from({ length: 24 }, (_, i) => i))
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'slowOnExtra']] })
    expect(rows.filter((r) => r.state === 'FINISHED')).toHaveLength(24)
    expect(rows.filter((r) => r.state === 'FAILED').every((r) => r.errorType === 'NODE_DIED')).toBe(true)
    await mesh.close()
  })
})
