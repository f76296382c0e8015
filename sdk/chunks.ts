/**
 * Cutting bytes into chunks and putting them back together: large objects over the control socket, pulls between
 * peers, peer frames too big for one data channel message. The one home of this rule.
 */

/** The chunks of `bytes`, each at most `size` long, with where each starts. Views, not copies. */
export function* chunksOf(bytes: Uint8Array, size: number): Generator<{ offset: number; data: Uint8Array }> {
  if (bytes.byteLength === 0) {
    yield { offset: 0, data: bytes }
    return
  }
  for (let offset = 0; offset < bytes.byteLength; offset += size)
    yield { offset, data: bytes.subarray(offset, Math.min(bytes.byteLength, offset + size)) }
}

/**
 * Sends `bytes` in chunks of `size`, waiting while more than eight chunks wait in the socket's buffer (`buffered`),
 * so a large upload never floods the connection it shares with control messages.
 */
export async function sendInChunks(
  bytes: Uint8Array,
  size: number,
  send: (offset: number, data: Uint8Array) => void,
  buffered: () => number = () => 0,
): Promise<void> {
  for (const { offset, data } of chunksOf(bytes, size)) {
    while (buffered() > 8 * size) await new Promise((r) => setTimeout(r, 5))
    send(offset, data)
  }
}

/**
 * An object arriving in chunks. Chunks may come in any order but never overlap; the assembly is complete once
 * `total` bytes have arrived. A chunk that would overrun the total, or a total that changes, is refused (a sender
 * that lies cannot make it write out of bounds).
 */
export class Assembly {
  readonly bytes: Uint8Array
  private received = 0

  constructor(readonly total: number) {
    this.bytes = new Uint8Array(total)
  }

  /** Adds a chunk; returns true once every byte is here. Throws RangeError for a chunk that does not fit. */
  add(offset: number, data: Uint8Array, total = this.total): boolean {
    if (total !== this.total || offset < 0 || offset + data.byteLength > this.total)
      throw new RangeError(`a chunk of ${data.byteLength} bytes at ${offset} does not fit an object of ${this.total} bytes`)
    this.bytes.set(data, offset)
    this.received += data.byteLength
    return this.received >= this.total
  }

  get done(): boolean {
    return this.received >= this.total
  }

  get receivedBytes(): number {
    return this.received
  }
}
