import type { ClientMessage, TaskState } from './protocol/index.ts'

export type TaskEvent = Extract<ClientMessage, { type: 'task-events' }>['events'][number]

/** Events wait at most this long before they are sent (the state API is at most this late, plus a round trip). */
const FLUSH_MS = 100
/** A message holds at most this many events. */
const MAX_EVENTS = 5000

/**
 * An owner's or a node's task events on their way to the coordinator (Ray's task event buffer): collected and sent
 * every FLUSH_MS, so a task that is created, queued, pushed and finished within that time costs one entry in one
 * message, not four round trips. `flush()` sends them now (before a state query on the same connection, so the
 * answer includes them).
 */
export class TaskEventReporter {
  private events: TaskEvent[] = []
  private timer: ReturnType<typeof setTimeout> | undefined

  constructor(private readonly send: (msg: ClientMessage) => void) {}

  push(event: TaskEvent): void {
    this.events.push(event)
    if (this.events.length >= MAX_EVENTS) this.flush()
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS)
  }

  state(taskId: string, attempt: number, state: TaskState, extra?: Partial<TaskEvent>): void {
    this.push({ taskId, attempt, state, time: Date.now(), ...extra })
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.events.length) return
    const events = this.events
    this.events = []
    this.send({ type: 'task-events', events })
  }

  /** The connection is gone: what is left is dropped. */
  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.events = []
  }
}
