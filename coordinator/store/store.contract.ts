import { afterEach, describe, expect, it } from 'vitest'
import type { ControlStore } from './control-store.ts'

/**
 * What every control-store backend must do, run once per backend (memory, LMDB, Redis). `create` opens a store on
 * `place` (a fresh one per test unless the same place is given again: that is a restart on the same store).
 */
export function runContract(name: string, opts: { create(place?: string): Promise<ControlStore>; freshPlace(): Promise<string> }) {
  describe(`control store contract: ${name}`, () => {
    const open: ControlStore[] = []
    const create = async (place?: string) => {
      const s = await opts.create(place)
      open.push(s)
      return s
    }
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close().catch(() => {})
    })

    it('keeps what was put, per table, and forgets what was deleted', async () => {
      const s = await create(await opts.freshPlace())
      await s.put('jobs', '01000000', { state: 'RUNNING', tenant: 'a' })
      await s.put('actors', '01000000', { other: true })
      expect(await s.get('jobs', '01000000')).toEqual({ state: 'RUNNING', tenant: 'a' })
      expect(await s.get('actors', '01000000')).toEqual({ other: true })
      expect(await s.get('jobs', 'nope')).toBeUndefined()
      await s.put('jobs', '01000000', { state: 'SUCCEEDED' })
      expect(await s.get('jobs', '01000000')).toEqual({ state: 'SUCCEEDED' })
      await s.delete('jobs', '01000000')
      await s.delete('jobs', 'never-there')
      expect(await s.get('jobs', '01000000')).toBeUndefined()
      expect(await s.get('actors', '01000000')).toEqual({ other: true })
    })

    it('lists a whole table', async () => {
      const s = await create(await opts.freshPlace())
      expect((await s.getAll('nodes')).size).toBe(0)
      for (let i = 0; i < 100; i++) await s.put('nodes', `n${i}`, { i })
      await s.delete('nodes', 'n7')
      const all = await s.getAll<{ i: number }>('nodes')
      expect(all.size).toBe(99)
      expect(all.get('n42')).toEqual({ i: 42 })
      expect(all.has('n7')).toBe(false)
    })

    it('stores a copy: values round-trip exactly (bytes, Maps, nested), and later changes do not leak in', async () => {
      const s = await create(await opts.freshPlace())
      const value = {
        bytes: new Uint8Array([1, 2, 3]),
        map: new Map([['k', 1]]),
        nested: { list: [1, 'two', null, true], big: 2 ** 40 },
        text: 'ünïcödé',
      }
      await s.put('functions', 'f', value)
      value.nested.list.push('later')
      const back = await s.get<typeof value>('functions', 'f')
      expect(back?.bytes).toEqual(new Uint8Array([1, 2, 3]))
      expect(back?.map).toEqual(new Map([['k', 1]]))
      expect(back?.nested).toEqual({ list: [1, 'two', null, true], big: 2 ** 40 })
      expect(back?.text).toBe('ünïcödé')
    })

    it('writes made in order land in order, without awaiting each', async () => {
      const s = await create(await opts.freshPlace())
      const writes: Promise<void>[] = []
      for (let i = 0; i < 500; i++) writes.push(s.put('leases', 'x', { i }))
      writes.push(s.delete('leases', 'y'))
      writes.push(s.put('leases', 'y', 'last'))
      await Promise.all(writes)
      expect(await s.get('leases', 'x')).toEqual({ i: 499 })
      expect(await s.get('leases', 'y')).toBe('last')
    })

    it('counters never repeat, across a restart on the same store too', async () => {
      const place = await opts.freshPlace()
      const s = await create(place)
      const first = await Promise.all([s.increment('job'), s.increment('job'), s.increment('job')])
      expect(first.sort()).toEqual([1, 2, 3])
      expect(await s.increment('other')).toBe(1)
      await s.put('config', 'cluster', { name: 'c1' })
      await s.close()
      if (name === 'memory') return // nothing survives a restart there, by definition
      const again = await create(place)
      expect(await again.increment('job')).toBe(4)
      expect(await again.get('config', 'cluster')).toEqual({ name: 'c1' })
    })

    it('finishes writes made before close, and refuses (never crashes on) writes after it', async () => {
      const place = await opts.freshPlace()
      const s = await create(place)
      const before = s.put('jobs', 'a', 1)
      const closing = s.close()
      await expect(s.put('jobs', 'b', 2)).rejects.toThrow()
      await before
      await closing
      await s.close() // twice is fine
      if (name === 'memory') return
      const again = await create(place)
      expect(await again.get('jobs', 'a')).toBe(1)
      expect(await again.get('jobs', 'b')).toBeUndefined()
    })

    it('refuses a table that does not exist (a typo is not a new table)', async () => {
      const s = await create(await opts.freshPlace())
      await expect(s.put('jbos' as never, 'k', 1)).rejects.toThrow(/no control-store table 'jbos'/)
    })
  })
}
