import { rayErrorType, type WireError } from '../../sdk/errors.ts'
import type { TaskSpec, TaskState } from '../../sdk/protocol/index.ts'
import type { Resources } from '../../sdk/resources.ts'
import type { TaskRow, TaskSummary } from '../../sdk/state.ts'

/** Like Ray's task_events_max_num_task_in_gcs: past this many rows the oldest finished ones are dropped. */
const MAX_ROWS = 100_000
/** Eviction takes the table down to this share of the limit, so its cost is spread over many inserts. */
const EVICT_TO = 0.9

const finished = (s: TaskState) => s === 'FINISHED' || s === 'FAILED'

/**
 * The task event table: one row per task attempt (as Ray's state API lists them) with every state it passed through
 * and when. This is what the state API, the dashboard and `shoal list tasks` read; the scheduler keeps its own live
 * records.
 */
export class TaskEvents {
  /** Every attempt's row, oldest first. */
  private rows = new Map<string, TaskRow>()
  /** The row of each task's latest attempt. */
  private latest = new Map<string, TaskRow>()
  /** Rows dropped to stay under the limit (Ray reports its dropped task events too). */
  dropped = 0
  /** The size at which the next eviction pass runs: passes are spread out even when few rows can go (live tasks). */
  private evictAt = MAX_ROWS

  created(spec: TaskSpec, jobId: string): void {
    const now = Date.now()
    this.add({
      taskId: spec.taskId,
      name: spec.name,
      state: 'PENDING_ARGS_AVAIL',
      type: spec.type,
      funcOrClassName: spec.funcName,
      jobId,
      nodeId: null,
      workerId: null,
      actorId: spec.actorId ?? null,
      attempt: 0,
      creationTime: now,
      startTime: null,
      endTime: null,
      errorType: null,
      errorName: null,
      errorMessage: null,
      events: [{ state: 'PENDING_ARGS_AVAIL', time: now, attempt: 0 }],
      infeasible: false,
      requiredResources: spec.resources,
    })
  }

  /**
   * Records a state change of one attempt. A later attempt gets a row of its own; events for an attempt older than
   * the latest, or after an attempt finished, are stale and ignored.
   */
  state(taskId: string, state: TaskState, at: { attempt: number; nodeId?: string; workerId?: string; time?: number }): void {
    let row = this.latest.get(taskId)
    if (!row || at.attempt < row.attempt) return
    const time = at.time ?? Date.now()
    if (at.attempt > row.attempt) {
      row = {
        ...row,
        attempt: at.attempt,
        state,
        nodeId: null,
        workerId: null,
        creationTime: time,
        startTime: null,
        endTime: null,
        errorType: null,
        errorName: null,
        errorMessage: null,
        events: [],
        infeasible: false,
      }
      this.add(row)
    } else if (finished(row.state)) return // a late report after the attempt's result
    row.state = state
    if (at.nodeId) row.nodeId = at.nodeId
    if (at.workerId) row.workerId = at.workerId
    if (state === 'RUNNING') row.startTime = time
    if (finished(state)) row.endTime = time
    if (state !== 'PENDING_NODE_ASSIGNMENT') row.infeasible = false
    row.events.push({ state, time, attempt: at.attempt, ...(at.nodeId && { nodeId: at.nodeId }) })
  }

  /** An attempt failed (the task may run again as a new attempt): its row keeps the error. */
  failed(taskId: string, attempt: number, error: WireError): void {
    this.state(taskId, 'FAILED', { attempt })
    const row = this.latest.get(taskId)
    if (row?.attempt !== attempt) return
    row.errorType = rayErrorType(error.code)
    row.errorName = error.name
    row.errorMessage = error.message
  }

  setInfeasible(taskId: string, infeasible: boolean): void {
    const row = this.latest.get(taskId)
    if (row) row.infeasible = infeasible
  }

  /** The task's latest attempt. */
  get(taskId: string): TaskRow | undefined {
    return this.latest.get(taskId)
  }

  /** Every attempt, newest first. */
  list(): TaskRow[] {
    return [...this.rows.values()].reverse()
  }

  /** Counts per function and state, one per task (its latest attempt). */
  summarize(): TaskSummary {
    const summary: TaskSummary['summary'] = {}
    const infeasible: { taskId: string; name: string; requiredResources: Resources }[] = []
    for (const r of this.latest.values()) {
      const s = (summary[r.funcOrClassName] ??= { funcOrClassName: r.funcOrClassName, type: r.type, stateCounts: {} })
      s.stateCounts[r.state] = (s.stateCounts[r.state] ?? 0) + 1
      if (r.infeasible) infeasible.push({ taskId: r.taskId, name: r.name, requiredResources: r.requiredResources })
    }
    return { summary, totalTasks: this.latest.size, infeasible, droppedRows: this.dropped }
  }

  private add(row: TaskRow): void {
    this.rows.set(`${row.taskId}:${row.attempt}`, row)
    this.latest.set(row.taskId, row)
    if (this.rows.size > this.evictAt) this.evict()
  }

  /**
   * Drops the oldest finished rows down to EVICT_TO of the limit. Rows of live tasks stay, so a pass may not get that
   * far: the next one then waits for another tenth of the limit of inserts, so a pass is never paid per insert.
   */
  private evict(): void {
    for (const [key, r] of this.rows) {
      if (this.rows.size <= MAX_ROWS * EVICT_TO) break
      if (!finished(r.state)) continue
      this.rows.delete(key)
      if (this.latest.get(r.taskId) === r) this.latest.delete(r.taskId)
      this.dropped++
    }
    this.evictAt = Math.max(MAX_ROWS, this.rows.size + MAX_ROWS * (1 - EVICT_TO))
  }
}
