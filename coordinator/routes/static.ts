import { readFile } from 'node:fs/promises'
import { extname, join, normalize } from 'node:path'
import type { Hono } from 'hono'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.wasm': 'application/wasm',
}

/**
 * Serves the Vite build: `/node` (donate a node), `/dashboard`, `/sdk.js` and their assets. A missing build is a
 * clear 503 telling what to run, not a bare 404.
 */
export function mountStatic(app: Hono, distDir: string): void {
  const file = async (rel: string) => {
    const path = normalize(join(distDir, rel))
    if (!path.startsWith(distDir)) return undefined
    try {
      return { body: await readFile(path), type: TYPES[extname(path)] ?? 'application/octet-stream' }
    } catch {
      return undefined
    }
  }
  const send =
    (rel: string, cache: string) =>
    async (c: { body(b: Uint8Array, s: number, h: Record<string, string>): Response; text(t: string, s: number): Response }) => {
      const f = await file(rel)
      if (!f) return c.text(`${rel} is not built: run \`npm run build\` first`, 503)
      return c.body(new Uint8Array(f.body), 200, { 'content-type': f.type, 'cache-control': cache, 'access-control-allow-origin': '*' })
    }
  app.get('/', (c) => c.redirect('/dashboard/'))
  app.get('/favicon.ico', (c) => c.body(null, 204))
  app.get('/node', send('worker-page/index.html', 'no-cache'))
  app.get('/node/', send('worker-page/index.html', 'no-cache'))
  // The query goes along: `/dashboard?token=…` must reach the page, which keeps the token and takes it off the URL.
  app.get('/dashboard', (c) => c.redirect(`/dashboard/${new URL(c.req.url).search}`))
  app.get('/dashboard/', send('dashboard/index.html', 'no-cache'))
  app.get('/sdk.js', send('sdk/sdk.js', 'no-cache'))
  // The benchmarks' baseline page (a bare comlink pool), measured in the same browser as the nodes.
  app.get('/bench/baseline.html', send('bench/baseline.html', 'no-cache'))
  app.get('/assets/*', async (c) => {
    const f = await file(c.req.path.slice(1))
    if (!f) return c.text('not found', 404)
    return c.body(new Uint8Array(f.body), 200, { 'content-type': f.type, 'cache-control': 'public, max-age=31536000, immutable' })
  })
}
