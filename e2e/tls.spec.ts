import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type HeadlessNode, startHeadlessNode } from '../coordinator/headless-nodes.ts'
import { type RunningCoordinator, startCoordinator } from '../coordinator/server.ts'
import { connect } from '../sdk/index.ts'

// Item 3 of "donate a tab from anywhere": `shoal start --tls-cert F --tls-key F` serves https and wss on the one
// port (WebRTC, OPFS and Web Locks need a secure context off localhost). The certificate is self-signed, made here.

/** Runs a command without blocking this process (it drives Playwright: docs/platform.md). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => resolve({ code: code ?? -1, out, err }))
  })
}

let dir: string
let coordinator: RunningCoordinator
let node: HeadlessNode
const errors: string[] = []
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-tls-'))
  const made = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ])
  if (made.code !== 0) throw new Error(`openssl could not make a certificate (apt-get install -y openssl): ${made.err}`)
  coordinator = await startCoordinator({ port: 0, log: () => {}, tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } })
  // A browser that was told to accept this certificate (a real one would be signed by a CA it trusts).
  node = await startHeadlessNode({
    address: coordinator.url,
    index: 0,
    cpus: 2,
    extraArgs: ['--ignore-certificate-errors'],
    onConsole: (_, type, text) => type === 'error' && errors.push(text),
  })
})
afterAll(async () => {
  await node?.close()
  await coordinator?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
  expect(errors).toEqual([])
})

describe('TLS on the one port', () => {
  it('serves https and wss: a Chromium node and a Node driver that trusts the CA run tasks over them', async () => {
    expect(coordinator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    expect(await node.page.evaluate(() => [location.protocol, window.isSecureContext])).toEqual(['https:', true])
    const driver = await run(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./fixtures/tls-driver.ts', import.meta.url)), coordinator.url],
      {
        ...process.env,
        NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem'),
      },
    )
    expect(driver.err).not.toMatch(/error/i)
    const seen = JSON.parse(driver.out.trim().split('\n').pop() as string) as { results: number[]; direct: number }
    expect(seen.results).toEqual(Array.from({ length: 10 }, (_, i) => i * i))
    // The tasks went over a data channel, signalled through /peerjs on wss.
    expect(seen.direct).toBeGreaterThan(0)
  })

  it('a driver that does not trust the certificate is refused with the reason', async () => {
    await expect(connect({ address: coordinator.url, timeout: 5000 })).rejects.toThrow(/self[- ]signed certificate/)
  })

  it('answers no plain http on that port', async () => {
    await expect(fetch(coordinator.url.replace('https:', 'http:'))).rejects.toThrow()
  })
})
