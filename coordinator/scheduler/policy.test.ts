import { describe, expect, it } from 'vitest'
import { fits, toUnits } from '../../sdk/resources.ts'
import { type NodeView, pickNode } from './policy.ts'

const node = (id: string, cpus: number, used = 0, extra: Record<string, number> = {}): NodeView => ({
  nodeId: id,
  total: { CPU: cpus, ...extra },
  available: { CPU: cpus - used, ...extra },
})
const st = () => ({ spreadCursor: 0 })

describe('scheduling policy', () => {
  it('packs the first node until it is half busy, then spreads to the least utilized (Ray hybrid)', () => {
    expect(pickNode({ CPU: 1 }, 'DEFAULT', [node('a', 4, 1), node('b', 4)], st())).toEqual({ kind: 'scheduled', nodeId: 'a' })
    expect(pickNode({ CPU: 1 }, 'DEFAULT', [node('a', 4, 2), node('b', 4)], st())).toEqual({ kind: 'scheduled', nodeId: 'b' })
    expect(pickNode({ CPU: 1 }, 'DEFAULT', [node('a', 4, 3), node('b', 4, 2)], st())).toEqual({ kind: 'scheduled', nodeId: 'b' })
  })

  it('never over-commits: a full cluster is retryable, a too-big task infeasible', () => {
    expect(pickNode({ CPU: 1 }, 'DEFAULT', [node('a', 2, 2)], st())).toEqual({ kind: 'retryable' })
    expect(pickNode({ CPU: 3 }, 'DEFAULT', [node('a', 2)], st())).toEqual({ kind: 'infeasible' })
    expect(pickNode({ CPU: 1, GPU: 1 }, 'DEFAULT', [node('a', 8)], st())).toEqual({ kind: 'infeasible' })
    expect(pickNode({ CPU: 1, custom: 2 }, 'DEFAULT', [node('a', 8), node('b', 1, 0, { custom: 2 })], st())).toEqual({
      kind: 'scheduled',
      nodeId: 'b',
    })
  })

  it('SPREAD round-robins over nodes that can take the task', () => {
    const nodes = [node('a', 4), node('b', 4), node('c', 4, 4)]
    const s = st()
    const picks = Array.from({ length: 4 }, () => (pickNode({ CPU: 1 }, 'SPREAD', nodes, s) as { nodeId: string }).nodeId)
    expect(picks).toEqual(['a', 'b', 'a', 'b'])
  })

  it('node affinity: hard waits for its node, or fails if it is gone or can never fit it (Ray); soft falls back', () => {
    const nodes = [node('a', 2, 2), node('b', 2)]
    expect(pickNode({ CPU: 1 }, { nodeId: 'a', soft: false }, nodes, st())).toEqual({ kind: 'retryable' })
    expect(pickNode({ CPU: 1 }, { nodeId: 'a', soft: true }, nodes, st())).toEqual({ kind: 'scheduled', nodeId: 'b' })
    expect(pickNode({ CPU: 1 }, { nodeId: 'b', soft: false }, nodes, st())).toEqual({ kind: 'scheduled', nodeId: 'b' })
    expect(pickNode({ CPU: 1 }, { nodeId: 'gone', soft: false }, nodes, st())).toMatchObject({ kind: 'failed' })
    expect(pickNode({ CPU: 1 }, { nodeId: 'gone', soft: true }, nodes, st())).toEqual({ kind: 'scheduled', nodeId: 'b' })
    expect(pickNode({ CPU: 3 }, { nodeId: 'b', soft: false }, nodes, st())).toMatchObject({ kind: 'failed' })
  })

  it('zero and fractional requests fit as expected', () => {
    expect(fits(toUnits({ CPU: 0 }), toUnits({ CPU: 0 }))).toBe(true)
    expect(fits(toUnits({ CPU: 0.5 }), toUnits({ CPU: 0.5 }))).toBe(true)
    expect(fits(toUnits({ CPU: 0.1 + 0.2 }), toUnits({ CPU: 0.3 }))).toBe(true)
    expect(fits(toUnits({ CPU: 0.3001 }), toUnits({ CPU: 0.3 }))).toBe(false)
  })
})
