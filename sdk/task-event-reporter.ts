import type { ClientMessage, TaskState } from './protocol/index.ts'
import { MAX_TASK_EVENTS_PER_MESSAGE, TASK_STATES } from './protocol/index.ts'

export type TaskEvent = Extract<ClientMessage, { type: 'task-events' }>['events'][number]
/** What an event may carry beyond its task, attempt, state and time. */
type Extra = Partial<Omit<TaskEvent, 'taskId' | 'attempt' | 'state' | 'time'>>

/** Events wait at most this long before they are sent (the state API is at most this late, plus a round trip). */
const FLUSH_MS = 100
/** At most this many go each FLUSH_MS (200,000/s); the rest wait for the next (Ray's task_events_send_batch_size). */
const MAX_PER_FLUSH = 20_000
/**
 * At most this many wait to be sent; past it the oldest are dropped and counted, as Ray's worker-side buffer does
 * (task_events_max_num_status_events_buffer_on_worker, 100,000): a million tasks submitted in one loop cost a
 * bounded buffer, not a gigabyte of events in flight. The coordinator reports the count in summarizeTasks.
 */
export const MAX_BUFFERED_EVENTS = 100_000

const STATE_INDEX = new Map<TaskState, number>(TASK_STATES.map((s, i) => [s, i]))

/**
 * A ring of events kept as columns (no object per event): a loop submitting a million tasks writes into slots it
 * reuses instead of leaving two million short-lived objects for the garbage collector (they outlived the young
 * generation, so each cost old-generation memory until a full collection: ~230 MiB at 1 M tasks).
 */
class EventRing {
  private taskIds: (string | undefined)[] = []
  private extras: (Extra | undefined)[] = []
  private attempts = new Int32Array(0)
  private states = new Uint8Array(0)
  private times = new Float64Array(0)
  private head = 0
  length = 0

  constructor(private readonly max: number) {}

  /** Adds an event; false if the ring was full and the oldest was dropped for it. */
  push(taskId: string, attempt: number, state: TaskState, time: number, extra: Extra | undefined): boolean {
    let kept = true
    if (this.length === this.max) {
      this.head = (this.head + 1) % this.max
      this.length--
      kept = false
    } else if (this.length === this.attempts.length) this.grow()
    const cap = this.attempts.length
    const i = (this.head + this.length) % cap
    this.taskIds[i] = taskId
    this.extras[i] = extra
    this.attempts[i] = attempt
    this.states[i] = STATE_INDEX.get(state) ?? 0
    this.times[i] = time
    this.length++
    return kept
  }

  /** Takes the oldest event out, as an object (they go on the wire now). */
  shift(): TaskEvent {
    const i = this.head
    const event = {
      taskId: this.taskIds[i] as string,
      attempt: this.attempts[i] as number,
      state: TASK_STATES[this.states[i] as number] as TaskState,
      time: this.times[i] as number,
      ...this.extras[i],
    }
    this.taskIds[i] = undefined
    this.extras[i] = undefined
    this.head = (this.head + 1) % this.attempts.length
    this.length--
    return event
  }

  clear(): void {
    this.taskIds = []
    this.extras = []
    this.attempts = new Int32Array(0)
    this.states = new Uint8Array(0)
    this.times = new Float64Array(0)
    this.head = 0
    this.length = 0
  }

  /** Doubles the columns (up to the bound), keeping the events in order from slot 0. */
  private grow(): void {
    const cap = this.attempts.length
    const next = Math.min(this.max, Math.max(64, cap * 2))
    const taskIds: (string | undefined)[] = new Array(next)
    const extras: (Extra | undefined)[] = new Array(next)
    const attempts = new Int32Array(next)
    const states = new Uint8Array(next)
    const times = new Float64Array(next)
    for (let k = 0; k < this.length; k++) {
      const i = (this.head + k) % cap
      taskIds[k] = this.taskIds[i]
      extras[k] = this.extras[i]
      attempts[k] = this.attempts[i] as number
      states[k] = this.states[i] as number
      times[k] = this.times[i] as number
    }
    this.taskIds = taskIds
    this.extras = extras
    this.attempts = attempts
    this.states = states
    this.times = times
    this.head = 0
  }
}

/**
 * An owner's or a node's task events on their way to the coordinator (Ray's task event buffer): collected and sent
 * every FLUSH_MS, so a task that is created, queued, pushed and finished within that time costs one entry in one
 * message, not four round trips. `flush()` sends them now (before a state query on the same connection, so the
 * answer includes them).
 */
export class TaskEventReporter {
  private readonly events: EventRing
  private dropped = 0
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly send: (msg: ClientMessage) => void,
    maxBuffered = MAX_BUFFERED_EVENTS,
  ) {
    this.events = new EventRing(maxBuffered)
  }

  /**
   * Records that task `taskId`'s attempt reached `state` now. `extra` is kept as given until sent: pass objects
   * that are shared or not changed afterwards.
   */
  state(taskId: string, attempt: number, state: TaskState, extra?: Extra): void {
    if (!this.events.push(taskId, attempt, state, Date.now(), extra)) this.dropped++
    this.timer ??= setTimeout(() => this.tick(), FLUSH_MS)
  }

  /** Sends everything buffered now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.sendUpTo(Number.POSITIVE_INFINITY)
  }

  /** The connection is gone: what is left is dropped. */
  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.events.clear()
  }

  private tick(): void {
    this.timer = undefined
    this.sendUpTo(MAX_PER_FLUSH)
    if (this.events.length) this.timer = setTimeout(() => this.tick(), FLUSH_MS)
  }

  private sendUpTo(max: number): void {
    let left = max
    while (left > 0 && (this.events.length || this.dropped)) {
      const events: TaskEvent[] = []
      while (events.length < MAX_TASK_EVENTS_PER_MESSAGE && events.length < left && this.events.length) events.push(this.events.shift())
      left -= Math.max(1, events.length)
      const dropped = this.dropped
      this.dropped = 0
      this.send({ type: 'task-events', events, ...(dropped && { dropped }) })
    }
  }
}
