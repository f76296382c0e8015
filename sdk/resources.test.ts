import { describe, expect, it } from 'vitest'
import { allocate, fits, formatResources, fromUnits, quantityProblem, release, toUnits } from './resources.ts'

describe('fixed-point resources (Ray: 1/10,000)', () => {
  it('a hundred tasks of 0.3 CPU give back exactly what they took', () => {
    const free = toUnits({ CPU: 40 })
    const part = toUnits({ CPU: 0.3 })
    for (let i = 0; i < 100; i++) allocate(part, free)
    for (let i = 0; i < 100; i++) release(part, free)
    expect(fromUnits(free)).toEqual({ CPU: 40 })
    expect(fits(toUnits({ CPU: 0.1 + 0.2 }), toUnits({ CPU: 0.3 }))).toBe(true)
    // Floating point does not: the same hundred in and out leave 3.9999999999999982 of 4.
    let f = 4
    for (let i = 0; i < 100; i++) f -= 0.3
    for (let i = 0; i < 100; i++) f += 0.3
    expect(f).not.toBe(4)
  })

  it('refuses what Ray refuses, and prints a request as Ray does', () => {
    expect(quantityProblem('CPU', -1)).toMatch(/cannot be negative/)
    expect(quantityProblem('CPU', 0.00001)).toMatch(/cannot go beyond 0.0001/)
    expect(quantityProblem('CPU', 0.0001)).toBeUndefined()
    expect(quantityProblem('CPU', 1.5)).toBeUndefined()
    expect(formatResources(toUnits({ CPU: 8, custom: 0.5 }))).toBe('{CPU: 8, custom: 0.5}')
  })
})
