/**
 * The layout of one message on a peer data channel (PeerJS `raw` serialization), below the peer wire of peer.ts:
 * - binary messages start with a kind byte: a frame of peer messages, a piece of a frame too big for one message, or
 *   a chunk of an object being pulled;
 * - text messages are the object pull protocol (`get` → `meta` then chunks, or `err`), as JSON, and pings.
 * Every decoder here takes bytes from another participant: it checks lengths and shapes and returns undefined for
 * anything else, never throws, never reads out of bounds.
 */

/** A data channel message carries at most this many bytes (Chromium's SCTP maxMessageSize is 256 KiB). */
export const PEER_MESSAGE_MAX_BYTES = 256 * 1024

/** Binary data channel messages start with one of these bytes. */
export const PeerFrameKind = {
  /** A chunk of an object being pulled: `[kind][u32 transfer id][bytes]`. */
  objectChunk: 0,
  /** A msgpack frame of peer messages (one, or an array sent in one turn): `[kind][frame]`. */
  messages: 1,
  /** A piece of a frame too big for one data channel message: `[kind][u32 id][u32 total][u32 offset][bytes]`. */
  fragment: 2,
} as const

/** Object chunk header: kind byte + 4-byte transfer id. */
export const CHUNK_HEADER_BYTES = 5
/** Fragment header: kind byte + id + total + offset (4 bytes each, little-endian). */
export const FRAGMENT_HEADER_BYTES = 13

/** A binary data channel message, decoded. `data`/`frame` are views into the message, not copies. */
export type BinaryMessage =
  | { kind: 'messages'; frame: Uint8Array }
  | { kind: 'chunk'; transfer: number; data: Uint8Array }
  | { kind: 'fragment'; id: number; total: number; offset: number; data: Uint8Array }

/** One frame of peer messages (`header` then `body`) as one data channel message. */
export function encodeMessages(header: Uint8Array, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const m = new Uint8Array(1 + header.byteLength + body.byteLength)
  m[0] = PeerFrameKind.messages
  m.set(header, 1)
  m.set(body, 1 + header.byteLength)
  return m
}

/** One piece (`part`, at `offset` of a frame of `total` bytes) of fragmented frame `id`. */
export function encodeFragment(id: number, total: number, offset: number, part: Uint8Array): Uint8Array<ArrayBuffer> {
  const m = new Uint8Array(FRAGMENT_HEADER_BYTES + part.byteLength)
  const view = new DataView(m.buffer)
  m[0] = PeerFrameKind.fragment
  view.setUint32(1, id, true)
  view.setUint32(5, total, true)
  view.setUint32(9, offset, true)
  m.set(part, FRAGMENT_HEADER_BYTES)
  return m
}

/**
 * A reusable buffer for the chunks of one object transfer: its header is written once; the caller copies each chunk
 * after `CHUNK_HEADER_BYTES` (a data channel's send() copies synchronously, so one buffer serves every chunk).
 */
export function chunkBuffer(transfer: number, room: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(CHUNK_HEADER_BYTES + room)
  b[0] = PeerFrameKind.objectChunk
  new DataView(b.buffer).setUint32(1, transfer, true)
  return b
}

/** Decodes a binary data channel message; undefined if it is none of the kinds or too short for its header. */
export function decodeBinary(m: Uint8Array): BinaryMessage | undefined {
  if (m.byteLength < 1) return undefined
  const kind = m[0]
  if (kind === PeerFrameKind.messages) return { kind: 'messages', frame: m.subarray(1) }
  const view = new DataView(m.buffer, m.byteOffset, m.byteLength)
  if (kind === PeerFrameKind.objectChunk && m.byteLength >= CHUNK_HEADER_BYTES)
    return { kind: 'chunk', transfer: view.getUint32(1, true), data: m.subarray(CHUNK_HEADER_BYTES) }
  if (kind === PeerFrameKind.fragment && m.byteLength >= FRAGMENT_HEADER_BYTES)
    return {
      kind: 'fragment',
      id: view.getUint32(1, true),
      total: view.getUint32(5, true),
      offset: view.getUint32(9, true),
      data: m.subarray(FRAGMENT_HEADER_BYTES),
    }
  return undefined
}

/**
 * The object pull protocol: the puller sends `get` with a transfer id of its choosing; the holder answers `meta` (the
 * object's size; its chunks follow as binary messages with that transfer id) or `err`.
 */
export type PullMessage =
  | { t: 'get'; rid: number; id: string }
  | { t: 'meta'; rid: number; size: number }
  | { t: 'err'; rid: number; message: string }

export const encodePull = (m: PullMessage): string => JSON.stringify(m)

/** Decodes a pull message from a peer; undefined if it is not one. */
export function decodePull(text: string): PullMessage | undefined {
  let m: { t?: unknown; rid?: unknown; id?: unknown; size?: unknown; message?: unknown }
  try {
    m = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof m !== 'object' || m === null) return undefined
  const { t, rid } = m
  if (typeof rid !== 'number' || !Number.isInteger(rid)) return undefined
  if (t === 'get') return typeof m.id === 'string' ? { t, rid, id: m.id } : undefined
  if (t === 'meta') return { t, rid, size: typeof m.size === 'number' && m.size >= 0 ? m.size : 0 }
  if (t === 'err') return { t, rid, message: typeof m.message === 'string' ? m.message : 'the peer refused' }
  return undefined
}

/** A ping or its pong (`ping:NONCE:TEXT`): proves the data plane end to end. */
export type PingMessage = { kind: 'ping' | 'pong'; nonce: string; text: string }

export const encodePing = (m: PingMessage): string => `${m.kind}:${m.nonce}:${m.text}`

export function decodePing(text: string): PingMessage | undefined {
  const [kind, nonce, ...rest] = text.split(':')
  if ((kind !== 'ping' && kind !== 'pong') || nonce === undefined) return undefined
  return { kind, nonce, text: rest.join(':') }
}
