import { describe, expect, it } from 'vitest'
import { TurnBatch } from './turn-batch.ts'

const turn = () => new Promise((r) => setTimeout(r, 0))

describe('TurnBatch', () => {
  it('hands over one turn of items together, at the end of the turn', async () => {
    const got: number[][] = []
    const b = new TurnBatch<number>((items) => got.push(items))
    for (let i = 0; i < 5; i++) b.push(i)
    expect(got).toEqual([])
    await turn()
    expect(got).toEqual([[0, 1, 2, 3, 4]])
    b.push(5)
    b.flush()
    expect(got).toEqual([[0, 1, 2, 3, 4], [5]])
  })

  it("'queued-tasks' waits for the tasks already queued: items pushed from several events go together", async () => {
    const got: number[][] = []
    const b = new TurnBatch<number>((items) => got.push(items), { until: 'queued-tasks' })
    // Three events already queued (as three worker results would be), each pushing one item.
    for (let i = 0; i < 3; i++) setImmediate(() => b.push(i))
    await new Promise((r) => setTimeout(r, 5))
    expect(got).toEqual([[0, 1, 2]])
    // On an idle loop it still goes at once (in the next task).
    b.push(3)
    await new Promise((r) => setImmediate(r))
    expect(got).toEqual([[0, 1, 2], [3]])
  })

  it('cuts a turn by item count and by bytes, keeping the order', async () => {
    const got: string[][] = []
    const b = new TurnBatch<string>((items) => got.push(items), { maxItems: 3, maxBytes: () => 10, sizeOf: (s) => s.length })
    for (const s of ['aaaa', 'bbbb', 'cc', 'd', 'e', 'f', 'gggggggggggg']) b.push(s)
    await turn()
    // 4 + 4 + 2 bytes fit the 10 (not over); three items is the count; an item over the budget goes alone.
    expect(got).toEqual([['aaaa', 'bbbb', 'cc'], ['d', 'e', 'f'], ['gggggggggggg']])
  })
})
