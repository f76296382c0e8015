import { describe, expect, it } from 'vitest'
import type { Mesh } from '../sdk/index.ts'
import { useCluster } from './fixtures/cluster.ts'

// Tasks that submit tasks and wait for them (Ray's nested tasks) on a cluster with a single CPU: the waiting task
// gives its CPU back while it waits, as in Ray, or this would deadlock.
const cluster = useCluster({ nodes: 1, cpus: 1 })

describe('nested tasks', () => {
  it('a task that waits for its own sub-tasks does not deadlock a one-CPU cluster', async () => {
    const mesh = await cluster().connect()
    const parent = mesh.remote(async function parent(n: number) {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const child = shoal.remote(function child(i: number) {
        return i * i
      })
      const squares = (await shoal.get(Array.from({ length: n }, (_, i) => child.remote(i)))) as number[]
      return squares.reduce((a, b) => a + b, 0)
    })
    expect(await mesh.get(parent.remote(4), { timeout: 30_000 })).toBe(0 + 1 + 4 + 9)
    // The CPU is whole again afterwards, once the idle leases are returned (an idle lease lingers 100 ms for more
    // work of its shape; Ray returns it at once: see the README's differences).
    const cpuFree = async () => (await mesh.state.listNodes())[0]?.availableResources.CPU
    const deadline = Date.now() + 5000
    while ((await cpuFree()) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    expect(await cpuFree()).toBe(1)
  })
})
