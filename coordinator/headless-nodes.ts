import { existsSync } from 'node:fs'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

/** Flags that work here (DESIGN.md §8). Never add our own --disable-features: it replaces Playwright's list. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--allow-loopback-in-peer-connection',
]

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable']

/** The system Chromium: $SHOAL_CHROMIUM, else the usual Debian paths. Throws a message that says how to fix it. */
export function findChromium(): string {
  const env = process.env.SHOAL_CHROMIUM
  if (env) {
    if (existsSync(env)) return env
    throw new Error(`SHOAL_CHROMIUM is ${env}, but no file is there`)
  }
  const found = CANDIDATES.find((p) => existsSync(p))
  if (found) return found
  throw new Error(
    `no Chromium found (looked at ${CANDIDATES.join(', ')}). Install it with \`sudo apt-get install -y chromium\`, or set SHOAL_CHROMIUM to its path.`,
  )
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: findChromium(), args: CHROMIUM_ARGS, headless: true })
}

export interface HeadlessNodeOptions {
  address: string
  nodes: number
  cpus: number
  token?: string
  objectStoreMemory?: string
  /** Forwarded from each node page's console, prefixed with the node's index. */
  onConsole?: (index: number, type: string, text: string) => void
}

export interface HeadlessNode {
  index: number
  nodeId: string
  context: BrowserContext
  page: Page
  /** Closes this node's tab, as a volunteer closing theirs. */
  close(): Promise<void>
}

/**
 * Starts N nodes as headless Chromium tabs, each in its own browser context (so storage and peer connections are
 * separate, as on separate machines), and waits until each has registered with the coordinator.
 */
export async function startHeadlessNodes(
  opts: HeadlessNodeOptions,
): Promise<{ nodes: HeadlessNode[]; browser: Browser; close(): Promise<void> }> {
  const browser = await launchChromium()
  const origin = new URL(opts.address).origin
  const start = async (index: number): Promise<HeadlessNode> => {
    const context = await browser.newContext()
    // Without this grant Chromium offers no loopback ICE candidate, and no peer connection opens (PLATFORM.md).
    await context.grantPermissions(['camera', 'microphone'], { origin })
    const page = await context.newPage()
    page.on('console', (m) => opts.onConsole?.(index, m.type(), m.text()))
    page.on('pageerror', (e) => opts.onConsole?.(index, 'error', e.message))
    const q = new URLSearchParams({ cpus: String(opts.cpus), name: `headless-${index}` })
    if (opts.token) q.set('token', opts.token)
    if (opts.objectStoreMemory) q.set('objectStoreMemory', opts.objectStoreMemory)
    await page.goto(`${opts.address}/node?${q}`)
    await page.waitForFunction(() => document.body.dataset.state === 'registered', undefined, { timeout: 30_000 })
    const nodeId = (await page.evaluate(() => document.body.dataset.nodeId)) as string
    return { index, nodeId, context, page, close: () => context.close() }
  }
  const nodes: HeadlessNode[] = []
  try {
    for (let i = 0; i < opts.nodes; i++) nodes.push(await start(i))
  } catch (e) {
    await browser.close()
    throw e
  }
  return {
    nodes,
    browser,
    close: () => browser.close(),
  }
}
