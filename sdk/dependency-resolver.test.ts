import { describe, expect, it } from 'vitest'
import { DependencyResolver, type DependencySource, type Dependent } from './dependency-resolver.ts'
import type { WireError } from './errors.ts'
import type { ObjectId } from './ids.ts'

/** A store whose objects are made ready (or failed) by hand. */
function store() {
  const ready = new Map<ObjectId, WireError | undefined>()
  const waiters = new Map<ObjectId, (() => void)[]>()
  const objects: DependencySource = {
    isReady: (id) => ready.has(id),
    onReady: (id, cb) => waiters.set(id, [...(waiters.get(id) ?? []), cb]),
    read: (id) => (ready.has(id) ? { ...(ready.get(id) && { error: ready.get(id) }) } : undefined),
  }
  const settle = (id: string, error?: WireError) => {
    ready.set(id as ObjectId, error)
    for (const cb of waiters.get(id as ObjectId) ?? []) cb()
    waiters.delete(id as ObjectId)
  }
  return { objects, settle }
}

const task = (): Dependent & { phase: string } => ({ missing: 0, phase: 'waiting-deps' })
const ids = (...xs: string[]) => xs as ObjectId[]
const lost = (m: string): WireError => ({ name: 'ObjectLostError', code: 'OBJECT_LOST', message: m })

describe('DependencyResolver', () => {
  it('resolves at once a task whose dependencies are all ready (or that has none)', () => {
    const { objects, settle } = store()
    const seen: unknown[] = []
    const r = new DependencyResolver(objects, (t, failed) => seen.push([t, failed]))
    settle('a')
    const [t1, t2] = [task(), task()]
    r.wait(t1, ids('a'))
    r.wait(t2, [])
    expect(seen).toEqual([
      [t1, undefined],
      [t2, undefined],
    ])
  })

  it('counts what is missing on the task and resolves it once, when the last one is ready', () => {
    const { objects, settle } = store()
    const seen: unknown[] = []
    const r = new DependencyResolver(objects, (t) => seen.push(t))
    const t = task()
    r.wait(t, ids('a', 'b'))
    expect(t.missing).toBe(2)
    settle('b')
    expect(t.missing).toBe(1)
    expect(seen).toEqual([])
    settle('a')
    expect(seen).toEqual([t])
  })

  it('gives the error of the first failed dependency, in the order the task names them', () => {
    const { objects, settle } = store()
    const seen: (WireError | undefined)[] = []
    const r = new DependencyResolver(objects, (_, failed) => seen.push(failed))
    r.wait(task(), ids('a', 'b', 'c'))
    settle('c', lost('c'))
    settle('b', lost('b'))
    settle('a')
    expect(seen).toEqual([lost('b')])
  })

  it('forgets a task that stopped waiting meanwhile (cancelled or failed)', () => {
    const { objects, settle } = store()
    const seen: unknown[] = []
    const r = new DependencyResolver(objects, (t) => seen.push(t))
    const t = task()
    r.wait(t, ids('a'))
    t.phase = 'done'
    settle('a')
    expect(seen).toEqual([])
  })
})
