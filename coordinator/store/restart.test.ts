import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { functionIdOf } from '../../sdk/ids.ts'
import { connect, type Mesh } from '../../sdk/index.ts'
import { JOB_NUMBER_BLOCK } from '../gcs/jobs.ts'
import { type RunningCoordinator, startCoordinator } from '../server.ts'

/*
 * Coordinator restart: what the coordinator keeps in its control store outlives it. A coordinator is stopped with
 * its driver still connected (as a crash leaves it), and another starts on the same store.
 */

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {})
})
async function coordinator(store: string): Promise<RunningCoordinator> {
  const c = await startCoordinator({ port: 0, store, log: () => {} })
  cleanups.push(() => c.close())
  return c
}
async function driver(c: RunningCoordinator): Promise<Mesh> {
  const m = await connect({ address: c.url, peerLinks: 'relay', timeout: 5000 })
  cleanups.push(() => m.close())
  return m
}
class Counter {
  n = 0
}

describe('a coordinator restarted on the same control store (LMDB in a directory)', () => {
  it('keeps its jobs and functions, and never hands out a job id twice', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-restart-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const first = await coordinator(dir)
    expect(first.store).toBe(`LMDB in ${dir}`)
    const done = await driver(first)
    const doneJob = done.jobId
    done.remote(Counter).remote() // registers the class (no node: its creation waits)
    await done.close()
    const running = await driver(first)
    running.remote(Counter).remote()
    await new Promise((r) => setTimeout(r, 200)) // the registration reaches the coordinator and its store
    const runningJob = running.jobId
    await first.close() // the driver is still connected: as a crash leaves it

    const second = await coordinator(dir)
    const jobs = await (await fetch(`${second.url}/api/jobs`)).json()
    const state = Object.fromEntries(jobs.map((j: { jobId: string; state: string }) => [j.jobId, j.state]))
    // The job that ended cleanly stays FINISHED; the one whose driver was cut off by the stop is FAILED.
    expect(state).toEqual({ [doneJob]: 'FINISHED', [runningJob]: 'FAILED' })
    // Functions of a job that may still matter are there without a new registration; an ended job's are not kept.
    const classId = functionIdOf(Counter.toString())
    expect(second.cluster.functions.get(runningJob, classId)?.name).toBe('Counter')
    expect(second.cluster.functions.get(doneJob, classId)).toBeUndefined()
    // A ticket the first run gave out (a node's or peer's proof of its id) still holds after the restart.
    expect(second.cluster.credentials.checkTicket('a'.repeat(56), first.cluster.credentials.ticketFor('a'.repeat(56)))).toBe(true)
    // A new job gets an id never used before (numbers are reserved in blocks, past the last run's block).
    const fresh = await driver(second)
    const n = (id: string) => Number.parseInt(id.slice(0, 2), 16) + Number.parseInt(id.slice(2, 4), 16) * 256
    expect(n(fresh.jobId)).toBeGreaterThan(n(runningJob))
    expect(n(fresh.jobId)).toBe(JOB_NUMBER_BLOCK + 1)
  })

  it('memory, the default for startCoordinator, keeps nothing', async () => {
    const c = await startCoordinator({ port: 0, log: () => {} })
    cleanups.push(() => c.close())
    expect(c.store).toMatch(/^memory/)
    const d = await startCoordinator({ port: 0, log: () => {} })
    cleanups.push(() => d.close())
    expect(d.cluster.credentials.checkTicket('a'.repeat(56), c.cluster.credentials.ticketFor('a'.repeat(56)))).toBe(false)
  })
})
