import { describe, expect, it } from 'vitest'
import { NodeDiedError } from '../../sdk/errors.ts'
import type { ClientMessageOf } from '../../sdk/protocol/index.ts'
import { TaskEvents } from './task-events.ts'

type Ev = ClientMessageOf<'task-events'>['events'][number]
const JOB = '01000000'
const id = (n: number) => `${n.toString(16).padStart(40, '0')}${JOB}`
const task = { name: 'f', funcName: 'f', type: 'NORMAL_TASK' as const, resources: { CPU: 1 } }
const ev = (n: number, state: Ev['state'], time: number, extra: Partial<Ev> = {}): Ev => ({
  taskId: id(n),
  attempt: 0,
  state,
  time,
  ...extra,
})

describe('task events (the state API rows)', () => {
  it('a state never moves back: a late RUNNING after FINISHED only joins the history', () => {
    const te = new TaskEvents()
    const owner = {}
    te.report([ev(1, 'PENDING_ARGS_AVAIL', 1, { task }), ev(1, 'FINISHED', 5)], JOB, owner)
    te.report([ev(1, 'RUNNING', 3, { nodeId: 'a'.repeat(56) })], JOB, undefined)
    const [row] = te.list()
    expect(row?.state).toBe('FINISHED')
    expect(row?.events.map((e) => e.state)).toEqual(['PENDING_ARGS_AVAIL', 'RUNNING', 'FINISHED'])
  })

  it("an attempt's failure reported after the next attempt began still gives its row the error", () => {
    const te = new TaskEvents()
    const owner = {}
    te.report([ev(1, 'PENDING_ARGS_AVAIL', 1, { task }), ev(1, 'SUBMITTED_TO_WORKER', 2)], JOB, owner)
    // Another node's RUNNING for attempt 1 overtakes the owner's report that attempt 0 failed.
    te.report([{ ...ev(1, 'RUNNING', 4), attempt: 1 }], JOB, undefined)
    const error = new NodeDiedError('b'.repeat(56), id(1), 1).toWire()
    te.report([ev(1, 'FAILED', 3, { error })], JOB, owner)
    const first = te.list().find((r) => r.attempt === 0)
    expect(first).toMatchObject({ state: 'FAILED', errorType: 'NODE_DIED', errorName: 'NodeDiedError' })
    expect(te.list().find((r) => r.attempt === 1)?.state).toBe('RUNNING')
  })

  it('stays under its bound: finished rows go first, oldest first, then live ones, and the drops are counted', () => {
    const te = new TaskEvents(4)
    const owner = {}
    te.report(
      [1, 2, 3].map((n) => ev(n, 'PENDING_ARGS_AVAIL', n, { task })),
      JOB,
      owner,
    )
    te.report([ev(2, 'FINISHED', 10)], JOB, owner)
    te.report(
      [4, 5].map((n) => ev(n, 'PENDING_ARGS_AVAIL', n, { task })),
      JOB,
      owner,
    )
    // 5 rows for 4 places: the finished one (task 2) went, not the oldest live one (task 1).
    expect(te.list().map((r) => r.taskId)).toEqual([id(5), id(4), id(3), id(1)])
    te.report([ev(6, 'PENDING_ARGS_AVAIL', 6, { task })], JOB, owner)
    // None finished: the oldest live one goes.
    expect(te.list().map((r) => r.taskId)).toEqual([id(6), id(5), id(4), id(3)])
    expect(te.summarize().droppedRows).toBe(2)
    expect(te.live).toBe(4)
    // A late report of an evicted row does not bring it back (it would stay live, counted pending, forever).
    te.report([ev(1, 'RUNNING', 20)], JOB, undefined)
    expect(te.list().map((r) => r.taskId)).not.toContain(id(1))
    expect(te.live).toBe(4)
  })

  it("bounds rows per tenant: one tenant's flood never pushes another tenant's rows out", () => {
    const JOB_B = '02000000'
    const idB = (n: number) => `${n.toString(16).padStart(40, '0')}${JOB_B}`
    const te = new TaskEvents(4, (jobId) => (jobId === JOB_B ? 'b' : 'a'))
    te.report([{ ...ev(1, 'PENDING_ARGS_AVAIL', 1, { task }), taskId: idB(1) }], JOB_B, {})
    te.report(
      [
        { ...ev(2, 'PENDING_ARGS_AVAIL', 1, { task }), taskId: idB(2) },
        { ...ev(2, 'FINISHED', 2), taskId: idB(2) },
      ],
      JOB_B,
      {},
    )
    // Tenant a submits 1,000 tasks, finishing half of them.
    const owner = {}
    for (let n = 1; n <= 1000; n++) {
      te.report([ev(n, 'PENDING_ARGS_AVAIL', n, { task }), ...(n % 2 ? [ev(n, 'FINISHED', n + 1)] : [])], JOB, owner)
    }
    const rows = te.list()
    expect(rows.filter((r) => r.jobId === JOB_B).map((r) => r.taskId)).toEqual([idB(2), idB(1)])
    expect(rows.filter((r) => r.jobId === JOB).length).toBe(4)
    expect(te.summarize().droppedRows).toBe(996)
    // A's live count is right after its evictions (b's one live row + a's live ones).
    expect(te.live).toBe(1 + rows.filter((r) => r.jobId === JOB && r.state !== 'FINISHED').length)
  })

  it('evicting stays cheap however many rows went before (a Map is not used as a queue)', () => {
    const te = new TaskEvents(1000)
    const owner = {}
    // 200 rounds of 1,000 rows each finishing: 199,000 evictions. Quadratic eviction took seconds here.
    const t0 = performance.now()
    for (let b = 0; b < 200; b++) {
      const evs = Array.from({ length: 1000 }, (_, i) => ev(b * 1000 + i, 'PENDING_ARGS_AVAIL', 1, { task }))
      te.report(evs, JOB, owner)
      te.report(
        evs.map((e) => ({ ...e, state: 'FINISHED' as const, time: 2 })),
        JOB,
        owner,
      )
    }
    expect(te.summarize().droppedRows).toBe(199_000)
    expect(te.list()).toHaveLength(1000)
    expect(performance.now() - t0).toBeLessThan(10_000)
  })
})
