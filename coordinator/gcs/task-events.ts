import type { WireError } from '../../sdk/errors.ts'
import type { Resources, TaskSpec, TaskState } from '../../sdk/protocol.ts'
import type { TaskRow, TaskSummary } from '../../sdk/state.ts'

/** Like Ray's task_events_max_num_task_in_gcs: the oldest finished rows are dropped past this many. */
const MAX_ROWS = 100_000

/**
 * The task event table: one row per task with every state it passed through and when. This is what the state API,
 * the dashboard and `shoal list tasks` read; the scheduler keeps its own live records.
 */
export class TaskEvents {
  private rows = new Map<string, TaskRow>()

  created(spec: TaskSpec, jobId: string): void {
    const now = Date.now()
    this.rows.set(spec.taskId, {
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
      errorMessage: null,
      events: [{ state: 'PENDING_ARGS_AVAIL', time: now, attempt: 0 }],
      infeasible: false,
      requiredResources: spec.resources,
    })
    if (this.rows.size > MAX_ROWS) this.evict()
  }

  /** Records a state change. Events from an older attempt than the row's are ignored (they are stale). */
  state(taskId: string, state: TaskState, at: { attempt: number; nodeId?: string; workerId?: string; time?: number }): void {
    const row = this.rows.get(taskId)
    if (!row || at.attempt < row.attempt) return
    const time = at.time ?? Date.now()
    if (at.attempt > row.attempt) {
      row.attempt = at.attempt
      row.startTime = null
      row.endTime = null
      row.workerId = null
      row.errorType = null
      row.errorMessage = null
    }
    if (row.state === 'FINISHED' || row.state === 'FAILED') {
      if (at.attempt === row.attempt) return // a late RUNNING report after the result
    }
    row.state = state
    if (at.nodeId) row.nodeId = at.nodeId
    if (at.workerId) row.workerId = at.workerId
    if (state === 'RUNNING') row.startTime = time
    if (state === 'FINISHED' || state === 'FAILED') row.endTime = time
    if (state !== 'PENDING_NODE_ASSIGNMENT') row.infeasible = false
    row.events.push({ state, time, attempt: at.attempt, ...(at.nodeId && { nodeId: at.nodeId }) })
  }

  failed(taskId: string, attempt: number, error: WireError): void {
    this.state(taskId, 'FAILED', { attempt })
    const row = this.rows.get(taskId)
    if (!row) return
    row.errorType = (error.data?.remoteName as string | undefined) ?? error.name
    row.errorMessage = error.message
  }

  setInfeasible(taskId: string, infeasible: boolean): void {
    const row = this.rows.get(taskId)
    if (row) row.infeasible = infeasible
  }

  get(taskId: string): TaskRow | undefined {
    return this.rows.get(taskId)
  }

  /** Newest first. */
  list(): TaskRow[] {
    return [...this.rows.values()].reverse()
  }

  summarize(): TaskSummary {
    const summary: TaskSummary['summary'] = {}
    const infeasible: { taskId: string; name: string; requiredResources: Resources }[] = []
    for (const r of this.rows.values()) {
      const s = (summary[r.funcOrClassName] ??= { funcOrClassName: r.funcOrClassName, type: r.type, stateCounts: {} })
      s.stateCounts[r.state] = (s.stateCounts[r.state] ?? 0) + 1
      if (r.infeasible) infeasible.push({ taskId: r.taskId, name: r.name, requiredResources: r.requiredResources })
    }
    return { summary, totalTasks: this.rows.size, infeasible }
  }

  private evict(): void {
    for (const [id, r] of this.rows) {
      if (this.rows.size <= MAX_ROWS * 0.9) break
      if (r.state === 'FINISHED' || r.state === 'FAILED') this.rows.delete(id)
    }
  }
}
