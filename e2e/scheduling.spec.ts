import { beforeAll, describe, expect, it } from 'vitest'
import type { Mesh } from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})

/** A task that reports which node ran it (from its runtime context). */
const where = async function where(ms: number) {
  await new Promise((r) => setTimeout(r, ms))
  return (self as unknown as { shoalContext: { nodeId: string } }).shoalContext.nodeId
}

describe('scheduling on real nodes', () => {
  it('never runs more tasks on a node than it has CPUs', async () => {
    const f = mesh.remote(where)
    const refs = Array.from({ length: 8 }, () => f.remote(400))
    let maxRunning = 0
    const poll = setInterval(async () => {
      const rows = await mesh.state.listTasks({ filters: [['state', '=', 'RUNNING']] })
      for (const n of cluster().nodes) maxRunning = Math.max(maxRunning, rows.filter((r) => r.nodeId === n.nodeId).length)
    }, 50)
    await mesh.get(refs)
    clearInterval(poll)
    expect(maxRunning).toBeGreaterThan(0)
    expect(maxRunning).toBeLessThanOrEqual(2)
  })

  it('SPREAD puts tasks on every node; node affinity pins them', async () => {
    const f = mesh.remote(where)
    // SPREAD goes round robin over the nodes that can take a task now: wait until the last test's idle leases are
    // back (an idle lease lingers 100 ms for more work of its shape), so both nodes can.
    await eventually(async () => (await mesh.state.listNodes()).every((n) => n.availableResources.CPU === 2), 'every CPU to be free')
    const spread = await mesh.get([
      f.options({ schedulingStrategy: 'SPREAD' }).remote(10),
      f.options({ schedulingStrategy: 'SPREAD' }).remote(10),
    ])
    expect(new Set(spread).size).toBe(2)
    const target = cluster().nodes[1]?.nodeId as string
    const pinned = await mesh.get(
      Array.from({ length: 4 }, () => f.options({ schedulingStrategy: { nodeId: target, soft: false } }).remote(10)),
    )
    expect(new Set(pinned)).toEqual(new Set([target]))
  })

  it('verify: replicas on both real nodes agree on a pure result; a node-dependent or oversized one fails clearly', async () => {
    const sumTo = mesh.remote(function sumTo(n: number) {
      let s = 0
      for (let i = 1; i <= n; i++) s += i
      return s
    })
    expect(await mesh.get(sumTo.options({ verify: { replicas: 2 } }).remote(1000))).toBe(500500)
    // Which node ran it differs per replica: nothing to agree on, and (a tie) nobody to blame.
    const differs = await mesh
      .get(
        mesh
          .remote(where)
          .options({ verify: { replicas: 2 }, maxRetries: 0 })
          .remote(0),
      )
      .catch((e) => e)
    expect(differs.name).toBe('VerificationError')
    for (const n of cluster().nodes) expect(differs.message).toContain(n.nodeId)
    // Verified returns travel to the coordinator to be compared: over 4 MiB is refused by every replica, alike.
    const tooBig = mesh.remote(function tooBig() {
      return new Uint8Array(5 * 1024 * 1024)
    })
    const err = await mesh.get(tooBig.options({ verify: { replicas: 2 } }).remote()).catch((e) => e)
    expect(err.message).toMatch(/verified \(verify.replicas\) and returned over 4194304 bytes/)
    expect((await mesh.state.listNodes()).map((n) => n.quarantined)).toEqual([null, null])
  })

  it('reports a task no node can fit as infeasible (it waits), then runs it when a big node joins', async () => {
    const f = mesh.remote(where)
    const ref = f.options({ numCpus: 6, name: 'needs-six' }).remote(10)
    const summary = await eventually(async () => {
      const s = await mesh.state.summarizeTasks()
      return s.infeasible.length ? s : undefined
    }, 'the task to be reported infeasible')
    expect(summary.infeasible[0]).toMatchObject({ name: 'needs-six', requiredResources: { CPU: 6 } })
    const status = await (await fetch(`${cluster().url}/api/status`)).json()
    expect(status.infeasible).toHaveLength(1)
    const big = await cluster().addNode(8)
    expect(await mesh.get(ref, { timeout: 30_000 })).toBe(big.nodeId)
    expect((await mesh.state.summarizeTasks()).infeasible).toEqual([])
  })

  it('custom resources are counted like CPUs', async () => {
    const f = mesh.remote(where)
    const err = await mesh.get(f.options({ resources: { accelerator: 1 } }).remote(0), { timeout: 1500 }).catch((e) => e)
    expect(err.name).toBe('GetTimeoutError')
    const [row] = await mesh.state.listTasks({ filters: [['state', '=', 'PENDING_NODE_ASSIGNMENT']] })
    expect(row?.infeasible).toBe(true)
  })
})
