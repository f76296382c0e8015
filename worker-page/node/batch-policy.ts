import type { Deque } from '../../sdk/deque.ts'
import type { ExecResult, PushedTask } from '../../sdk/protocol/index.ts'

/**
 * Which tasks go to a worker in one message. A message each way per task was most of the node page's cost for a
 * short task, so short tasks waiting together go in one: those of one function under a lease, or one actor's calls.
 */

/** A function (or an actor) whose last task here ran shorter than this (ms) may run in batches. */
export const BATCH_TASK_MS = 2
/** Most tasks in one message to a worker (a batch of short ones ends within milliseconds). */
export const BATCH_MAX = 32
/** A batch running longer than this (ms) is stuck (a task that was short before is not now): a cancel stops it. */
export const BATCH_STUCK_MS = 1000

/** Whether tasks whose last one here ran `lastMs` (undefined: none ran yet) may go in batches. */
export const isShort = (lastMs: number | undefined): boolean => (lastMs ?? Number.POSITIVE_INFINITY) < BATCH_TASK_MS

/** Whether a batch started at `started` runs past the time a batch of short tasks takes (`now`, same clock). */
export const isStuck = (started: number, now: number): boolean => now - started >= BATCH_STUCK_MS

/** Whether a pushed task's arguments are all inline (a large one needs its object pinned while it runs: it goes alone). */
export const isInline = (t: PushedTask): boolean => t.args.every((a) => a instanceof Uint8Array)

/**
 * The tasks that go to a worker with `first`: none more unless `short` (see isShort; the worker must take batches)
 * and `first` is inline; then those behind it in `queue` that are inline and that `joins` lets join, up to BATCH_MAX
 * (taken off the queue, in order).
 */
export function takeBatch<T>(
  first: T,
  queue: Deque<T>,
  taskOf: (item: T) => PushedTask,
  short: boolean,
  joins?: (next: T) => boolean,
): T[] {
  const batch = [first]
  if (!short || !isInline(taskOf(first))) return batch
  while (batch.length < BATCH_MAX && queue.length) {
    const next = queue.peek() as T
    if (!isInline(taskOf(next)) || (joins && !joins(next))) break
    batch.push(queue.shift() as T)
  }
  return batch
}

/**
 * Calls `each` for results `from`… of a run started together (a batch, in order), skipping those already reported,
 * and moves the run's `reported` past them.
 */
export function eachNewResult<T>(
  run: { reported: number },
  items: readonly T[],
  from: number,
  results: readonly ExecResult[],
  each: (item: T, r: ExecResult) => void,
): void {
  results.forEach((r, i) => {
    const at = from + i
    const item = items[at]
    if (item === undefined || at < run.reported) return
    run.reported = at + 1
    each(item, r)
  })
}
