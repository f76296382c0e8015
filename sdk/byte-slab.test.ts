import { describe, expect, it } from 'vitest'
import { ByteSlab } from './byte-slab.ts'

describe('byte slab', () => {
  it('copies: later changes to the source, or other copies, never reach a copy', () => {
    const slab = new ByteSlab(16, 8)
    const frame = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    const a = slab.copy(frame.subarray(0, 3))
    const b = slab.copy(frame.subarray(3, 9)) // 3 + 6 ≤ 16: the same chunk
    const c = slab.copy(frame.subarray(0, 8)) // 9 + 8 > 16: a new chunk
    const big = slab.copy(frame) // over maxShared: a buffer of its own
    frame.fill(0)
    expect([...a]).toEqual([1, 2, 3])
    expect([...b]).toEqual([4, 5, 6, 7, 8, 9])
    expect([...c]).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect([...big]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    expect(a.buffer).toBe(b.buffer)
    expect(c.buffer).not.toBe(a.buffer)
    expect(big.buffer).not.toBe(frame.buffer)
    expect(big.buffer.byteLength).toBe(10)
  })
})
