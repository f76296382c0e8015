import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import { launchChromium, startHeadlessNodes } from '../coordinator/headless-nodes.ts'

/**
 * A benchmark cluster: the coordinator in its own process (so the driver measuring it does not share its thread)
 * and headless nodes; plus a baseline page in the same browser.
 */
export async function benchCluster(nodes: number, cpus: number, objectStoreMemory?: string, coordinatorArgs: string[] = []) {
  const port = 20000 + Math.floor(Math.random() * 20000)
  const url = `http://127.0.0.1:${port}`
  const cli = fileURLToPath(new URL('../coordinator/shoal.mjs', import.meta.url))
  const coordinator: ChildProcess = spawn(process.execPath, [cli, 'start', '--port', String(port), ...coordinatorArgs], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    coordinator.once('exit', (code) => reject(new Error(`coordinator exited with ${code}`)))
    coordinator.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('Shoal coordinator on')) resolve()
    })
  })
  const h = await startHeadlessNodes({ address: url, nodes, cpus, ...(objectStoreMemory && { objectStoreMemory }) })
  const browser = await launchChromium()
  const baseline: Page = await (await browser.newContext()).newPage()
  await baseline.goto(`${url}/bench/baseline.html`)
  await baseline.waitForFunction(() => document.body.dataset.state === 'ready')
  return {
    url,
    nodes: h.nodes,
    browser,
    baseline,
    async stop() {
      await h.close()
      await browser.close()
      coordinator.kill('SIGTERM')
    },
  }
}
export type BenchCluster = Awaited<ReturnType<typeof benchCluster>>
