import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../free-port.ts'

/** A real `redis-server` (the Debian package) on a free port, in a temp dir, for one test file. */
export interface RedisServer {
  url: string
  stop(): Promise<void>
}

export async function startRedisServer(): Promise<RedisServer> {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('redis-server is not installed: `sudo apt-get install -y redis-server` (the README install line has it)')
  }
  const port = await freePort()
  const dir = await mkdtemp(join(tmpdir(), 'shoal-redis-'))
  const proc: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  proc.stdout?.on('data', (d) => (out += d))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start in 10 s:\n${out}`)), 10_000)
    proc.stdout?.on('data', () => {
      if (!out.includes('Ready to accept connections')) return
      clearTimeout(timer)
      resolve()
    })
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${code}:\n${out}`))
    })
  })
  return {
    url: `redis://127.0.0.1:${port}/0`,
    stop: async () => {
      proc.kill('SIGKILL')
      await rm(dir, { recursive: true, force: true })
    },
  }
}
