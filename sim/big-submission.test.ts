import { afterEach, describe, expect, it } from 'vitest'
import { Cluster } from '../coordinator/cluster.ts'
import { encodeValue } from '../sdk/codec.ts'
import { ValidationError } from '../sdk/errors.ts'
import type { ObjectRef } from '../sdk/object-ref.ts'
import type { FramedTransport } from '../sdk/transport/framed.ts'
import { MemoryNetwork } from './network.ts'
import { Rng } from './rng.ts'
import { SimDriver } from './sim-driver.ts'
import { SimNode } from './sim-node.ts'

// A submission bigger than one frame may carry: it is cut into frames under the coordinator's limit, and whatever the
// coordinator refuses (or what could never fit) fails the refs it carried with a clear error — never a silent hang.
// The real coordinator and SDK, on the simulated network, with a small limit so the test stays small.
const LIMIT = 256 * 1024
let cluster: Cluster
afterEach(() => cluster?.close())

async function world() {
  cluster = new Cluster({ log: () => {}, monitor: false, maxFrameBytes: LIMIT })
  const net = new MemoryNetwork(cluster)
  const rng = new Rng(7)
  const node = new SimNode(net, 'node', 4, () => {})
  const driver = new SimDriver(net, 'driver')
  const frames = { toServer: 0 }
  /** Delivers every frame and finishes every execution with its task id, until nothing moves. */
  const settle = async () => {
    for (let quiet = 0; quiet < 3; ) {
      while (net.deliverOne(rng)) {
        frames.toServer++
        await new Promise((r) => setImmediate(r))
      }
      const running = node.executions
      if (!running.length) {
        quiet++
        await new Promise((r) => setImmediate(r))
        continue
      }
      quiet = 0
      for (const e of running) node.complete(e, { ok: true, returns: [encodeValue(e.task.taskId, 'result')] })
      await new Promise((r) => setImmediate(r))
    }
  }
  await settle()
  const mesh = driver.mesh
  if (!mesh) throw new Error('the driver did not connect')
  return { mesh, driver, settle, frames }
}

const noop = function noop(x: unknown) {
  return x
}

describe('big submissions', () => {
  it('a submission of many frames goes through whole: every task runs and every ref resolves', { timeout: 60_000 }, async () => {
    const { mesh, driver, settle, frames } = await world()
    const f = mesh.remote(noop).options({ numCpus: 0 })
    const refs = Array.from({ length: 8000 }, (_, i) => f.remote(i)) as ObjectRef[]
    for (const r of refs) driver.track(r, 'task')
    await settle()
    // It took many frames: the submission was cut under the limit, none refused.
    expect(frames.toServer).toBeGreaterThan(8)
    expect(driver.submitted.filter((s) => !s.settled)).toHaveLength(0)
    expect(driver.submitted.filter((s) => s.settled?.error)).toHaveLength(0)
    expect(driver.submitted.every((s) => s.settled?.value === s.taskId)).toBe(true)
  })

  it("a frame the coordinator refuses fails exactly the refs it carried, with the coordinator's reason", async () => {
    const { mesh, driver, settle } = await world()
    // A client that thinks the limit is larger (an older SDK, a coordinator that lowered it): its frame is refused.
    const transport = (mesh as unknown as { control: { transport: FramedTransport } }).control.transport
    transport.maxFrameBytes = 64 * LIMIT
    const f = mesh.remote(noop).options({ numCpus: 0 })
    const arg = new Uint8Array(90 * 1024)
    const carried = Array.from({ length: 4 }, () => f.remote(arg)) as ObjectRef[]
    for (const r of carried) driver.track(r, 'task')
    await settle()
    transport.maxFrameBytes = LIMIT
    const fine = f.remote(1) as ObjectRef
    driver.track(fine, 'task')
    await settle()
    for (const s of driver.submitted.slice(0, 4)) {
      expect(s.settled?.error).toBeInstanceOf(ValidationError)
      expect(s.settled?.error?.message).toMatch(/over the 262144-byte limit/)
    }
    expect(driver.submitted[4]?.settled?.value).toBe(fine.id.slice(0, 48))
  })

  it('a single task whose inline arguments could never fit in a frame fails at once, naming the limit', async () => {
    const { mesh, driver, settle } = await world()
    const f = mesh.remote(noop).options({ numCpus: 0 })
    const args = Array.from({ length: 4 }, () => new Uint8Array(90 * 1024))
    const tooBig = (f as unknown as { remote(...a: unknown[]): ObjectRef }).remote(...args)
    driver.track(tooBig, 'task')
    const next = f.remote(2) as ObjectRef
    driver.track(next, 'task')
    await settle()
    expect(driver.submitted[0]?.settled?.error).toBeInstanceOf(ValidationError)
    expect(driver.submitted[0]?.settled?.error?.message).toMatch(/over the coordinator's 262144-byte limit: pass large values with put\(\)/)
    expect(driver.submitted[1]?.settled?.value).toBe(next.id.slice(0, 48))
  })
})
