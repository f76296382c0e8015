import { describe, expect, it } from 'vitest'
import { Inbound, Outbound } from './peer-streams.ts'

describe('peer streams', () => {
  it('a direct frame that overtakes what a closed link handed to the relay does not make the receiver drop it', () => {
    const out = new Outbound<string>()
    const inb = new Inbound()
    const lost = out.stamp('b', ['m1', 'm2', 'm3'], 0) // on a link that closes before b reads it
    const resent = out.takeUnacked('b') // goes again through the relay
    expect(resent?.sent.map((s) => s.msg)).toEqual(['m1', 'm2', 'm3'])
    const next = out.stamp('b', ['m4'], 1) // direct, on a new link, and it arrives first
    expect(next.base).toBe(lost.base)
    expect(inb.accept('a', next.stream, next.base, next.first)).toBe(true)
    for (const s of resent?.sent ?? []) expect(inb.accept('a', resent?.stream as number, resent?.base as number, s.seq)).toBe(true)
    expect(inb.accept('a', next.stream, next.base, 2)).toBe(false) // a second copy is still dropped
    expect(inb.takeAck('a')).toEqual({ ackStream: next.stream, ack: 4 })
    out.acked('b', next.stream, 4)
    expect(out.position('b').base).toBe(5)
  })
})
