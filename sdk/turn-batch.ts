/**
 * Collects what is produced during one turn of the event loop and hands it over at the end of that turn, together.
 * A loop of 10,000 `.remote()` calls, a node finishing 50 tasks at once, a coordinator answering a batch of
 * messages: each becomes one frame and one wakeup on the other side instead of thousands. The one home of this rule.
 *
 * With a budget (`maxItems`, `maxBytes` by `sizeOf`), a turn's items are handed over in several parts, none over it,
 * so no message made of them can grow past what the other side accepts (a million submits, ten thousand results).
 * @example
 * const out = new TurnBatch<Msg>((msgs) => socket.send(encode(msgs)))
 * out.push(a); out.push(b) // sent together once the current task's microtasks have run
 */
export class TurnBatch<T> {
  private items: T[] = []
  private scheduled = false

  constructor(
    private readonly deliver: (items: T[]) => void,
    private readonly budget: {
      maxItems?: number
      maxBytes?: number | (() => number)
      sizeOf?: (item: T) => number
      /**
       * 'queued-tasks': hand over after the event-loop tasks already queued have run, not at the end of this one.
       * Where each item comes in a task of its own (a worker's result is a message event), a busy loop then sends
       * many in one message; an idle one still sends at once.
       */
      until?: 'turn' | 'queued-tasks'
    } = {},
  ) {}

  push(item: T): void {
    this.items.push(item)
    if (this.scheduled) return
    this.scheduled = true
    if (this.budget.until === 'queued-tasks') afterQueuedTasks(() => this.flush())
    else queueMicrotask(() => this.flush())
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
    const { maxItems = Number.POSITIVE_INFINITY, sizeOf } = this.budget
    const limit = this.budget.maxBytes
    const maxBytes = typeof limit === 'function' ? limit() : (limit ?? Number.POSITIVE_INFINITY)
    if (items.length <= maxItems && !sizeOf) return this.deliver(items)
    let start = 0
    let bytes = 0
    for (let i = 0; i < items.length; i++) {
      const size = sizeOf ? sizeOf(items[i] as T) : 0
      if (i > start && (i - start >= maxItems || bytes + size > maxBytes)) {
        this.deliver(items.slice(start, i))
        start = i
        bytes = 0
      }
      bytes += size
    }
    this.deliver(start === 0 ? items : items.slice(start))
  }

  /** Forgets what was collected (the channel is gone). */
  clear(): void {
    this.items = []
  }
}

/**
 * Runs `fn` after the tasks already in the event loop's queue: a MessageChannel message goes to the back of it (no
 * 4 ms clamp, unlike a nested setTimeout); Node has setImmediate.
 */
function afterQueuedTasks(fn: () => void): void {
  const g = globalThis as { setImmediate?: (cb: () => void) => unknown }
  if (g.setImmediate) {
    g.setImmediate(fn)
    return
  }
  if (!nextTask) {
    nextTask = new MessageChannel()
    nextTask.port1.onmessage = () => (pending.shift() as () => void)()
  }
  pending.push(fn)
  nextTask.port2.postMessage(0)
}
let nextTask: MessageChannel | undefined
const pending: (() => void)[] = []

/**
 * A batched message (submits, results, object updates) is budgeted to this share of the frame limit in force, so
 * several fit a frame and none can reach the limit (each part carries values of at most 100 KiB).
 */
export const batchBytesFor = (maxFrameBytes: number): number => Math.max(64 * 1024, Math.floor(maxFrameBytes / 4))
/** The coordinator's own batches, towards clients that accept large frames (a page, the `ws` client's 100 MiB). */
export const BATCH_MESSAGE_BYTES = 4 * 1024 * 1024

/** A rough size of a task spec, result or assignment: its inline values plus a few hundred bytes of ids and names. */
export function sizeOfValues(values: readonly unknown[] | undefined): number {
  let n = 256
  for (const v of values ?? []) if (v instanceof Uint8Array) n += v.byteLength
  return n
}
