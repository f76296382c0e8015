import { describe, expect, it } from 'vitest'
import { startHeadlessNode } from '../coordinator/headless-nodes.ts'
import { startCoordinator } from '../coordinator/server.ts'
import { eventually } from './fixtures/cluster.ts'

/** Stores of nodes that will not come back are cleaned up: at the next start of a node in that profile. */
describe('stores of nodes that are gone', () => {
  it('the next node started in a browser profile deletes the stores of its closed tabs, and keeps the live ones', async () => {
    const co = await startCoordinator({ port: 0, log: () => {} })
    const a = await startHeadlessNode({ address: co.url, index: 0, cpus: 1 })
    try {
      // More node tabs in the same profile (browser context) as A.
      const openNode = async (name: string) => {
        const page = await a.context.newPage()
        await page.goto(`${co.url}/node?cpus=1&name=${name}`)
        await page.waitForFunction(() => document.body.dataset.state === 'registered', undefined, { timeout: 30_000 })
        return { page, nodeId: (await page.evaluate(() => document.body.dataset.nodeId)) as string }
      }
      const b = await openNode('b')
      const stores = () =>
        b.page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name ?? '').filter((n) => n.startsWith('shoal-plasma-')))
      expect(await stores()).toEqual(expect.arrayContaining([`shoal-plasma-${a.nodeId}`, `shoal-plasma-${b.nodeId}`]))
      await a.page.close() // A's tab closes: its store stays behind, its lock goes with the page
      const c = await openNode('c')
      await eventually(async () => !(await stores()).includes(`shoal-plasma-${a.nodeId}`) || undefined, 'A’s store to be deleted')
      // B is alive (it holds its lock): its store stays; C's own is there.
      expect(await stores()).toEqual(expect.arrayContaining([`shoal-plasma-${b.nodeId}`, `shoal-plasma-${c.nodeId}`]))
    } finally {
      await a.close()
      await co.close()
    }
  })
})
