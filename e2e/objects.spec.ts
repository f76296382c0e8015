import { beforeAll, describe, expect, it } from 'vitest'
import { type Mesh, ObjectLostError } from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

// The seed's "object management and dependency resolution" and the 100-feet view of the object store.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2, objectStoreMemory: '1GiB' })
beforeAll(async () => {
  mesh = await cluster().connect()
})

const MiB = 1024 * 1024
/** A checksum both sides compute the same way (FNV-1a over a sample of every 61st byte, plus the length). */
function checksum(a: Uint8Array): number {
  let h = 0x811c9dc5
  for (let i = 0; i < a.length; i += 61) h = Math.imul(h ^ (a[i] as number), 16777619)
  return (h ^ a.length) >>> 0
}
const checksumTask = async function checksumTask(a: Uint8Array) {
  let h = 0x811c9dc5
  for (let i = 0; i < a.length; i += 61) h = Math.imul(h ^ (a[i] as number), 16777619)
  return (h ^ a.length) >>> 0
}
const makeTask = function make(size: number, seed: number) {
  const a = new Uint8Array(size)
  for (let i = 0; i < size; i++) a[i] = (i * seed + (i >> 12)) & 255
  return a
}
const make = (size: number, seed: number) => makeTask(size, seed)
const largeObjects = async (m: Mesh, min: number) => (await m.state.listObjects()).filter((o) => o.size >= min)

describe('objects', () => {
  it('put returns a ref; tasks wait for ref arguments and get values; nested refs stay refs', async () => {
    const small = await mesh.put({ a: 1, list: [1, 2, 3] })
    const slow = mesh.remote(async function slow(x: number) {
      await new Promise((r) => setTimeout(r, 500))
      return x
    })
    const pending = slow.remote(41)
    const add = mesh.remote(function add(o: { a: number }, n: number, nested: { ref: unknown }[]) {
      return [o.a + n, String(nested[0]?.ref).slice(0, 10)]
    })
    const out = add.remote(small, pending, [{ ref: small }])
    const [row] = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'add']] })
    expect(row?.state).toBe('PENDING_ARGS_AVAIL')
    expect(await mesh.get(out)).toEqual([42, 'ObjectRef('])
    expect(await mesh.get(small)).toEqual({ a: 1, list: [1, 2, 3] })
    const other = await cluster().connect()
    expect(await other.get(small)).toEqual({ a: 1, list: [1, 2, 3] })
    // A ref returned inside a value stays a ref, and the object stays alive for whoever receives it.
    const wrap = mesh.remote(function wrap(x: { r: unknown }) {
      return { inner: x.r }
    })
    const { inner } = (await mesh.get(wrap.remote({ r: small }))) as { inner: typeof small }
    expect(String(inner)).toBe(String(small))
    expect(await mesh.get(inner)).toEqual({ a: 1, list: [1, 2, 3] })
  })

  it('the seed model: passing one 64 MiB buffer by value to 3 tasks stores it once, like put', async () => {
    const m1 = await cluster().connect()
    const predict = m1.remote(function predict(model: Uint8Array, input: number) {
      let s = 0
      for (let i = 0; i < model.length; i += 4096) s += model[i] as number
      return s * input
    })
    const model = new Uint8Array(64 * MiB).fill(1)
    const byValue = await m1.get([0, 1, 2].map((i) => predict.remote(model, i)))
    expect(byValue).toEqual([0, 16384, 32768])
    expect(await largeObjects(m1, 64 * MiB)).toHaveLength(1)

    const modelRef = await m1.put(new Uint8Array(64 * MiB).fill(1))
    expect(await m1.get([0, 1, 2].map((i) => predict.remote(modelRef, i)))).toEqual([0, 16384, 32768])
    expect(await largeObjects(m1, 64 * MiB)).toHaveLength(2) // the by-value model and the put one: one copy each
    await m1.close()
    // Once the job ends nothing refers to them: they are gone from the directory.
    await eventually(async () => (await largeObjects(mesh, 64 * MiB)).length === 0, 'the models to be freed')
  })

  it('a 16 MiB result made on one node is consumed by a task pinned to another, intact', async () => {
    const [a, b] = cluster().nodes
    if (!a || !b) throw new Error('two nodes expected')
    const made = mesh
      .remote(makeTask)
      .options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
      .remote(16 * MiB, 7)
    const sum = await mesh.get(
      mesh
        .remote(checksumTask)
        .options({ schedulingStrategy: { nodeId: b.nodeId, soft: false } })
        .remote(made),
    )
    expect(sum).toBe(checksum(make(16 * MiB, 7)))
    const [row] = (await mesh.state.listObjects()).filter((o) => o.objectId === made.id)
    // b pulled it over WebRTC and became a second location.
    expect(new Set(row?.locations)).toEqual(new Set([a.nodeId, b.nodeId]))
    // And the driver (Node, no WebRTC) gets it through the coordinator's relay.
    const back = await mesh.get(made)
    expect(back.byteLength).toBe(16 * MiB)
    expect(checksum(back)).toBe(checksum(make(16 * MiB, 7)))
  })

  it('locality: a task goes to the node that holds its large argument', async () => {
    const [, b] = cluster().nodes
    if (!b) throw new Error('node b expected')
    const made = mesh
      .remote(makeTask)
      .options({ schedulingStrategy: { nodeId: b.nodeId, soft: false } })
      .remote(4 * MiB, 3)
    const where = mesh.remote(function where(_a: Uint8Array) {
      return (self as unknown as { shoalContext: { nodeId: string } }).shoalContext.nodeId
    })
    expect(await mesh.get(where.remote(made))).toBe(b.nodeId)
  })

  it('a node with a 96 MiB store takes 8 x 24 MiB objects by spilling to OPFS, and every one reads back intact', async () => {
    const small = await cluster().addNode(1, '96MiB')
    const pinned = mesh.remote(makeTask).options({ schedulingStrategy: { nodeId: small.nodeId, soft: false } })
    const refs = Array.from({ length: 8 }, (_, i) => pinned.remote(24 * MiB, i + 1))
    await mesh.wait(refs, { numReturns: 8 })
    const node = await eventually(async () => {
      const [n] = await mesh.state.listNodes({ filters: [['nodeId', '=', small.nodeId]] })
      return n && n.objectStoreSpilled > 0 ? n : undefined
    }, 'the node to report spilled bytes')
    expect(node.objectStoreUsed).toBeLessThanOrEqual(96 * MiB)
    const rows = (await mesh.state.listObjects()).filter((o) => refs.some((r) => r.id === o.objectId))
    expect(rows.filter((r) => r.spilled).length).toBeGreaterThan(0)
    const log = (await small.page.locator('#log').textContent()) ?? ''
    expect(log).toMatch(/Spilled \d+ MiB, \d+ objects, write throughput \d+ MiB\/s/)
    for (let i = 0; i < refs.length; i++) {
      const back = await mesh.get(refs[i] as (typeof refs)[number])
      expect(checksum(back)).toBe(checksum(make(24 * MiB, i + 1)))
    }
  })

  it('an object disappears from every store once nothing refers to it', async () => {
    const m2 = await cluster().connect()
    const [a, b] = cluster().nodes
    if (!a || !b) throw new Error('two nodes expected')
    const made = m2
      .remote(makeTask)
      .options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
      .remote(2 * MiB, 5)
    await m2.get(
      m2
        .remote(checksumTask)
        .options({ schedulingStrategy: { nodeId: b.nodeId, soft: false } })
        .remote(made),
    )
    const id = made.id
    const inStore = (n: typeof a) =>
      n.page.evaluate((oid) => (window as unknown as { shoalNode: { store: { has(id: string): boolean } } }).shoalNode.store.has(oid), id)
    expect(await inStore(a)).toBe(true)
    expect(await inStore(b)).toBe(true)
    await m2.close()
    await eventually(async () => !(await mesh.state.listObjects()).some((o) => o.objectId === id), 'the object to leave the directory')
    await eventually(async () => !(await inStore(a)) && !(await inStore(b)), 'both nodes to delete it')
    const inIdb = await a.page.evaluate(
      async ([oid, nodeId]) => {
        const db = await new Promise<IDBDatabase>((res, rej) => {
          const r = indexedDB.open(`shoal-plasma-${nodeId}`)
          r.onsuccess = () => res(r.result)
          r.onerror = () => rej(r.error)
        })
        const v = await new Promise((res) => {
          const r = db
            .transaction('objects')
            .objectStore('objects')
            .get(oid as string)
          r.onsuccess = () => res(r.result)
        })
        db.close()
        return v !== undefined
      },
      [id, a.nodeId],
    )
    expect(inIdb).toBe(false)
  })

  it('a browser driver moves large objects to and from nodes over WebRTC, not through the coordinator', async () => {
    const page = await cluster().driverPage()
    const out = await page.evaluate<{
      sum: number
      len: number
      first: number
      stats: { peerBytes: number; relayBytes: number }
      putId: string
      peerIdLike: boolean
    }>(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const mesh = await connect()
      const ref = await mesh.put(new Uint8Array(4 * 1024 * 1024).fill(9))
      const double = mesh.remote(function double(a) { return a.map((x) => x * 2) })
      const back = await mesh.get(double.remote(ref))
      let sum = 0
      for (let i = 0; i < back.length; i += 1024) sum += back[i]
      const [row] = await mesh.state.listObjects({ filters: [['objectId', '=', ref.id]] })
      const stats = { ...mesh.transferStats }
      await mesh.close()
      return { sum, len: back.length, first: back[0], stats, putId: ref.id, peerIdLike: /^d-[0-9a-f]{54}$/.test(row.locations[0]) }
    })()`)
    expect({ sum: out.sum, len: out.len, first: out.first }).toEqual({ sum: 4096 * 18, len: 4 * MiB, first: 18 })
    // The put stayed in the page (its location is the driver's peer id); the node pulled it and the result came back
    // peer to peer: nothing crossed the coordinator.
    expect(out.peerIdLike).toBe(true)
    expect(out.stats.peerBytes).toBeGreaterThanOrEqual(4 * MiB)
    expect(out.stats.relayBytes).toBe(0)
    await page.context().close()
  })

  it('a pull cut mid-way (holder closed) is retried from another location', async () => {
    const [a] = cluster().nodes
    if (!a) throw new Error('node a expected')
    const holder = await cluster().addNode(1)
    const reader = await cluster().addNode(1)
    const made = mesh
      .remote(makeTask)
      .options({ schedulingStrategy: { nodeId: holder.nodeId, soft: false } })
      .remote(48 * MiB, 11)
    // A second copy on node a.
    await mesh.get(
      mesh
        .remote(checksumTask)
        .options({ schedulingStrategy: { nodeId: a.nodeId, soft: false } })
        .remote(made),
    )
    const reading = mesh.get(
      mesh
        .remote(checksumTask)
        .options({ schedulingStrategy: { nodeId: reader.nodeId, soft: false } })
        .remote(made),
    )
    // Close the first holder while the reader is pulling from it.
    await eventually(
      async () =>
        (await mesh.state.listTasks({ filters: [['nodeId', '=', reader.nodeId]] })).some(
          (t) => t.state === 'RUNNING' || t.state === 'SUBMITTED_TO_WORKER',
        ),
      'the reader to start',
      10_000,
    )
    await holder.close()
    expect(await reading).toBe(checksum(make(48 * MiB, 11)))
  })

  it('an object whose only copy died with its node gives ObjectLostError', async () => {
    const doomed = await cluster().addNode(1)
    const made = mesh
      .remote(makeTask)
      .options({ schedulingStrategy: { nodeId: doomed.nodeId, soft: false } })
      .remote(1 * MiB, 2)
    await mesh.wait([made])
    await doomed.close()
    await eventually(
      async () => (await mesh.state.listNodes({ filters: [['nodeId', '=', doomed.nodeId]] }))[0]?.state === 'DEAD',
      'the node to die',
    )
    const err = await mesh.get(made).catch((e: Error) => e)
    expect(err).toBeInstanceOf(ObjectLostError)
    expect((err as Error).message).toContain(doomed.nodeId)
  })
})
