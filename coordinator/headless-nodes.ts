import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'

/** What of a page's globals the functions evaluated in it use. */
type PageGlobals = { document: { body: { dataset: Record<string, string | undefined> } } }

/**
 * Flags that work with Debian's Chromium, headless and in a loopback-only network (docs/platform.md). Never add our own
 * --disable-features: it replaces Playwright's list.
 */
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

export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: findChromium(), args: [...CHROMIUM_ARGS, ...extraArgs], headless: true })
}

export interface HeadlessNodeOptions {
  address: string
  nodes: number
  cpus: number
  token?: string
  objectStoreMemory?: string
  /** More Chromium switches (tests add `--js-flags=--expose-gc` so pages and workers can be collected on demand). */
  extraArgs?: string[]
  /** Forwarded from each node page's console, prefixed with the node's index. */
  onConsole?: (index: number, type: string, text: string) => void
}

export interface HeadlessNode {
  index: number
  nodeId: string
  context: BrowserContext
  page: Page
  /** Closes this node's tab (and its browser), as a volunteer closing theirs. */
  close(): Promise<void>
}

/**
 * One node as a headless Chromium tab with its own persistent profile: an incognito context keeps IndexedDB and
 * OPFS in memory (docs/platform.md), and a node's object store must behave as on a real machine. Each profile is its own
 * browser process, so nodes share nothing (storage, peer connections), as on separate machines.
 */
export async function startHeadlessNode(
  opts: Omit<HeadlessNodeOptions, 'nodes'> & { index: number; name?: string },
): Promise<HeadlessNode> {
  const profile = await mkdtemp(join(tmpdir(), 'shoal-node-'))
  const origin = new URL(opts.address).origin
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: findChromium(),
    args: [...CHROMIUM_ARGS, ...(opts.extraArgs ?? [])],
    headless: true,
  })
  const closeAll = async () => {
    await context.close().catch(() => {})
    await rm(profile, { recursive: true, force: true })
  }
  try {
    // Without this grant Chromium offers no loopback ICE candidate, and no peer connection opens (docs/platform.md).
    await context.grantPermissions(['camera', 'microphone'], { origin })
    const page = context.pages()[0] ?? (await context.newPage())
    page.on('console', (m) => opts.onConsole?.(opts.index, m.type(), m.text()))
    page.on('pageerror', (e) => opts.onConsole?.(opts.index, 'error', e.message))
    const q = new URLSearchParams({ cpus: String(opts.cpus), name: opts.name ?? `headless-${opts.index}` })
    if (opts.token) q.set('token', opts.token)
    if (opts.objectStoreMemory) q.set('objectStoreMemory', opts.objectStoreMemory)
    await page.goto(`${opts.address}/node?${q}`)
    // These functions are sent to the page and run there, alone (no closure): its `document` is typed in each, as the
    // coordinator has no DOM types.
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.body.dataset.state === 'registered', undefined, {
      timeout: 30_000,
    })
    const nodeId = (await page.evaluate(() => (globalThis as unknown as PageGlobals).document.body.dataset.nodeId)) as string
    return { index: opts.index, nodeId, context, page, close: closeAll }
  } catch (e) {
    await closeAll()
    throw e
  }
}

/** Starts N headless nodes (in parallel) and waits until each has registered with the coordinator. */
export async function startHeadlessNodes(opts: HeadlessNodeOptions): Promise<{ nodes: HeadlessNode[]; close(): Promise<void> }> {
  const started = await Promise.allSettled(Array.from({ length: opts.nodes }, (_, index) => startHeadlessNode({ ...opts, index })))
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) {
    await Promise.all(nodes.map((n) => n.close()))
    throw failed.reason
  }
  return { nodes, close: async () => void (await Promise.all(nodes.map((n) => n.close()))) }
}
