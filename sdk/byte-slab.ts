/**
 * Copies small byte strings into shared chunks. A result arrives as a view of the frame that carried it (with the
 * ids and timings of a thousand other results); kept as is, it pins that whole frame (~200 bytes per 2-byte result),
 * and copied into an ArrayBuffer of its own it costs as much again. Here a copy costs its bytes and one view; a chunk
 * is freed once no view into it is left. Larger ones get a buffer of their own.
 */
export class ByteSlab {
  private chunk = new Uint8Array(0)
  private at = 0

  constructor(
    private readonly chunkBytes = 64 * 1024,
    /** Bigger byte strings are copied alone (a chunk kept for one small survivor should stay small). */
    private readonly maxShared = 1024,
  ) {}

  /** The bytes to keep: `bytes` itself if it is a whole buffer of its own, else a copy (a view would pin its frame). */
  keep(bytes: Uint8Array): Uint8Array {
    return isWhole(bytes) ? bytes : this.copy(bytes)
  }

  copy(bytes: Uint8Array): Uint8Array {
    const n = bytes.byteLength
    if (n > this.maxShared) return copyAlone(bytes)
    if (this.at + n > this.chunk.byteLength) {
      this.chunk = new Uint8Array(this.chunkBytes)
      this.at = 0
    }
    const view = this.chunk.subarray(this.at, this.at + n)
    view.set(bytes)
    this.at += n
    return view
  }
}

/** A copy in a buffer of its own (a Node Buffer's own `slice` would be a view). */
const copyAlone = (bytes: Uint8Array): Uint8Array => Uint8Array.prototype.slice.call(bytes)

const isWhole = (bytes: Uint8Array): boolean => bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength

/**
 * The bytes to keep, each in a buffer of its own: for a store that untrusted clients fill (the coordinator's), where
 * one small survivor must not pin a shared chunk.
 */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  return isWhole(bytes) ? bytes : copyAlone(bytes)
}
