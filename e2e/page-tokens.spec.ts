import type { Browser, Page, Request } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from '../coordinator/headless-nodes.ts'
import { type RunningCoordinator, startCoordinator } from '../coordinator/server.ts'
import { eventually } from './fixtures/cluster.ts'

// The pages take `?token=` from their address: they keep it for the tab, send it as a header, and show it nowhere.
// 16 characters at least: the coordinator refuses shorter tokens.
const TOKEN = 'T0ken-abc-0123456789'

let coordinator: RunningCoordinator
let browser: Browser

beforeAll(async () => {
  coordinator = await startCoordinator({ port: 0, token: TOKEN, log: () => {} })
  browser = await launchChromium()
})

afterAll(async () => {
  await browser?.close()
  await coordinator?.close()
})

/** A fresh tab (its own sessionStorage) at `path`, with every request and console line it makes. */
async function open(path: string): Promise<{ page: Page; requests: Request[]; logs: string[] }> {
  const context = await browser.newContext()
  // Without this grant Chromium offers no loopback ICE candidate, and a node page's peer mesh cannot open.
  await context.grantPermissions(['camera', 'microphone'], { origin: coordinator.url })
  const page = await context.newPage()
  const requests: Request[] = []
  const logs: string[] = []
  page.on('request', (r) => requests.push(r))
  page.on('console', (m) => logs.push(m.text()))
  page.on('pageerror', (e) => logs.push(e.message))
  await page.goto(coordinator.url + path)
  return { page, requests, logs }
}

/** Nothing after the page's own address carries the token: not an asset's address, not a Referer. */
async function expectNoTokenAfterLoad(requests: Request[]): Promise<void> {
  for (const r of requests.slice(1)) {
    expect(r.url()).not.toContain(TOKEN)
    expect((await r.allHeaders()).referer ?? '').not.toContain(TOKEN)
  }
}

const visible = (page: Page, testId: string) => page.waitForSelector(`[data-testid=${testId}]:not([hidden])`, { timeout: 15_000 })

describe('tokens in page addresses', () => {
  it('the dashboard keeps ?token= for the tab, strips it from the address and sends it as a bearer token', async () => {
    const { page, requests, logs } = await open(`/dashboard/?token=${TOKEN}&keep=1#here`)
    await page.waitForFunction(() => document.getElementById('live')?.textContent?.startsWith('live'), undefined, { timeout: 15_000 })
    expect(await page.textContent('[data-testid=cluster-status]')).not.toMatch(/Connecting|No access/)
    expect(await page.isHidden('[data-testid=auth-banner]')).toBe(true)

    // Only the token left the address: the other parameter and the hash are still there.
    const url = new URL(page.url())
    expect(url.searchParams.has('token')).toBe(false)
    expect(url.searchParams.get('keep')).toBe('1')
    expect(url.hash).toBe('#here')
    expect(await page.evaluate(() => sessionStorage.getItem('shoal.token'))).toBe(TOKEN)

    const api = requests.filter((r) => new URL(r.url()).pathname.startsWith('/api/'))
    expect(api.length).toBeGreaterThan(0)
    for (const r of api) expect(r.headers().authorization).toBe(`Bearer ${TOKEN}`)
    await expectNoTokenAfterLoad(requests)

    // A reload finds the token in sessionStorage, though the address no longer has it.
    const before = requests.length
    await page.reload()
    await eventually(() => requests.slice(before).some((r) => r.url().includes('/api/')), 'a request after the reload')
    for (const r of requests.slice(before).filter((r) => r.url().includes('/api/')))
      expect(r.headers().authorization).toBe(`Bearer ${TOKEN}`)

    expect(await page.textContent('body')).not.toContain(TOKEN)
    expect(logs.filter((line) => line.includes(TOKEN))).toEqual([])
    await page.context().close()
  })

  it('the dashboard says a token is needed, or that this one is refused, not that the coordinator is gone', async () => {
    const missing = await open('/dashboard/')
    const banner = await visible(missing.page, 'auth-banner')
    expect(await banner.textContent()).toMatch(/needs a token: open \/dashboard\/\?token=<your token>/)
    expect(await missing.page.isHidden('[data-testid=offline-banner]')).toBe(true)
    await missing.page.context().close()

    const wrong = 'not-the-T0ken-0123456789'
    const refused = await open(`/dashboard/?token=${wrong}`)
    expect(await (await visible(refused.page, 'auth-banner')).textContent()).toMatch(/refused this token/)
    expect(await refused.page.textContent('body')).not.toContain(wrong)
    await refused.page.context().close()
  })

  it('a node page joins with ?token=, strips it from the address and shows it nowhere; a wrong one is refused', async () => {
    const { page, requests, logs } = await open(`/node?token=${TOKEN}&cpus=1`)
    await page.waitForFunction(() => document.body.dataset.state === 'registered', undefined, { timeout: 30_000 })
    await eventually(() => coordinator.cluster.nodes.alive().length === 1, 'one alive node')
    const url = new URL(page.url())
    expect(url.searchParams.has('token')).toBe(false)
    expect(url.searchParams.get('cpus')).toBe('1')
    expect(await page.evaluate(() => sessionStorage.getItem('shoal.token'))).toBe(TOKEN)
    await expectNoTokenAfterLoad(requests)
    expect(await page.textContent('body')).not.toContain(TOKEN)
    expect(logs.filter((line) => line.includes(TOKEN))).toEqual([])

    const wrong = 'not-the-T0ken-0123456789'
    const refused = await open(`/node?token=${wrong}&cpus=1`)
    await refused.page.waitForSelector('#notice:not([hidden])', { timeout: 15_000 })
    expect(await refused.page.textContent('#notice')).toMatch(/refused the token/)
    expect(await refused.page.textContent('#state')).toBe('refused')
    expect(await refused.page.textContent('body')).not.toContain(wrong)
    expect(refused.logs.filter((line) => line.includes(wrong))).toEqual([])
    expect(coordinator.cluster.nodes.alive().length).toBe(1)

    await refused.page.context().close()
    await page.context().close()
  })
})
