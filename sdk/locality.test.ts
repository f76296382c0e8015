import { describe, expect, it } from 'vitest'
import { newNodeId } from './ids.ts'
import { type ObjectPlacement, whereTheDataIs } from './locality.ts'
import { newDriverPeerId } from './peer-address.ts'
import type { TaskArg } from './protocol/index.ts'

const [n1, n2] = [newNodeId(), newNodeId()]
const driver = newDriverPeerId()

/** Arguments naming objects by key, and where each object is. */
function place(objects: Record<string, ObjectPlacement>, ...args: (string | Uint8Array)[]) {
  const list: TaskArg[] = args.map((a) => (typeof a === 'string' ? { ref: a } : { v: a }))
  return whereTheDataIs(list, (id) => objects[id])
}

describe('whereTheDataIs', () => {
  it('is the node holding the most bytes of the ref arguments, summed over them', () => {
    const objects = { a: { size: 300, locations: [n1] }, b: { size: 200, locations: [n2] }, c: { size: 200, locations: [n2] } }
    expect(place(objects, 'a', 'b')).toBe(n1)
    expect(place(objects, 'a', 'b', 'c')).toBe(n2)
  })

  it('counts every holder of a copy, from an array or a set', () => {
    expect(place({ a: { size: 10, locations: new Set([n1, n2]) }, b: { size: 5, locations: [n2] } }, 'a', 'b')).toBe(n2)
  })

  it('skips holders that are not nodes: a driver serving its own put cannot run the task', () => {
    const objects = { big: { size: 1000, locations: [driver] }, small: { size: 10, locations: [n2] } }
    expect(place(objects, 'big', 'small')).toBe(n2)
    expect(place(objects, 'big')).toBeUndefined()
  })

  it('has no preference for inline values, unknown objects or objects without size or holders', () => {
    const objects = { inline: {}, empty: { size: 100, locations: [] }, sizeless: { size: 0, locations: [n1] } }
    expect(place(objects, new Uint8Array(8), 'inline', 'empty', 'sizeless', 'unknown')).toBeUndefined()
  })

  it('breaks a tie for the node that reached the most bytes first, in argument order', () => {
    const objects = { a: { size: 10, locations: [n1] }, b: { size: 20, locations: [n2] }, c: { size: 10, locations: [n1] } }
    expect(place(objects, 'a', 'b', 'c')).toBe(n2)
  })
})
