import { describe, expect, it } from 'vitest'
import { Deque } from '../../sdk/deque.ts'
import type { ExecResult, PushedTask } from '../../sdk/protocol/index.ts'
import { BATCH_MAX, BATCH_STUCK_MS, BATCH_TASK_MS, eachNewResult, isShort, isStuck, takeBatch } from './batch-policy.ts'
import { fn, task } from './node.fixture.ts'

const f = fn('f')
const large = (id: string) => task(id, f, { args: [{ ref: 'ab'.repeat(28), size: 1 << 20 } as never] })
const queueOf = (ts: PushedTask[]) => {
  const q = new Deque<PushedTask>()
  for (const t of ts) q.push(t)
  return q
}
const ids = (ts: readonly PushedTask[]) => ts.map((t) => t.taskId)
const same = (x: PushedTask) => x

describe('batch policy: which tasks go to a worker in one message', () => {
  it('only tasks whose last one ran short', () => {
    expect(isShort(undefined)).toBe(false)
    expect(isShort(BATCH_TASK_MS - 0.01)).toBe(true)
    expect(isShort(BATCH_TASK_MS)).toBe(false)
    const q = queueOf([task('b', f), task('c', f)])
    expect(ids(takeBatch(task('a', f), q, same, false))).toEqual(['a'])
    expect(q.length).toBe(2)
    expect(ids(takeBatch(task('a', f), q, same, true))).toEqual(['a', 'b', 'c'])
    expect(q.length).toBe(0)
  })

  it('stops at a task with a large argument (its object is pinned while it runs: it goes alone), or one that may not join', () => {
    const q = queueOf([task('b', f), large('c'), task('d', f)])
    expect(ids(takeBatch(task('a', f), q, same, true))).toEqual(['a', 'b'])
    expect(ids(takeBatch(q.shift() as PushedTask, q, same, true))).toEqual(['c'])
    expect(ids(takeBatch(large('x'), queueOf([task('y', f)]), same, true))).toEqual(['x'])
    const g = fn('g')
    const mixed = queueOf([task('b', f), task('c', g), task('d', f)])
    expect(ids(takeBatch(task('a', f), mixed, same, true, (next) => next.functionId === f.functionId))).toEqual(['a', 'b'])
    expect(ids([...mixed])).toEqual(['c', 'd']) // in order, untouched
  })

  it(`takes at most ${BATCH_MAX} in one message`, () => {
    const q = queueOf(Array.from({ length: 2 * BATCH_MAX }, (_, i) => task(`t${i + 1}`, f)))
    expect(takeBatch(task('t0', f), q, same, true).length).toBe(BATCH_MAX)
    expect(q.length).toBe(BATCH_MAX + 1)
  })

  it('a batch is stuck once it runs past what a batch of short tasks takes', () => {
    expect(isStuck(1000, 1000 + BATCH_STUCK_MS - 1)).toBe(false)
    expect(isStuck(1000, 1000 + BATCH_STUCK_MS)).toBe(true)
  })

  it('reports each result of a batch once, in order, whatever ranges come back', () => {
    const run = { reported: 0 }
    const seen: string[] = []
    const r = (n: number): ExecResult[] => Array.from({ length: n }, () => ({ ok: true, returns: [] }))
    const each = (item: string) => void seen.push(item)
    const items = ['a', 'b', 'c', 'd']
    eachNewResult(run, items, 0, r(2), each)
    eachNewResult(run, items, 1, r(2), each) // 'b' again, then 'c'
    eachNewResult(run, items, 3, r(3), each) // past the batch's end: ignored
    expect(seen).toEqual(['a', 'b', 'c', 'd'])
    expect(run.reported).toBe(4)
  })
})
