import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from '../coordinator/cluster.ts'
import { startCoordinator } from '../coordinator/server.ts'
import { driver, node } from '../coordinator/test-harness.ts'
import { type JobId, newTaskId, objectIdOf, randomHex, type TaskId } from './ids.ts'
import { type ObjectSource, PeerSource, RelaySource } from './object-sources.ts'
import { OBJECT_CHUNK_BYTES } from './protocol/index.ts'
import { installNodeWebRTC } from './transport/node-webrtc.ts'

/** One way to move an object, set up with a holder that can be made to die. */
interface Way {
  source: ObjectSource
  holder: string
  /** The holder keeps these bytes; returns the object's id. */
  hold(bytes: Uint8Array): string
  /** A fresh id nobody holds (the relay knows it lives on the holder, but the holder lost it). */
  missing(): string
  /** The holder goes away, mid-transfer if one is under way. */
  kill(): void
  close(): Promise<void>
}

const pattern = (n: number, seed: number) => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} hung for ${ms} ms`)), ms))])

/** Two participants in a real peer mesh, in Node (node-datachannel), signaled by a real coordinator. */
async function peerWay(): Promise<Way> {
  const co = await startCoordinator({ port: 0, log: () => {} })
  if (!(await installNodeWebRTC())) throw new Error('node-datachannel did not load')
  // After the install: PeerJS looks for WebRTC when it loads.
  const { PeerMesh } = await import('./transport/peer-mesh.ts')
  const [h, p] = [`h-${randomHex(8)}`, `p-${randomHex(8)}`]
  const holder = new PeerMesh(h, co.url, '/peerjs', [], co.cluster.credentials.ticketFor(h))
  const puller = new PeerMesh(p, co.url, '/peerjs', [], co.cluster.credentials.ticketFor(p))
  await Promise.all([holder.start(), puller.start()])
  const store = new Map<string, Uint8Array>()
  holder.source = async (id) => store.get(id)
  // The link opens before the cases run (a first link may take seconds on a loaded machine; pulls do not time that).
  for (let i = 0; ; i++) {
    try {
      await puller.ping(holder.peerId)
      break
    } catch (e) {
      if (i === 2) throw e
    }
  }
  return {
    source: new PeerSource(puller),
    holder: holder.peerId,
    hold(bytes) {
      const id = randomHex(28)
      store.set(id, bytes)
      return id
    },
    missing: () => randomHex(28),
    kill: () => holder.stop(),
    async close() {
      puller.stop()
      holder.stop()
      await co.close()
    },
  }
}

/**
 * The coordinator's relay (its real object transfers) between a holder node and a puller, both in memory: the
 * holder answers `upload-object` a chunk at a time, as a node's socket would, and stops when it dies.
 */
async function relayWay(): Promise<Way> {
  const cluster = new Cluster({ log: () => {} })
  const holder = await node(cluster, 1)
  const puller = await driver(cluster)
  const store = new Map<string, Uint8Array>()
  let dead = false
  const source = new RelaySource((m) => puller.send(m))
  let seenHolder = 0
  let seenPuller = 0
  const pump = setInterval(() => {
    for (const m of holder.received.slice(seenHolder)) {
      if (m.type !== 'upload-object') continue
      const bytes = store.get(m.objectId)
      if (!bytes) {
        holder.send({ type: 'upload-failed', objectId: m.objectId as never, reason: 'not in this node’s store' })
        continue
      }
      void (async () => {
        for (let offset = 0; offset < Math.max(1, bytes.byteLength); offset += OBJECT_CHUNK_BYTES) {
          if (dead) return
          const data = bytes.subarray(offset, offset + OBJECT_CHUNK_BYTES)
          holder.send({ type: 'object-chunk', objectId: m.objectId as never, offset, total: bytes.byteLength, data })
          await new Promise((r) => setTimeout(r, 10)) // a chunk per 10 ms: 100 MiB/s, in the range of a real socket
        }
      })()
    }
    seenHolder = holder.received.length
    for (const m of puller.received.slice(seenPuller)) {
      if (m.type === 'object-chunk') source.onChunk(m.objectId, m.offset, m.total, m.data)
      if (m.type === 'objects') for (const o of m.objects) if (o.error) source.onFailed(o.objectId, o.error.message)
    }
    seenPuller = puller.received.length
  }, 1)
  const register = () => {
    const id = objectIdOf(newTaskId(puller.jobId as JobId) as TaskId, 1)
    cluster.objects.create(id, puller.jobId, undefined)
    return id
  }
  return {
    source,
    holder: holder.nodeId,
    hold(bytes) {
      const id = register()
      store.set(id, bytes)
      cluster.objects.resolve(id, { size: bytes.byteLength, location: holder.nodeId }, false)
      return id
    },
    missing() {
      const id = register()
      cluster.objects.resolve(id, { size: 10, location: holder.nodeId }, false)
      return id
    },
    kill() {
      dead = true
      holder.disconnect()
    },
    async close() {
      clearInterval(pump)
      source.close('closed')
      cluster.close()
    },
  }
}

// The contract every object source keeps (object-sources.ts), run against each.
for (const [name, make] of [
  ['peer', peerWay],
  ['relay', relayWay],
] as const) {
  describe(`object source contract: ${name}`, () => {
    let way: Way
    beforeAll(async () => {
      way = await make()
    }, 20_000)
    afterAll(() => way?.close())

    it('gives the exact bytes of the object asked for, whatever its size; concurrent pulls get their own', async () => {
      const sizes = [0, 1, 300 * 1024, 3 * 1024 * 1024 + 7]
      const ids = sizes.map((n, i) => way.hold(pattern(n, i)))
      const got = await within(Promise.all(ids.map((id) => way.source.pull(id, way.holder))), 15_000, 'the pulls')
      // Buffer.equals: vitest's deep equality walks a 3 MiB array for seconds.
      expect(got.map((bytes, i) => Buffer.from(bytes).equals(Buffer.from(pattern(sizes[i] as number, i))))).toEqual(sizes.map(() => true))
      expect(got.map((b) => b.byteLength)).toEqual(sizes)
    }, 20_000)

    it('refuses, with a reason and without hanging, an object its holder does not have', async () => {
      const e = await within(way.source.pull(way.missing(), way.holder), 10_000, 'the pull').catch((x: Error) => x)
      expect(e).toBeInstanceOf(Error)
      expect((e as Error).message).toMatch(/./)
    })

    it('never hangs, nor gives wrong bytes, when the holder dies mid-transfer', async () => {
      const expected = pattern(12 * 1024 * 1024, 9)
      const id = way.hold(expected)
      const pull = way.source.pull(id, way.holder)
      await new Promise((r) => setTimeout(r, 50))
      way.kill()
      const outcome = await within(pull, 30_000, 'the pull').catch((x: Error) => x)
      // It fails (the usual case); or, where the holder's channel still drained what it had queued before it closed
      // (node-datachannel on a loaded machine), the whole object arrived: then it must be exactly the object.
      if (outcome instanceof Error) expect(outcome.message).toMatch(/./)
      else expect(Buffer.from(outcome).equals(Buffer.from(expected))).toBe(true)
    }, 40_000)
  })
}

describe('the relay source', () => {
  it('starts an object over when the relay fails over to another holder (a chunk at offset 0 again)', async () => {
    const sent: unknown[] = []
    const s = new RelaySource((m) => sent.push(m))
    const id = 'ab'.repeat(28)
    const pull = s.pull(id)
    expect(s.pull(id)).toBe(pull) // one transfer for concurrent pulls
    expect(sent).toHaveLength(1)
    s.onChunk(id, 0, 6, new Uint8Array([1, 1]))
    s.onChunk(id, 2, 6, new Uint8Array([1, 1]))
    s.onChunk(id, 0, 6, new Uint8Array([2, 2])) // the first holder died; another starts over
    s.onChunk(id, 2, 6, new Uint8Array([2, 2]))
    s.onChunk(id, 4, 6, new Uint8Array([2, 2]))
    expect(await pull).toEqual(new Uint8Array([2, 2, 2, 2, 2, 2]))
    expect(s.onChunk(id, 0, 6, new Uint8Array([3]))).toBe(false) // no longer its: the caller's (a placement)
  })

  it('refuses a chunk that would write out of bounds, failing the pull instead', async () => {
    const s = new RelaySource(() => {})
    const pull = s.pull('cd'.repeat(28))
    s.onChunk('cd'.repeat(28), 4, 6, new Uint8Array([1, 1, 1]))
    await expect(pull).rejects.toThrow(/does not fit/)
  })
})
