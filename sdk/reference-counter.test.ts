import { describe, expect, it } from 'vitest'
import type { ObjectId } from './ids.ts'
import { ReferenceCounter } from './reference-counter.ts'

const id = (n: number) => n.toString(16).padStart(56, '0') as ObjectId
const turn = () => new Promise((r) => setTimeout(r, 0))

function counter() {
  const said = { release: [] as string[], borrow: [] as string[], unborrow: [] as string[], forgot: [] as string[] }
  const refs = new ReferenceCounter(
    {
      release: (ids) => said.release.push(...ids),
      borrow: (ids) => said.borrow.push(...ids),
      unborrow: (ids) => said.unborrow.push(...ids),
    },
    (i) => said.forgot.push(i),
  )
  return { refs, said }
}

describe('reference counter (the borrower side of Ray reference counting)', () => {
  it('a driver borrows a ref it finds and did not make; one it made it owns', async () => {
    const { refs, said } = counter()
    const mine = refs.own(id(1))
    refs.found(id(1)) // found again: it is ours, no borrow
    refs.found(id(2))
    refs.found(id(2)) // a second instance of the same borrowed id: one borrow
    await turn()
    expect(said.borrow).toEqual([id(2)])
    expect(mine.id).toBe(id(1))
  })

  it("counts ObjectRef instances (local) apart from pending tasks that take the object (submitted), as Ray's table", () => {
    const { refs } = counter()
    const a = refs.own(id(7))
    refs.retain([id(7), id(7)])
    refs.retain([id(8)]) // passed to a task, never held here as a ref: borrowed for the task
    expect(Object.fromEntries(refs.table())).toEqual({ [id(7)]: { local: 1, submitted: 2 }, [id(8)]: { local: 0, submitted: 1 } })
    refs.unretain([id(7), id(8)])
    expect(Object.fromEntries(refs.table())).toEqual({ [id(7)]: { local: 1, submitted: 1 } })
    expect(a.id).toBe(id(7))
  })

  it('a borrow taken for a child task ends with the scope when the child finished first', async () => {
    const { refs, said } = counter()
    refs.beginScope()
    refs.found(id(9)) // in the task's arguments: the pending task pins it, no borrow
    refs.retain([id(9)]) // passed on to a child task: borrowed while the child is pending
    refs.unretain([id(9)]) // the child finished while this task still runs
    refs.endScope()
    await turn()
    expect(said.borrow).toEqual([id(9)])
    expect(said.unborrow).toEqual([id(9)])
  })

  it("a task's scope lets go of what it made and found; it never borrows what its pending task pins", async () => {
    const { refs, said } = counter()
    refs.beginScope()
    refs.own(id(3))
    refs.found(id(4))
    const release = refs.endScope()
    await turn()
    expect(release).toEqual([id(3)]) // carried in the task's result, released after the result is taken
    expect(said.borrow).toEqual([])
    expect(said.release).toEqual([]) // not sent on its own: the result carries it
    expect(said.forgot.sort()).toEqual([id(3), id(4)])
    expect(refs.holds(id(3))).toBe(false)
  })

  it('a collected ref releases (owned) or unborrows (borrowed), once', async () => {
    const gc = (globalThis as { gc?: () => void }).gc
    expect(gc).toBeDefined()
    const { refs, said } = counter()
    ;(() => {
      refs.own(id(5))
      refs.found(id(6))
    })()
    for (let i = 0; i < 20 && said.release.length + said.unborrow.length < 2; i++) {
      gc?.()
      await turn()
    }
    expect(said.release).toEqual([id(5)])
    expect(said.unborrow).toEqual([id(6)])
  })
})
