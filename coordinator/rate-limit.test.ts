import { describe, expect, it } from 'vitest'
import { RateLimit } from './rate-limit.ts'

describe('RateLimit', () => {
  it('allows a burst, then the rate, and refuses more without taking any', () => {
    let now = 0
    const r = new RateLimit(100, 200, () => now)
    expect(r.take(200)).toBe(true)
    expect(r.take(1)).toBe(false)
    now = 500 // half a second: 50 more
    expect(r.take(60)).toBe(false)
    expect(r.take(50)).toBe(true)
    now = 100_000 // refills to the burst, not beyond
    expect(r.take(201)).toBe(false)
    expect(r.take(200)).toBe(true)
  })
})
