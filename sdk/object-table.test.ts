import { describe, expect, it } from 'vitest'
import type { ObjectId } from './ids.ts'
import { ObjectTable } from './object-table.ts'

describe('object table', () => {
  it('waits for some of its objects, or any failure, or a deadline, and never past it', async () => {
    const t = new ObjectTable()
    const ids = [1, 2, 3].map((i) => String(i).repeat(56) as ObjectId)
    for (const id of ids) t.expect(id)
    t.resolve(ids[0] as ObjectId, { data: new Uint8Array([1]) })
    expect(t.waitFor(ids, 1, undefined, false, 'ready')).toBe(1) // nothing to wait for: no promise
    const two = t.waitFor(ids, 2, undefined, false, 'ready') as Promise<number>
    t.resolve(ids[2] as ObjectId, { data: new Uint8Array([3]) })
    expect(await two).toBe(2)
    const t2 = new ObjectTable()
    for (const id of ids) t2.expect(id)
    const failing = t2.waitFor(ids, 3, undefined, true, 'ready') as Promise<number>
    t2.fail(ids[1] as ObjectId, { name: 'TaskError', message: 'boom' } as never)
    expect(await failing).toBe(1)
    const started = performance.now()
    expect(await t2.waitFor(ids, 3, performance.now() + 50, false, 'ready')).toBe(1)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('tells a large object being ready from its bytes being here, for one waiter or many on one object', async () => {
    const t = new ObjectTable()
    const id = 'a'.repeat(56) as ObjectId
    t.expect(id)
    const ready = t.waitFor([id, id], 2, undefined, false, 'ready') as Promise<number>
    const bytes = t.waitFor([id], 1, undefined, false, 'bytes') as Promise<number>
    let called = 0
    const cancel = t.onReady(id, () => called++, true)
    t.resolve(id, { size: 5, locations: ['n1'] })
    expect(await ready).toBe(2)
    expect(t.needsFetch(id)).toBe(true)
    expect(t.peek(id)).toMatchObject({ size: 5, locations: ['n1'] })
    const early = await t.waitFor([id], 1, performance.now() + 10, false, 'bytes')
    expect(early).toBe(0) // ready, but its bytes are not here: the deadline ends the wait
    cancel()
    t.setData(id, new Uint8Array(5))
    expect(await bytes).toBe(1)
    expect(called).toBe(0) // cancelled before the bytes came
  })

  it('lets go of waits that ended: an object waited on with timeouts again and again still answers the next one', async () => {
    const t = new ObjectTable()
    const id = 'b'.repeat(56) as ObjectId
    t.expect(id)
    const last = t.waitFor([id], 1, undefined, false, 'ready') as Promise<number>
    for (let i = 0; i < 50; i++) expect(await t.waitFor([id], 1, performance.now(), false, 'ready')).toBe(0)
    const waiters = (t as unknown as { entries: Map<ObjectId, { waiters?: unknown }> }).entries.get(id)?.waiters
    expect(Array.isArray(waiters) ? waiters.length : 1).toBeLessThanOrEqual(9) // the 50 ended waits are not all held
    t.resolve(id, { data: new Uint8Array([7]) })
    expect(await last).toBe(1)
    expect(t.read(id)?.data).toEqual(new Uint8Array([7]))
  })

  it('adds a waiter in constant time however many live ones an object has (a million tasks may take one ref)', () => {
    const t = new ObjectTable()
    const id = 'c'.repeat(56) as ObjectId
    t.expect(id)
    let fired = 0
    const started = performance.now()
    for (let i = 0; i < 100_000; i++) t.onReady(id, () => fired++)
    // Copying the list on every add (as a prune on each add past 8 did) takes ~5·10⁹ steps here: many seconds.
    expect(performance.now() - started).toBeLessThan(3000)
    t.resolve(id, { data: new Uint8Array([1]) })
    expect(fired).toBe(100_000)
  })

  it('keeps a value as bytes of its own, not as a view of the frame it came in', () => {
    const t = new ObjectTable()
    const id = 'd'.repeat(56) as ObjectId
    t.expect(id)
    const frame = Buffer.alloc(1 << 20, 5)
    t.resolve(id, { data: frame.subarray(10, 2010) })
    const kept = t.read(id)?.data as Uint8Array
    expect(kept.buffer).not.toBe(frame.buffer)
    expect(kept.byteLength).toBe(2000)
    frame.fill(0)
    expect(kept.every((b) => b === 5)).toBe(true)
  })
})
