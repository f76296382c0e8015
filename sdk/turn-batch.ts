/**
 * Collects what is produced during one turn of the event loop and hands it over at the end of that turn, together.
 * A loop of 10,000 `.remote()` calls, a node finishing 50 tasks at once, a coordinator answering a batch of
 * messages: each becomes one frame and one wakeup on the other side instead of thousands. The one home of this rule.
 * @example
 * const out = new TurnBatch<Msg>((msgs) => socket.send(encode(msgs)))
 * out.push(a); out.push(b) // sent together once the current task's microtasks have run
 */
export class TurnBatch<T> {
  private items: T[] = []
  private scheduled = false

  constructor(private readonly deliver: (items: T[]) => void) {}

  push(item: T): void {
    this.items.push(item)
    if (this.scheduled) return
    this.scheduled = true
    queueMicrotask(() => this.flush())
  }

  get size(): number {
    return this.items.length
  }

  /** Hands over what was collected now (a close, or a caller that must not wait for the end of the turn). */
  flush(): void {
    this.scheduled = false
    if (!this.items.length) return
    const items = this.items
    this.items = []
    this.deliver(items)
  }

  /** Forgets what was collected (the channel is gone). */
  clear(): void {
    this.items = []
  }
}
