import { describe, expect, it } from 'vitest'
import type { ObjectId } from '../../sdk/ids.ts'
import type { ObjectUpdate } from '../../sdk/protocol/index.ts'
import { ObjectDirectory } from './object-directory.ts'

const id = (n: number) => n.toString(16).padStart(56, '0') as ObjectId
const sink = () => {
  const got: ObjectUpdate[] = []
  return { got, pushObject: (u: ObjectUpdate) => void got.push(u) }
}

describe('object directory', () => {
  it('keeps a small put while its owner holds the ref, and serves it to others', () => {
    const d = new ObjectDirectory()
    const owner = sink()
    d.put(id(1), 'job', owner, { data: new Uint8Array([1]) })
    expect(d.has(id(1))).toBe(true)
    expect(owner.got).toEqual([]) // the owner has its own copy
    const other = sink()
    d.subscribe(id(1), other)
    expect(other.got[0]?.data).toEqual(new Uint8Array([1]))
    d.release(id(1), owner)
    expect(d.has(id(1))).toBe(false)
  })

  it("counts each tenant's stored bytes as objects are made, lost and collected (the quota never walks the directory)", () => {
    const d = new ObjectDirectory((jobId) => (jobId === 'jobB' ? 'b' : 'a'))
    const owner = sink()
    d.put(id(10), 'jobA', owner, { data: new Uint8Array(10) })
    d.create(id(11), 'jobA', owner)
    expect(d.storedBy('a')).toBe(10) // a pending return takes nothing yet
    d.resolve(id(11), { size: 1000, location: 'node-1' })
    d.put(id(12), 'jobB', owner, { data: new Uint8Array(7) })
    expect([d.storedBy('a'), d.storedBy('b')]).toEqual([1010, 7])
    d.free(id(11)) // freed: its bytes are gone, though the entry stays (as the error) while referenced
    expect(d.storedBy('a')).toBe(10)
    d.release(id(10), owner)
    d.release(id(11), owner)
    expect(d.storedBy('a')).toBe(0)
    d.resolveBuffered(id(13), new Uint8Array(5)) // unknown id: nothing counted
    d.create(id(14), 'jobB', owner)
    d.resolveBuffered(id(14), new Uint8Array(500))
    d.removeNode('node-1')
    expect(d.storedBy('b')).toBe(507)
    d.release(id(12), owner)
    d.release(id(14), owner)
    expect(d.storedBy('b')).toBe(0)
  })

  it('keeps a value decoded from a frame as bytes of its own, not as a view that holds the whole frame', () => {
    const d = new ObjectDirectory()
    const frame = new Uint8Array(1 << 20).fill(7)
    d.put(id(2), 'job', sink(), { data: frame.subarray(100, 110) })
    const kept = d.read(id(2))?.data as Uint8Array
    expect(kept).toEqual(new Uint8Array(10).fill(7))
    expect(kept.buffer.byteLength).toBe(10)
  })

  it('lives while a pending task pins it, and is deleted on every node at zero', () => {
    const d = new ObjectDirectory()
    const deleted: [ObjectId, string[]][] = []
    d.onDelete = (oid, nodes) => void deleted.push([oid, nodes])
    const owner = sink()
    d.create(id(2), 'job', owner)
    d.resolve(id(2), { size: 1e6, location: 'nodeA' })
    d.addLocation(id(2), 'nodeB')
    d.pin(id(2))
    d.release(id(2), owner)
    expect(d.has(id(2))).toBe(true)
    d.unpin(id(2))
    expect(d.has(id(2))).toBe(false)
    expect(deleted).toEqual([[id(2), ['nodeA', 'nodeB']]])
  })

  it('keeps objects nested in another alive while the container lives', () => {
    const d = new ObjectDirectory()
    const owner = sink()
    d.put(id(3), 'job', owner, { data: new Uint8Array([3]) })
    d.put(id(4), 'job', owner, { data: new Uint8Array([4]), nested: [id(3)] })
    d.release(id(3), owner)
    expect(d.has(id(3))).toBe(true)
    d.release(id(4), owner)
    expect(d.has(id(3))).toBe(false)
  })

  it('a pending return held by a borrower outlives its owner and its container, gets its value, and goes with the borrow', () => {
    // The order seen in test_recursively_nest_ids when its `_put` task runs late: the driver publishes the pending
    // return inside a put, the deepest task's owner borrows it, the driver lets go of both, the container is collected,
    // and only then does the return get its value.
    const d = new ObjectDirectory()
    const deleted: [ObjectId, string[]][] = []
    d.onDelete = (oid, nodes) => void deleted.push([oid, nodes])
    const row = (oid: ObjectId) => d.rows().find((r) => r.objectId === oid)
    const driver = sink()
    d.create(id(5), 'job', driver)
    d.put(id(6), 'job', driver, { data: new Uint8Array([6]), nested: [id(5)] })
    d.pin(id(5)) // the borrow
    d.release(id(5), driver)
    d.release(id(6), driver)
    expect(d.has(id(6))).toBe(false)
    // Listed, held, and without a value yet: what the state API shows while its task runs.
    expect(row(id(5))).toMatchObject({ size: 0, refCount: 1 })
    d.resolve(id(5), { size: 2e6, location: 'nodeA' })
    expect(row(id(5))).toMatchObject({ size: 2e6, refCount: 1, locations: ['nodeA'] })
    expect(deleted).toEqual([])
    d.unpin(id(5))
    expect(d.has(id(5))).toBe(false)
    expect(deleted).toEqual([[id(5), ['nodeA']]])
  })

  it('an object whose last copy dies with its node is lost, and says where', () => {
    const d = new ObjectDirectory()
    const owner = sink()
    d.create(id(5), 'job', owner)
    d.resolve(id(5), { size: 1e6, location: 'nodeA' })
    expect(d.removeNode('nodeA')).toEqual([id(5)])
    const late = sink()
    d.subscribe(id(5), late)
    expect(late.got[0]?.error?.code).toBe('OBJECT_LOST')
    expect(late.got[0]?.error?.message).toContain('nodeA')
  })
})
