import { describe, expect, it } from 'vitest'
import { NodeDiedError } from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

// Tabs close at any moment: that is the normal case, not the exception. A dead node's tasks are retried elsewhere
// (maxRetries), and its actors restart (maxRestarts) or die with ActorDiedError.
const cluster = useCluster({ nodes: 3, cpus: 2 })

describe('node loss', () => {
  it('closing one of three node tabs mid-job still yields all 60 results, each once', async () => {
    const mesh = await cluster().connect()
    const work = mesh.remote(async function work(i: number) {
      await new Promise((r) => setTimeout(r, 300))
      return i
    })
    const refs = Array.from({ length: 60 }, (_, i) => work.remote(i))
    const victim = cluster().nodes[1]
    if (!victim) throw new Error('no node 1')
    // Close the tab once it is running tasks.
    await eventually(
      async () =>
        (
          await mesh.state.listTasks({
            filters: [
              ['nodeId', '=', victim.nodeId],
              ['state', '=', 'RUNNING'],
            ],
          })
        ).length > 0,
      'node 1 to run tasks',
    )
    await victim.close()
    const results = await mesh.get(refs, { timeout: 60_000 })
    expect(results).toEqual(Array.from({ length: 60 }, (_, i) => i))

    const nodes = await mesh.state.listNodes()
    const dead = nodes.find((n) => n.nodeId === victim.nodeId)
    expect(dead?.state).toBe('DEAD')
    expect(dead?.deathReason).toMatch(/connection closed/)
    // One row per attempt (as Ray lists them): the tasks that ran on the dead node have a failed attempt and a retry.
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'work']] })
    expect(new Set(rows.map((r) => r.taskId)).size).toBe(60)
    for (const r of rows.filter((x) => x.state === 'FAILED')) expect(r.errorType).toBe('NODE_DIED')
    expect(rows.filter((r) => r.state === 'FINISHED')).toHaveLength(60)
    // Some tasks were retried (attempt 1) after the node died, on a live node.
    const retried = rows.filter((r) => r.attempt > 0)
    expect(retried.length).toBeGreaterThan(0)
    expect(retried.every((r) => r.nodeId !== victim.nodeId)).toBe(true)
  })

  it('a task with no retries left fails with NodeDiedError naming the lost node', async () => {
    const mesh = await cluster().connect()
    const target = cluster().nodes[2]
    if (!target) throw new Error('no node 2')
    const hang = mesh.remote(async function hang() {
      await new Promise((r) => setTimeout(r, 60_000))
    })
    const ref = hang.options({ maxRetries: 0, schedulingStrategy: { nodeId: target.nodeId, soft: false } }).remote()
    await eventually(
      async () => (await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'hang']] }))[0]?.state === 'RUNNING',
      'hang to run',
    )
    await target.close()
    const err = await mesh.get(ref).catch((e) => e)
    expect(err).toBeInstanceOf(NodeDiedError)
    expect(err.message).toContain(target.nodeId)
  })

  it('a node that misses heartbeats is declared DEAD', async () => {
    const mesh = await cluster().connect()
    const node = cluster().nodes[0]
    if (!node) throw new Error('no node 0')
    // Freeze the page's timers and socket handling, as a hung or suspended tab would.
    await node.page.evaluate(() => {
      const until = Date.now() + 7000
      setTimeout(() => {
        while (Date.now() < until) {
          /* a tab frozen for 7 s */
        }
      }, 0)
    })
    await eventually(
      async () => (await mesh.state.listNodes({ filters: [['nodeId', '=', node.nodeId]] }))[0]?.state === 'DEAD',
      'the frozen node to be DEAD',
      15_000,
    )
    const [row] = await mesh.state.listNodes({ filters: [['nodeId', '=', node.nodeId]] })
    expect(row?.deathReason).toMatch(/missed heartbeats|connection closed/)
  })
})
