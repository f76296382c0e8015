import { describe, expect, it } from 'vitest'
import {
  CHUNK_HEADER_BYTES,
  chunkBuffer,
  decodeBinary,
  decodePing,
  decodePull,
  encodeFragment,
  encodeMessages,
  encodePing,
  encodePull,
  FRAGMENT_HEADER_BYTES,
  PeerFrameKind,
} from './data-channel.ts'

describe('data channel messages', () => {
  it('a frame of messages, a fragment and an object chunk decode to what was encoded, as views', () => {
    const m = decodeBinary(encodeMessages(new Uint8Array([1, 2]), new Uint8Array([3])))
    expect(m).toEqual({ kind: 'messages', frame: new Uint8Array([1, 2, 3]) })
    const f = decodeBinary(encodeFragment(7, 1000, 500, new Uint8Array([9, 9])))
    expect(f).toEqual({ kind: 'fragment', id: 7, total: 1000, offset: 500, data: new Uint8Array([9, 9]) })
    const b = chunkBuffer(42, 3)
    b.set([5, 6, 7], CHUNK_HEADER_BYTES)
    const c = decodeBinary(b)
    expect(c).toEqual({ kind: 'chunk', transfer: 42, data: new Uint8Array([5, 6, 7]) })
    // A view into the message, not a copy (an object's chunks are assembled without a second copy).
    expect(c?.kind === 'chunk' && c.data.buffer).toBe(b.buffer)
  })

  it('anything else from a peer decodes to undefined, never throws', () => {
    expect(decodeBinary(new Uint8Array(0))).toBeUndefined()
    expect(decodeBinary(new Uint8Array([PeerFrameKind.objectChunk, 1, 2]))).toBeUndefined()
    expect(decodeBinary(new Uint8Array(FRAGMENT_HEADER_BYTES - 1).fill(PeerFrameKind.fragment))).toBeUndefined()
    expect(decodeBinary(new Uint8Array([99, 0, 0, 0, 0, 0]))).toBeUndefined()
    for (const text of ['', 'not json', 'null', '[]', '{"t":"get","rid":"1","id":"x"}', '{"t":"get","rid":1}', '{"t":"x","rid":1}'])
      expect(decodePull(text), text).toBeUndefined()
    expect(decodePing('hello')).toBeUndefined()
  })

  it('the pull protocol and pings round-trip; a bad size or message from a peer reads as empty or refused', () => {
    for (const m of [
      { t: 'get', rid: 1, id: 'abc' },
      { t: 'meta', rid: 2, size: 10 },
      { t: 'err', rid: 3, message: 'no' },
    ] as const)
      expect(decodePull(encodePull(m))).toEqual(m)
    expect(decodePull('{"t":"meta","rid":2,"size":-5}')).toEqual({ t: 'meta', rid: 2, size: 0 })
    expect(decodePull('{"t":"err","rid":3}')).toEqual({ t: 'err', rid: 3, message: 'the peer refused' })
    expect(decodePing(encodePing({ kind: 'ping', nonce: 'n1', text: 'a:b' }))).toEqual({ kind: 'ping', nonce: 'n1', text: 'a:b' })
  })
})
