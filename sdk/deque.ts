/**
 * A FIFO queue with O(1) push, shift and unshift at any size. `Array.prototype.shift` is linear in Node 20 on large
 * arrays (229 µs at 400 k elements, docs/platform.md): a queue of a million tasks must not use it.
 */
export class Deque<T> {
  private buf: (T | undefined)[]
  private head = 0
  private count = 0

  constructor(capacity = 16) {
    this.buf = new Array(capacity)
  }

  get length(): number {
    return this.count
  }

  push(item: T): void {
    if (this.count === this.buf.length) this.grow()
    this.buf[(this.head + this.count) % this.buf.length] = item
    this.count++
  }

  unshift(item: T): void {
    if (this.count === this.buf.length) this.grow()
    this.head = (this.head - 1 + this.buf.length) % this.buf.length
    this.buf[this.head] = item
    this.count++
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined
    const item = this.buf[this.head]
    this.buf[this.head] = undefined
    this.head = (this.head + 1) % this.buf.length
    this.count--
    return item
  }

  peek(): T | undefined {
    return this.count ? this.buf[this.head] : undefined
  }

  /** Removes the first item equal to `item`; O(n), for rare removals (a cancel). Returns whether it was there. */
  remove(item: T): boolean {
    const n = this.buf.length
    for (let i = 0; i < this.count; i++) {
      if (this.buf[(this.head + i) % n] !== item) continue
      for (let j = i; j < this.count - 1; j++) this.buf[(this.head + j) % n] = this.buf[(this.head + j + 1) % n]
      this.buf[(this.head + this.count - 1) % n] = undefined
      this.count--
      return true
    }
    return false
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = 0; i < this.count; i++) yield this.buf[(this.head + i) % this.buf.length] as T
  }

  /** Empties the queue, returning what it held in order. */
  drain(): T[] {
    const out = [...this]
    this.buf = new Array(16)
    this.head = 0
    this.count = 0
    return out
  }

  private grow(): void {
    const old = this.buf
    const next = new Array<T | undefined>(Math.max(16, old.length * 2))
    for (let i = 0; i < this.count; i++) next[i] = old[(this.head + i) % old.length]
    this.buf = next
    this.head = 0
  }
}
