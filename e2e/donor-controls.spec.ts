import type { Page } from 'playwright-core'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Mesh } from '../sdk/index.ts'
import { eventually, type TestCluster, useCluster } from './fixtures/cluster.ts'

// The person who opens /node decides what their tab gives: CPUs (live), Pause / Resume, Leave (a graceful drain, as
// Ray's drain-node), and Clear stored data. Every control is found as a user finds it: by its role and label.
const cluster = useCluster({ nodes: 2, cpus: 2 })
let mesh: Mesh
beforeAll(async () => {
  mesh = await cluster().connect()
})

/** Runs `ms`, then says which node ran it and when it ran (the worker's clock is this machine's). */
const span = async function span(ms: number) {
  const start = Date.now()
  await new Promise((r) => setTimeout(r, ms))
  return { node: (self as unknown as { shoalContext: { nodeId: string } }).shoalContext.nodeId, start, end: Date.now() }
}
type Span = { node: string; start: number; end: number }

/** The most spans that overlapped at once. */
function maxOverlap(spans: readonly Span[]): number {
  const edges = spans.flatMap((s) => [
    { t: s.start, d: 1 },
    { t: s.end, d: -1 },
  ])
  edges.sort((a, b) => a.t - b.t || a.d - b.d)
  let now = 0
  let max = 0
  for (const e of edges) max = Math.max(max, (now += e.d))
  return max
}

const nodeRow = async (nodeId: string) => (await mesh.state.listNodes()).find((n) => n.nodeId === nodeId)
const nodes = (c: TestCluster) => {
  const [a, b] = c.nodes
  if (!a || !b) throw new Error('two nodes expected')
  return { a, b }
}

async function setCpus(page: Page, cpus: number): Promise<void> {
  const input = page.getByLabel('CPUs')
  await input.fill(String(cpus))
  await input.press('Tab') // the change is committed as the field loses focus
}

describe('donor controls on /node', () => {
  it('changes the CPUs live: listNodes shows the new total, and concurrency there follows', async () => {
    const { a } = nodes(cluster())
    const pinned = mesh.remote(span).options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })

    await setCpus(a.page, 1)
    await eventually(async () => (await nodeRow(a.nodeId))?.resources.CPU === 1, 'listNodes to show 1 CPU')
    const one = await mesh.get(Array.from({ length: 4 }, () => pinned.remote(300)))
    expect(maxOverlap(one)).toBe(1)

    await setCpus(a.page, 3)
    await eventually(async () => (await nodeRow(a.nodeId))?.resources.CPU === 3, 'listNodes to show 3 CPUs')
    await expect.poll(() => a.page.evaluate(() => sessionStorage.getItem('shoal-node-settings'))).toContain('"cpus":3')
    const three = await mesh.get(Array.from({ length: 6 }, () => pinned.remote(800)))
    expect(maxOverlap(three)).toBeGreaterThanOrEqual(2)
    expect(maxOverlap(three)).toBeLessThanOrEqual(3)

    await setCpus(a.page, 2)
    await eventually(async () => (await nodeRow(a.nodeId))?.resources.CPU === 2, 'listNodes to show 2 CPUs')
  })

  it('Pause: running tasks finish, nothing new is placed there; Resume brings work back', async () => {
    const { a, b } = nodes(cluster())
    const f = mesh.remote(span)
    const onA = f.options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
    // Two long tasks run on A when it is paused: they finish there.
    const running = [onA.remote(1500), onA.remote(1500)]
    await eventually(
      async () =>
        (
          await mesh.state.listTasks({
            filters: [
              ['nodeId', '=', a.nodeId],
              ['state', '=', 'RUNNING'],
            ],
          })
        ).length === 2,
      'two tasks running on A',
    )
    await a.page.screenshot({ path: '/tmp/donor-node-running.png', fullPage: true })
    await a.page.getByRole('button', { name: 'Pause' }).click()
    await eventually(async () => (await nodeRow(a.nodeId))?.paused, 'listNodes to show A paused')
    expect((await nodeRow(a.nodeId))?.state).toBe('ALIVE')
    await expect.poll(() => a.page.getByRole('button', { name: 'Resume' }).isEnabled()).toBe(true)
    expect(await a.page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true)

    // Work pinned to A waits; other work goes to B only.
    const pinned = onA.remote(0)
    const elsewhere = await mesh.get(Array.from({ length: 6 }, () => f.remote(100)))
    expect(new Set(elsewhere.map((s) => s.node))).toEqual(new Set([b.nodeId]))
    expect((await mesh.get(running)).map((s) => s.node)).toEqual([a.nodeId, a.nodeId])
    expect((await mesh.wait([pinned], { numReturns: 1, timeout: 0 })).ready).toHaveLength(0)
    await a.page.screenshot({ path: '/tmp/donor-node-paused.png', fullPage: true })

    await a.page.getByRole('button', { name: 'Resume' }).click()
    expect((await mesh.get(pinned)).node).toBe(a.nodeId)
    expect((await nodeRow(a.nodeId))?.paused).toBe(false)
    // Unpinned work reaches A again: with B's two CPUs busy, A takes the rest.
    const both = await mesh.get(Array.from({ length: 8 }, () => f.remote(400)))
    expect(new Set(both.map((s) => s.node))).toEqual(new Set([a.nodeId, b.nodeId]))
  })

  it('Leave drains the node: running tasks finish, its only copy of an object moves, every result comes once', async () => {
    const { a, b } = nodes(cluster())
    // The only copy of a 4 MiB object, on A, held by this driver.
    const make = mesh.remote(function make(n: number) {
      const bytes = new Uint8Array(n)
      for (let i = 0; i < n; i++) bytes[i] = i % 251
      return bytes
    })
    const big = make.options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } }).remote(4 * 1024 * 1024)
    await mesh.wait([big], { numReturns: 1, timeout: 30_000 })
    const row = await eventually(
      async () => (await mesh.state.listObjects()).find((o) => o.objectId === big.id && o.locations.length),
      'the object to be listed',
    )
    expect(row.locations).toEqual([a.nodeId])

    // Tasks running on A when its donor leaves, and more waiting (soft affinity: they may go elsewhere).
    const onA = mesh.remote(span).options({ schedulingStrategy: { nodeId: a.nodeId, soft: true } })
    const refs = Array.from({ length: 8 }, () => onA.remote(3000))
    await eventually(
      async () =>
        (
          await mesh.state.listTasks({
            filters: [
              ['nodeId', '=', a.nodeId],
              ['state', '=', 'RUNNING'],
              ['name', '=', 'span'],
            ],
          })
        ).length > 0,
      'tasks running on A',
    )
    await a.page.getByRole('button', { name: 'Leave' }).click()
    await eventually(async () => (await nodeRow(a.nodeId))?.draining, 'listNodes to show A leaving')

    const results = await mesh.get(refs, { timeout: 60_000 })
    expect(results).toHaveLength(8)
    expect(results.some((s) => s.node === a.nodeId)).toBe(true)
    await eventually(async () => (await nodeRow(a.nodeId))?.state === 'DEAD', 'A to be gone', 60_000)
    expect((await nodeRow(a.nodeId))?.deathReason).toMatch(/drained/)
    await expect.poll(() => a.page.evaluate(() => document.body.dataset.state)).toBe('left')

    // Each task ran once: one attempt, none retried (it finished where it ran, or started on B).
    const rows = (await mesh.state.listTasks({ filters: [['name', '=', 'span']] })).filter((r) =>
      refs.some((ref) => ref.id.startsWith(r.taskId)),
    )
    expect(rows.map((r) => [r.state, r.attempt])).toEqual(refs.map(() => ['FINISHED', 0]))

    // The object is still readable, from B now.
    const moved = await mesh.state.listObjects()
    expect(moved.find((o) => o.objectId === big.id)?.locations).toEqual([b.nodeId])
    const bytes = (await mesh.get(big)) as Uint8Array
    expect(bytes.byteLength).toBe(4 * 1024 * 1024)
    expect(bytes[1000]).toBe(1000 % 251)
    expect(bytes[bytes.byteLength - 1]).toBe((bytes.byteLength - 1) % 251)
    await a.page.screenshot({ path: '/tmp/donor-node-left.png', fullPage: true })

    // Clear stored data: this node's IndexedDB database and OPFS directory are gone.
    const clear = a.page.getByRole('button', { name: 'Clear stored data' })
    await expect.poll(() => clear.isEnabled()).toBe(true)
    const storesOf = (page: Page, nodeId: string) =>
      page.evaluate(async (id) => {
        const dbs = (await indexedDB.databases()).map((d) => d.name).filter((n) => n?.endsWith(id))
        const root = await navigator.storage.getDirectory()
        const dirs: string[] = []
        for await (const name of (root as unknown as { keys(): AsyncIterable<string> }).keys()) if (name.endsWith(id)) dirs.push(name)
        return [...dbs, ...dirs]
      }, nodeId)
    expect(await storesOf(a.page, a.nodeId)).toContain(`shoal-plasma-${a.nodeId}`)
    await clear.click()
    await expect.poll(() => storesOf(a.page, a.nodeId)).toEqual([])
    await expect.poll(() => a.page.getByRole('status').textContent()).toMatch(/Stored data cleared/)
  })
})
