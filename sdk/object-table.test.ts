import { describe, expect, it } from 'vitest'
import type { ObjectId } from './ids.ts'
import { ObjectTable } from './object-table.ts'

describe('object table', () => {
  it('assembles a fetched object, starting over when a relay fails over and resends from offset 0', () => {
    const t = new ObjectTable()
    const id = 'ab'.repeat(28) as ObjectId
    t.expect(id)
    t.resolve(id, { size: 6, locations: ['n1'] })
    t.startFetch(id)
    t.chunk(id, 0, 6, new Uint8Array([1, 1]))
    t.chunk(id, 2, 6, new Uint8Array([1, 1]))
    // n1 died; the coordinator restarts from another holder at offset 0
    t.chunk(id, 0, 6, new Uint8Array([2, 2]))
    expect(t.read(id)).toBeUndefined() // 6 bytes received in all, but not a whole object: not complete
    t.chunk(id, 2, 6, new Uint8Array([2, 2]))
    t.chunk(id, 4, 6, new Uint8Array([2, 2]))
    expect(t.read(id)?.data).toEqual(new Uint8Array([2, 2, 2, 2, 2, 2]))
  })
})
