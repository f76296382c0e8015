import { describe, expect, it } from 'vitest'
import { BoundedMap, BoundedSet } from './bounded.ts'

describe('bounded collections', () => {
  it('a BoundedMap forgets its oldest entries past its bound, and says which', () => {
    const evicted: [string, number][] = []
    const m = new BoundedMap<string, number>(3, (k, v) => evicted.push([k, v]))
    for (const [i, k] of ['a', 'b', 'c', 'd', 'e'].entries()) m.set(k, i)
    expect([...m.keys()]).toEqual(['c', 'd', 'e'])
    expect(evicted).toEqual([
      ['a', 0],
      ['b', 1],
    ])
    m.set('c', 9) // an update keeps its place
    m.set('f', 5)
    expect([...m]).toEqual([
      ['d', 3],
      ['e', 4],
      ['f', 5],
    ])
  })

  it('a BoundedSet forgets its oldest members past its bound', () => {
    const s = new BoundedSet<number>(2)
    for (const x of [1, 2, 3, 2, 4]) s.add(x)
    expect([...s]).toEqual([3, 4])
  })
})
