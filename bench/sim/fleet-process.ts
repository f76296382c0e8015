/**
 * A Fleet in a child process (fleet-main.ts), driven over IPC: the benchmark's driver process stays the driver alone
 * (its RSS is the driver's), and the fleet's own CPU and memory can be read from /proc/<pid>. Every request is
 * bounded: a fleet that does not answer fails with an error naming what it did not do.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { FleetOptions, FleetStats } from './fleet.ts'
import { killOnExit } from './processes.ts'

export class FleetProcess {
  private nextId = 1
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  private exited: string | undefined

  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; ok?: boolean; value?: unknown; error?: string }) => {
      const p = m.id !== undefined ? this.pending.get(m.id) : undefined
      if (!p) return
      this.pending.delete(m.id as number)
      if (m.ok) p.resolve(m.value)
      else p.reject(new Error(`sim fleet: ${m.error}`))
    })
    child.on('exit', (code, signal) => {
      this.exited = `the sim fleet process exited (${signal ?? `code ${code}`})`
      for (const p of this.pending.values()) p.reject(new Error(this.exited))
      this.pending.clear()
    })
  }

  get pid(): number {
    return this.child.pid as number
  }

  /** Forks the fleet's process and waits (bounded) until it is ready for requests. */
  static async spawn(timeoutMs = 30_000): Promise<FleetProcess> {
    const main = fileURLToPath(new URL('./fleet-main.ts', import.meta.url))
    const child = fork(main, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    killOnExit(child)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`the sim fleet process was not ready within ${timeoutMs} ms`))
      }, timeoutMs)
      child.once('message', () => {
        clearTimeout(timer)
        resolve()
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the sim fleet process exited with ${code} before it was ready`))
      })
    })
    return new FleetProcess(child)
  }

  private request<T>(msg: Record<string, unknown>, timeoutMs: number, what: string): Promise<T> {
    if (this.exited) return Promise.reject(new Error(this.exited))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`the sim fleet did not ${what} within ${Math.round(timeoutMs / 1000)} s`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.send({ id, ...msg })
    })
  }

  /** Starts the fleet's nodes and resolves once all are registered (or fails naming the node that could not). */
  start(opts: FleetOptions, timeoutMs = opts.startTimeoutMs ?? 600_000): Promise<{ startMs: number; nodes: number }> {
    return this.request({ cmd: 'start', opts: { ...opts, startTimeoutMs: timeoutMs } }, timeoutMs + 10_000, `start ${opts.nodes} nodes`)
  }

  stats(timeoutMs = 30_000): Promise<FleetStats> {
    return this.request({ cmd: 'stats' }, timeoutMs, 'report its counters')
  }

  resetLoopDelay(timeoutMs = 30_000): Promise<void> {
    return this.request({ cmd: 'reset-loop' }, timeoutMs, 'reset its event-loop monitor')
  }

  nodeIds(timeoutMs = 30_000): Promise<{ nodeId: string; alive: boolean; declaredDead: boolean }[]> {
    return this.request({ cmd: 'node-ids' }, timeoutMs, 'list its nodes')
  }

  /** Stops every node, then the process (killed if it does not exit in time). */
  async stop(timeoutMs = 60_000): Promise<void> {
    if (this.exited) return
    try {
      await this.request({ cmd: 'stop' }, timeoutMs, 'stop its nodes')
    } catch {
      // Killed below either way.
    }
    await this.kill()
  }

  /** Ends the process now (SIGTERM, then SIGKILL after 5 s). */
  async kill(): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.kill('SIGTERM')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await gone
    clearTimeout(timer)
  }
}
