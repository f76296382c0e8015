import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { GetTimeoutError, type Mesh, TaskError } from '../sdk/index.ts'
import { eventually, useCluster } from './fixtures/cluster.ts'

// The seed's "lifecycle of a task" on 3 browser-tab nodes × 4 CPUs.
let mesh: Mesh
const sleepFn = async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms))
  return ms
}

const cluster = useCluster({ nodes: 3, cpus: 4 })
beforeAll(async () => {
  mesh = await cluster().connect()
})

describe('seed: tasks', () => {
  it('runs 30 one-second tasks in parallel: sum 30, well under 2x the ideal 3 s', async () => {
    const expensiveComputation = mesh.remote(async function expensiveComputation() {
      await new Promise((r) => setTimeout(r, 1000))
      return 1
    })
    const t0 = performance.now()
    const futures = Array.from({ length: 30 }, () => expensiveComputation.remote())
    expect(String(futures[0])).toMatch(/^ObjectRef\([0-9a-f]{56}\)$/)
    const results = await mesh.get(futures)
    const elapsed = performance.now() - t0
    expect(results.reduce((a, b) => a + b, 0)).toBe(30)
    expect(elapsed).toBeLessThan(6000)
    // All three nodes took part (hybrid policy spreads once a node is half busy).
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'expensiveComputation']] })
    expect(new Set(rows.map((r) => r.nodeId)).size).toBe(3)
  })

  it('shows a named 4-second task RUNNING with worker, node and job ids, then FINISHED', async () => {
    const name = `expensive_computation_${Math.random().toString(16).slice(2, 10)}`
    const ref = mesh.remote(sleepFn).options({ name }).remote(4000)
    const running = await eventually(async () => {
      const [t] = await mesh.state.listTasks({ filters: [['name', '=', name]] })
      return t?.state === 'RUNNING' ? t : undefined
    }, 'the task to be RUNNING')
    expect(running.workerId).toMatch(/^[0-9a-f]{56}$/)
    expect(cluster().nodes.map((n) => n.nodeId)).toContain(running.nodeId)
    expect(running.jobId).toBe(mesh.jobId)
    expect(running.startTime).toBeGreaterThan(0)
    expect(running.events.map((e) => e.state)).toEqual(['PENDING_ARGS_AVAIL', 'PENDING_NODE_ASSIGNMENT', 'SUBMITTED_TO_WORKER', 'RUNNING'])
    await mesh.get(ref)
    const [done] = await mesh.state.listTasks({ filters: [['name', '=', name]] })
    expect(done?.state).toBe('FINISHED')
    expect((done?.endTime ?? 0) - (done?.startTime ?? 0)).toBeGreaterThanOrEqual(3900)
  })

  it('asCompleted yields in completion order; wait returns early; get times out', async () => {
    const sleep = mesh.remote(sleepFn)
    const refs = [sleep.remote(1500), sleep.remote(100), sleep.remote(800)]
    const order: number[] = []
    for await (const [, v] of mesh.asCompleted(refs)) order.push(v)
    expect(order).toEqual([100, 800, 1500])

    const slow = sleep.remote(3000)
    const fast = sleep.remote(50)
    const t0 = performance.now()
    const { ready, notReady } = await mesh.wait([slow, fast], { numReturns: 1 })
    expect(performance.now() - t0).toBeLessThan(2500)
    expect(ready).toEqual([fast])
    expect(notReady).toEqual([slow])

    const timedOut = await mesh.get(slow, { timeout: 200 }).catch((e) => e)
    expect(timedOut).toBeInstanceOf(GetTimeoutError)
    expect(timedOut.code).toBe('GET_TIMEOUT')
    expect(await mesh.get(slow)).toBe(3000)
  })

  it('a throwing task rejects get with TaskError carrying the remote name, message and stack', async () => {
    const boom = mesh.remote(function boom(x: number) {
      if (x > 0) throw new RangeError(`x is ${x}`)
      return x
    })
    const err = await mesh.get(boom.remote(7)).catch((e) => e)
    expect(err).toBeInstanceOf(TaskError)
    expect(err.name).toBe('TaskError')
    expect(err.remoteName).toBe('RangeError')
    expect(err.remoteMessage).toBe('x is 7')
    expect(err.remoteStack).toContain('boom')
    const [row] = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'boom']] })
    expect(row?.state).toBe('FAILED')
    expect(row?.errorType).toBe('TASK_EXECUTION_EXCEPTION') // Ray's ErrorType
    expect(row?.errorName).toBe('TaskError')
    expect(row?.errorMessage).toContain('RangeError: x is 7')
  })

  it('retries a throwing task with retryExceptions and maxRetries', async () => {
    // Fails on its first `failUntil` attempts, read from the runtime context (Ray's get_runtime_context()).
    const flaky = mesh.remote(function flaky(failUntil: number) {
      const { attempt } = (self as unknown as { shoalContext: { attempt: number } }).shoalContext
      if (attempt < failUntil) throw new Error(`attempt ${attempt}`)
      return attempt
    })
    expect(await mesh.get(flaky.options({ maxRetries: 3, retryExceptions: true }).remote(2))).toBe(2)
    const onlyTypeErrors = await mesh.get(flaky.options({ maxRetries: 3, retryExceptions: ['TypeError'] }).remote(1)).catch((e) => e)
    expect(onlyTypeErrors).toBeInstanceOf(TaskError)
    // One row per attempt, as Ray lists them: three for the task that failed twice, one for the other.
    const rows = await mesh.state.listTasks({ filters: [['funcOrClassName', '=', 'flaky']] })
    expect(rows.map((r) => `${r.attempt}:${r.state}`).sort()).toEqual(['0:FAILED', '0:FAILED', '1:FAILED', '2:FINISHED'])
    const noRetry = await mesh.get(flaky.options({ maxRetries: 3 }).remote(100)).catch((e) => e)
    expect(noRetry).toBeInstanceOf(TaskError)
  })

  it('round-trips typed arrays, Map, Set, Date and BigInt exactly', async () => {
    const echo = mesh.remote(function echo<T>(x: T) {
      return x
    })
    const value = {
      f64: new Float64Array([1.5, -2]),
      u8: new Uint8Array([1, 2, 3]),
      m: new Map<unknown, unknown>([
        [1, 'a'],
        ['k', { z: 1 }],
      ]),
      s: new Set([1, 'x']),
      d: new Date(1234),
      big: 2n ** 70n,
      nested: [{ i: -7 }],
    }
    expect(await mesh.get(echo.remote(value))).toEqual(value)
  })

  it('the same job runs from a Node script through the package exports (import { connect } from "shoal")', async () => {
    // Inside the repo (not node_modules, where Node does not resolve a package by its own name).
    const dir = fileURLToPath(new URL('./.tmp/', import.meta.url))
    await mkdir(dir, { recursive: true })
    const script = `${dir}driver.mjs`
    await writeFile(
      script,
      `import { connect } from 'shoal'
const mesh = await connect({ address: process.argv[2] })
const f = mesh.remote(async function expensiveComputation() { await new Promise((r) => setTimeout(r, 1000)); return 1 })
const t0 = Date.now()
const results = await mesh.get(Array.from({ length: 30 }, () => f.remote()))
console.log(JSON.stringify({ sum: results.reduce((a, b) => a + b, 0), ms: Date.now() - t0, ref: String(f.remote()) }))
await mesh.close()
`,
    )
    const { stdout } = await promisify(execFile)(process.execPath, [script, cluster().url], { timeout: 60_000 })
    const out = JSON.parse(stdout)
    expect(out.sum).toBe(30)
    expect(out.ms).toBeLessThan(6000)
    expect(out.ref).toMatch(/^ObjectRef\([0-9a-f]{56}\)$/)
  })

  it('the same job runs from a web page importing /sdk.js', async () => {
    const page = await cluster().driverPage()
    // A string, so the test runner does not rewrite the page's own `import()`.
    const out = await page.evaluate<{ sum: number; ms: number; errName: string; errCode: string }>(`(async () => {
      const { connect } = await import(location.origin + '/sdk.js')
      const mesh = await connect()
      const f = mesh.remote(async function expensiveComputation() {
        await new Promise((r) => setTimeout(r, 1000))
        return 1
      })
      const t0 = performance.now()
      const results = await mesh.get(Array.from({ length: 30 }, () => f.remote()))
      const err = await mesh.get(mesh.remote(function bad() { throw new TypeError('in page') }).remote()).catch((e) => e)
      await mesh.close()
      return { sum: results.reduce((a, b) => a + b, 0), ms: performance.now() - t0, errName: err.name, errCode: err.code }
    })()`)
    expect(out.sum).toBe(30)
    expect(out.ms).toBeLessThan(6000)
    expect(out.errName).toBe('TaskError')
    expect(out.errCode).toBe('TASK_ERROR')
    await page.context().close()
  })

  it('lists nodes and jobs, and summarizes tasks', async () => {
    const nodes = await mesh.state.listNodes()
    expect(nodes.filter((n) => n.state === 'ALIVE')).toHaveLength(3)
    expect(nodes[0]?.resources.CPU).toBe(4)
    const jobs = await mesh.state.listJobs({ filters: [['jobId', '=', mesh.jobId]] })
    expect(jobs[0]?.state).toBe('RUNNING')
    const summary = await mesh.state.summarizeTasks()
    expect(summary.summary.expensiveComputation?.stateCounts.FINISHED).toBeGreaterThanOrEqual(30)
  })
})
