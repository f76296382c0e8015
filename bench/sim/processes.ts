/**
 * The scale benchmark's processes: a coordinator of its own (`shoal start` in a child, so its CPU and memory can be
 * read from /proc/<pid>), free ports, /proc readings, and bounded waits (a benchmark fails with a clear error naming
 * what it waited for; it never hangs).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../coordinator/free-port.ts'

export { freePort }

/** Kills `child` if this process exits first (an error, `process.exit`): no child outlives the benchmark. */
export function killOnExit(child: ChildProcess): void {
  const kill = () => child.kill('SIGKILL')
  process.once('exit', kill)
  child.once('exit', () => process.off('exit', kill))
}

/** `p`, or an error saying what was not reached within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Polls `check` until it returns a value other than undefined; fails after `ms` naming `what` and the last state. */
export async function waitFor<T>(
  check: () => Promise<T | undefined>,
  ms: number,
  what: string,
  everyMs = 250,
  signal?: AbortSignal,
): Promise<T> {
  const deadline = performance.now() + ms
  let last = ''
  for (;;) {
    if (signal?.aborted) throw new Error(`stopped waiting for ${what}`)
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (e) {
      last = ` (last check failed: ${(e as Error).message})`
    }
    if (performance.now() > deadline) throw new Error(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}${last}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

let clockTicks: number | undefined
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/** A process's CPU time so far (user + system, seconds) and memory (resident now and at its peak, bytes). */
export function procStat(pid: number): { cpuSeconds: number; rssBytes: number; peakRssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces, in parentheses): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / ticksPerSecond()
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
  return { cpuSeconds, rssBytes: kib('VmRSS'), peakRssBytes: kib('VmHWM') }
}

/** CPU use of a process over `ms` (percent of one core). */
export async function cpuPercentOver(pid: number, ms: number): Promise<number> {
  const a = procStat(pid).cpuSeconds
  const t0 = performance.now()
  await new Promise((r) => setTimeout(r, ms))
  const b = procStat(pid).cpuSeconds
  return ((b - a) / ((performance.now() - t0) / 1000)) * 100
}

/** A coordinator in its own process (`node coordinator/shoal.mjs start --port P`), and what it logged about deaths. */
export interface CoordinatorProcess {
  url: string
  pid: number
  /** Nodes it declared DEAD, by reason (from its log). */
  deaths: Map<string, number>
  /** Its last lines of output (for errors). */
  tail(): string
  stop(): Promise<void>
}

export async function startCoordinatorProcess(timeoutMs = 30_000): Promise<CoordinatorProcess> {
  const port = await freePort()
  const cli = fileURLToPath(new URL('../../coordinator/shoal.mjs', import.meta.url))
  // SHOAL_COORDINATOR_NODE_ARGS, e.g. '--cpu-prof --cpu-prof-dir=/tmp/prof', profiles the coordinator under the load.
  const nodeArgs = (process.env.SHOAL_COORDINATOR_NODE_ARGS ?? '').split(/\s+/).filter(Boolean)
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, cli, 'start', '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  killOnExit(child)
  const deaths = new Map<string, number>()
  const lines: string[] = []
  let exited: string | undefined
  let partial = ''
  // Its output is read all along: a full pipe would stall the coordinator.
  const read = (d: Buffer) => {
    const text = partial + d.toString()
    const all = text.split('\n')
    partial = all.pop() ?? ''
    for (const line of all) {
      const dead = / is DEAD: (.*)$/.exec(line)
      if (dead) deaths.set(dead[1] as string, (deaths.get(dead[1] as string) ?? 0) + 1)
      else if (/ joined: /.test(line)) continue
      lines.push(line)
      if (lines.length > 50) lines.shift()
    }
  }
  child.stdout?.on('data', read)
  child.stderr?.on('data', read)
  const gone = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = `the coordinator exited (${signal ?? `code ${code}`})`
      resolve()
    }),
  )
  const url = `http://127.0.0.1:${port}`
  const proc: CoordinatorProcess = {
    url,
    pid: child.pid as number,
    deaths,
    tail: () => lines.join('\n'),
    async stop() {
      if (exited) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await gone
      clearTimeout(timer)
    },
  }
  try {
    await Promise.race([
      waitFor(
        async () => (lines.some((l) => l.includes('Shoal coordinator on')) ? true : undefined),
        timeoutMs,
        `the coordinator to listen on port ${port}`,
        100,
      ),
      gone.then(() => {
        throw new Error(`${exited} before it listened:\n${proc.tail()}`)
      }),
    ])
  } catch (e) {
    await proc.stop()
    throw e
  }
  return proc
}
