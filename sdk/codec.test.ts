import { describe, expect, it } from 'vitest'
import { decodeFrame, decodeFrames, decodeValue, encodeFrame, encodeFrames, encodeValue } from './codec.ts'
import type { ObjectId } from './ids.ts'
import { ObjectRef } from './object-ref.ts'

const roundTrip = <T>(v: T): T => decodeValue(encodeValue(v, 'v'))

describe('value codec', () => {
  it('round-trips typed arrays, Map, Set, Date, BigInt, nested and cyclic values exactly', () => {
    const v = {
      f64: new Float64Array([1.5, -0]),
      i32: new Int32Array([-1, 2]),
      u8: new Uint8Array([255]),
      m: new Map<unknown, unknown>([
        [1, 'a'],
        [{ k: 1 }, new Set([2])],
      ]),
      d: new Date(86_400_000),
      big: -(2n ** 90n),
      small: 5n,
      n: 2 ** 53 - 1,
      plain: { a: [1, 'two', null, undefined, true] },
    }
    expect(roundTrip(v)).toEqual(v)
    const cyc: { self?: unknown } = {}
    cyc.self = cyc
    const back = roundTrip(cyc)
    expect(back.self).toBe(back)
  })

  it('keeps ObjectRefs nested in values as refs, and reports them', () => {
    const id = 'ab'.repeat(28) as ObjectId
    const refs: ObjectId[] = []
    const back = decodeValue<{ list: ObjectRef[] }>(encodeValue({ list: [new ObjectRef(id)] }, 'v', refs))
    expect(back.list[0]).toBeInstanceOf(ObjectRef)
    expect(back.list[0]?.id).toBe(id)
    expect(refs).toEqual([id])
  })

  it('names the part of a value that cannot be serialized instead of silently dropping it', () => {
    expect(() => encodeValue({ a: [1, { cb: () => 1 }] }, 'argument 0 of f')).toThrow(/argument 0 of f\.a\[1\]\.cb is a function/)
    expect(() => encodeValue(Symbol('s'), 'x')).toThrow(/symbol/)
    expect(() => encodeValue(new Map([['k', Promise.resolve(1)]]), 'x')).toThrow(/x\.get\(k\) is a Promise/)
    expect(() => encodeValue(new WeakMap(), 'x')).toThrow(/WeakMap/)
  })

  it('packs the small messages of a turn into one frame, keeps order, and gives large chunks their own', () => {
    const frames: Uint8Array[] = []
    const big = new Uint8Array(1024 * 1024)
    encodeFrames([{ type: 'a' }, { type: 'b' }, { type: 'chunk', data: big }, { type: 'c' }], (f) => frames.push(f))
    expect(frames).toHaveLength(3)
    expect(frames.map((f) => (decodeFrames(f) as { type: string }[]).map((m) => m.type))).toEqual([['a', 'b'], ['chunk'], ['c']])
  })

  it('frames carry user bytes opaquely', () => {
    const data = encodeValue([1, 2], 'v')
    const frame = decodeFrame(encodeFrame({ type: 'put', reqId: 1, objectId: 'x', data })) as { data: Uint8Array }
    expect(decodeValue(frame.data)).toEqual([1, 2])
  })
})

describe('value codec and garbage', () => {
  it('keeps nothing of a value once it is encoded: a ref inside it can be collected (its object freed)', async () => {
    const gc = (globalThis as { gc?: () => void }).gc
    expect(gc, 'the unit project runs with --expose-gc').toBeDefined()
    let collected = false
    const registry = new FinalizationRegistry(() => {
      collected = true
    })
    ;(() => {
      const ref = new ObjectRef('ab'.repeat(28) as ObjectId)
      registry.register(ref, 'ref')
      encodeValue({ inside: [ref] }, 'a value holding a ref')
    })()
    for (let i = 0; i < 20 && !collected; i++) {
      gc?.()
      await new Promise((r) => setTimeout(r, 10))
    }
    expect(collected).toBe(true)
  })
})

describe('frames under a size limit', () => {
  it('cuts one turn of many messages into frames under the limit, keeps their order, and names what each carried', () => {
    const msgs = Array.from({ length: 3000 }, (_, i) => ({ type: 'submit', i, pad: 'x'.repeat(100) }))
    const frames: { frame: Uint8Array; carried: number[] }[] = []
    encodeFrames(msgs, (frame, carried) => frames.push({ frame: frame.slice(), carried: carried.map((m) => m.i) }), 64 * 1024)
    expect(frames.length).toBeGreaterThan(4)
    for (const f of frames) {
      expect(f.frame.byteLength).toBeLessThanOrEqual(64 * 1024)
      // Each frame holds exactly what it says it carried, whole and in order.
      expect(decodeFrames(f.frame).map((m) => (m as { i: number }).i)).toEqual(f.carried)
    }
    expect(frames.flatMap((f) => f.carried)).toEqual(msgs.map((m) => m.i))
  })

  it('a single message over the limit is refused to its sender, the rest still go', () => {
    const tooLarge: number[] = []
    const sent: unknown[] = []
    encodeFrames(
      [{ a: 1 }, { big: 'y'.repeat(200_000) }, { a: 2 }],
      (frame) => sent.push(...decodeFrames(frame)),
      100_000,
      (_m, bytes) => tooLarge.push(bytes),
    )
    expect(sent).toEqual([{ a: 1 }, { a: 2 }])
    expect(tooLarge).toHaveLength(1)
    expect(tooLarge[0]).toBeGreaterThan(100_000)
  })
})
