import { describe, expect, it } from 'vitest'
import { outcomeKey, Tally } from './verification.ts'

const bytes = (...xs: number[]) => new Uint8Array(xs)

describe('outcomeKey: equal exactly when the outcomes are', () => {
  it('compares returns byte by byte, with their boundaries', () => {
    expect(outcomeKey({ ok: true, returns: [bytes(1, 2)] })).toBe(outcomeKey({ ok: true, returns: [bytes(1, 2)] }))
    expect(outcomeKey({ ok: true, returns: [bytes(1, 2)] })).not.toBe(outcomeKey({ ok: true, returns: [bytes(1, 3)] }))
    // [ab, c] is not [a, bc]
    expect(outcomeKey({ ok: true, returns: [bytes(1, 2), bytes(3)] })).not.toBe(outcomeKey({ ok: true, returns: [bytes(1), bytes(2, 3)] }))
    expect(outcomeKey({ ok: true, returns: [] })).not.toBe(outcomeKey({ ok: true, returns: [bytes()] }))
  })

  it('compares errors by what they say, not by where they were raised (stacks name a node)', () => {
    const e = (message: string, stack: string) => ({
      ok: false as const,
      error: { name: 'TaskError', code: 'TASK_ERROR', message, stack, data: { remoteName: 'RangeError' } },
    })
    expect(outcomeKey(e('bad', 'at node-1'))).toBe(outcomeKey(e('bad', 'at node-2')))
    expect(outcomeKey(e('bad', ''))).not.toBe(outcomeKey(e('worse', '')))
    expect(outcomeKey(e('bad', ''))).toMatch(/^error:/)
    expect(outcomeKey(e('bad', ''))).not.toBe(outcomeKey({ ok: true, returns: [bytes()] }))
  })
})

describe('Tally.decide: all N agree, else a strict majority, else more replicas within the budget, else nothing', () => {
  const tally = (replicas: number, votes: [string, string][]) => {
    const t = new Tally(replicas)
    for (const [key, node] of votes) t.record(key, node)
    return t
  }

  it('accepts N identical results', () => {
    expect(
      tally(2, [
        ['A', 'n1'],
        ['A', 'n2'],
      ]).decide(3),
    ).toEqual({ kind: 'accept', key: 'A', agreed: ['n1', 'n2'], minority: [] })
    expect(
      tally(3, [
        ['A', 'n1'],
        ['A', 'n2'],
        ['A', 'n3'],
      ]).decide(0),
    ).toMatchObject({ kind: 'accept', key: 'A' })
  })

  it('two that disagree: one more replica, which decides', () => {
    const t = tally(2, [
      ['A', 'forger'],
      ['B', 'n1'],
    ])
    expect(t.decide(3)).toEqual({ kind: 'more', count: 1 })
    t.record('B', 'n2')
    expect(t.decide(2)).toEqual({ kind: 'accept', key: 'B', agreed: ['n1', 'n2'], minority: ['forger'] })
  })

  it('a strict majority of all votes wins; a tie does not', () => {
    expect(
      tally(3, [
        ['A', 'n1'],
        ['B', 'n2'],
        ['A', 'n3'],
      ]).decide(0),
    ).toEqual({
      kind: 'accept',
      key: 'A',
      agreed: ['n1', 'n3'],
      minority: ['n2'],
    })
    // 2 against 2: the leader needs one more vote to have 3 of 5.
    expect(
      tally(2, [
        ['A', 'n1'],
        ['B', 'n2'],
        ['A', 'n3'],
        ['B', 'n4'],
      ]).decide(5),
    ).toEqual({ kind: 'more', count: 1 })
    // All different: the leader needs two more to have 3 of 5.
    expect(
      tally(2, [
        ['A', 'n1'],
        ['B', 'n2'],
        ['C', 'n3'],
      ]).decide(5),
    ).toEqual({ kind: 'more', count: 2 })
  })

  it('is undecided when the budget cannot give any outcome a majority, and says why', () => {
    const v = tally(2, [
      ['A', 'n1'],
      ['B', 'n2'],
    ]).decide(0)
    expect(v.kind).toBe('undecided')
    expect(v.kind === 'undecided' && v.reason).toMatch(/2 replicas returned 2 different results.*allows 0 more.*1 are needed/)
    expect(
      tally(2, [
        ['A', 'n1'],
        ['B', 'n2'],
        ['C', 'n3'],
      ]).decide(1).kind,
    ).toBe('undecided')
  })

  it('replicas that never voted (lost with their node) are made up for, within the budget', () => {
    expect(tally(3, [['A', 'n1']]).decide(5)).toEqual({ kind: 'more', count: 2 })
    expect(tally(3, [['A', 'n1']]).decide(1)).toMatchObject({ kind: 'undecided', reason: expect.stringMatching(/only 1 of 3/) })
    expect(tally(2, []).decide(0)).toMatchObject({ kind: 'undecided', reason: expect.stringMatching(/no replica finished/) })
  })

  it('lists every outcome with its nodes, the largest group first', () => {
    expect(
      tally(2, [
        ['A', 'n1'],
        ['B', 'n2'],
        ['B', 'n3'],
      ]).byOutcome(),
    ).toEqual([
      { key: 'B', nodes: ['n2', 'n3'] },
      { key: 'A', nodes: ['n1'] },
    ])
  })
})
