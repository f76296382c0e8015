import { Deque } from '../../sdk/deque.ts'
import { rayErrorType, type WireError } from '../../sdk/errors.ts'
import type { ClientMessageOf, TaskSpec, TaskState } from '../../sdk/protocol/index.ts'
import type { Resources } from '../../sdk/resources.ts'
import type { TaskRow, TaskSummary } from '../../sdk/state-api.ts'

/**
 * Like Ray's task_events_max_num_task_in_gcs: past this many rows of one tenant its oldest are dropped, finished ones
 * first. Per tenant: one tenant's flood of tasks never pushes another's rows out.
 */
export const MAX_TASK_ROWS = 100_000

/** One tenant's rows, in the order they came, for eviction within the tenant. */
interface Shelf {
  /**
   * Keys oldest first. Not a Map's own order: a Map used as a queue walks past every entry deleted since its last
   * rehash to find its first, so evicting cost grew with the rows already evicted (a 300,000-task run stalled the
   * coordinator 17 s). A key whose row moved on is skipped when it reaches the front.
   */
  liveOrder: Deque<string>
  finishedOrder: Deque<string>
  rows: number
  live: number
}

type TaskEvent = ClientMessageOf<'task-events'>['events'][number]

const finished = (s: TaskState) => s === 'FINISHED' || s === 'FAILED'
/** States in the order an attempt passes through them: reports from owner and node may arrive out of that order. */
const RANK: Record<TaskState, number> = {
  PENDING_ARGS_AVAIL: 0,
  PENDING_NODE_ASSIGNMENT: 1,
  SUBMITTED_TO_WORKER: 2,
  PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY: 3,
  RUNNING: 4,
  FINISHED: 5,
  FAILED: 5,
}

/**
 * The task event table (Ray's GcsTaskManager): one row per task attempt, as Ray's state API lists them, with every
 * state it passed through and when. Owners report their tasks' lives in batches, nodes report RUNNING, and the
 * coordinator reports the actor tasks it places; reports of one attempt may arrive in any order. Bounded: past
 * `maxRows` the oldest finished rows go first, then the oldest live ones, and `dropped` counts them.
 */
export class TaskEvents {
  /** Every attempt's row, oldest first. */
  private rows = new Map<string, TaskRow>()
  /** The same rows split by whether they finished. */
  private liveRows = new Map<string, TaskRow>()
  private finishedRows = new Map<string, TaskRow>()
  /** Each tenant's rows in order (see Shelf), and each row's shelf. */
  private shelves = new Map<string, Shelf>()
  private shelfOf = new WeakMap<TaskRow, Shelf>()
  /** Rows evicted lately (as many as the table holds): a late report of one does not bring it back, live forever. */
  private evicted = new Set<string>()
  private evictedOrder = new Deque<string>()
  /** The row of each task's latest attempt. */
  private latest = new Map<string, TaskRow>()
  /** Who reported each live task (its owner), for fate sharing when the owner goes. */
  private owners = new WeakMap<TaskRow, object>()
  /** Owners that went away: a late report of one of their tasks cannot be finished by them. */
  private goneOwners = new WeakSet<object>()
  /** Rows dropped to stay under the limit (Ray reports its dropped task events too). */
  dropped = 0
  /** Events owners and nodes dropped before sending them (their buffers are bounded, as Ray's workers' are). */
  droppedAtSource = 0

  constructor(
    /** Rows per tenant at most. */
    private readonly maxRows = MAX_TASK_ROWS,
    /** Whose a job is (its rows count against that tenant's bound). */
    private readonly tenantOf: (jobId: string) => string = () => '',
  ) {}

  /** A task the coordinator places itself (an actor's creation or call). */
  created(spec: TaskSpec, jobId: string): void {
    const now = Date.now()
    const row = this.newRow(spec.taskId, jobId, 0, now, {
      name: spec.name,
      funcName: spec.funcName,
      type: spec.type,
      resources: spec.resources,
      ...(spec.actorId && { actorId: spec.actorId }),
    })
    this.add(row)
    this.apply(row, 'PENDING_ARGS_AVAIL', now, {})
  }

  /**
   * Records a state change of one attempt. A later attempt gets a row of its own; events for an attempt older than
   * the latest, or after an attempt finished, are stale and ignored.
   */
  state(taskId: string, state: TaskState, at: { attempt: number; nodeId?: string; workerId?: string; time?: number }): void {
    const row = this.rowFor(taskId, at.attempt, at.time ?? Date.now())
    if (row) this.apply(row, state, at.time ?? Date.now(), at)
  }

  /**
   * A batch of reports from an owner (about the tasks it submitted: `owner` is its connection) or from a node (RUNNING).
   * A report names the task's job; the caller has checked the reporter may speak for it. A report that arrives before
   * the owner's first one makes a row that the owner's report completes (unless `canCreate` is false: a late report
   * of a job that ended, which nobody would finish).
   */
  report(events: readonly TaskEvent[], jobId: string, owner: object | undefined, canCreate = true): void {
    for (const e of events) {
      const row = this.rowFor(e.taskId, e.attempt, e.time, jobId, canCreate)
      if (!row) {
        this.lateError(e)
        continue
      }
      if (e.task && (owner || !row.name)) {
        row.name = e.task.name
        row.funcOrClassName = e.task.funcName
        row.type = e.task.type
        row.requiredResources = e.task.resources
        if (e.task.actorId) row.actorId = e.task.actorId
        if (e.attempt === 0 && e.state === 'PENDING_ARGS_AVAIL') row.creationTime = e.time
      }
      if (owner && !finished(row.state)) this.owners.set(row, owner)
      if (e.infeasible !== undefined) row.infeasible = e.infeasible && !finished(row.state)
      this.apply(row, e.state, e.time, e)
      if (e.error && row.state === 'FAILED') this.setError(row, e.error)
    }
  }

  /**
   * An older attempt's failure reported after a newer attempt's first report (another node's RUNNING may overtake the
   * owner's batch): the row was closed FAILED then, without a cause; it takes the error now.
   */
  private lateError(e: TaskEvent): void {
    if (e.state !== 'FAILED' || !e.error) return
    const row = this.rows.get(`${e.taskId}:${e.attempt}`)
    if (row?.state === 'FAILED' && row.errorType === null) this.setError(row, e.error)
  }

  /** An attempt failed (the task may run again as a new attempt): its row keeps the error. */
  failed(taskId: string, attempt: number, error: WireError): void {
    this.state(taskId, 'FAILED', { attempt })
    const row = this.latest.get(taskId)
    if (row?.attempt === attempt) this.setError(row, error)
  }

  /** The owner of these tasks went away (Ray's fate sharing): whatever of theirs had not finished failed with `error`. */
  ownerGone(owner: object, errorOf: (taskId: string) => WireError): void {
    this.goneOwners.add(owner)
    // An actor call its actor already runs goes on without its caller (nothing stops it; only its result is lost):
    // its row stays RUNNING until its job ends. Every other task of the owner ended with it.
    const runsOn = (row: TaskRow) => row.type === 'ACTOR_TASK' && row.state === 'RUNNING'
    this.failLive((row) => this.owners.get(row) === owner && !runsOn(row), errorOf)
  }

  /**
   * A job ended: rows of its tasks that no live owner claims (a node reported them, and their owner's own report was
   * lost with it) cannot finish any more.
   */
  jobEnded(jobId: string, errorOf: (taskId: string) => WireError): void {
    this.failLive((row) => {
      const owner = this.owners.get(row)
      return row.jobId === jobId && (!owner || this.goneOwners.has(owner))
    }, errorOf)
  }

  /** Fails the live rows `which` picks, each with its error. */
  private failLive(which: (row: TaskRow) => boolean, errorOf: (taskId: string) => WireError): void {
    const now = Date.now()
    for (const row of [...this.liveRows.values()]) {
      if (!which(row)) continue
      this.apply(row, 'FAILED', now, {})
      this.setError(row, errorOf(row.taskId))
    }
  }

  /** Who reported this live task as its owner, if anyone did. */
  ownerOf(taskId: string): object | undefined {
    const row = this.latest.get(taskId)
    return row && !finished(row.state) ? this.owners.get(row) : undefined
  }

  setInfeasible(taskId: string, infeasible: boolean): void {
    const row = this.latest.get(taskId)
    if (row) row.infeasible = infeasible
  }

  /** The task's latest attempt. */
  get(taskId: string): TaskRow | undefined {
    return this.latest.get(taskId)
  }

  /** Attempts not finished yet (as far as their reports say). */
  get live(): number {
    return this.liveRows.size
  }

  /** Every attempt, newest first. */
  list(): TaskRow[] {
    return [...this.rows.values()].reverse()
  }

  /** The job of each attempt not finished yet. */
  *liveJobs(): IterableIterator<string> {
    for (const r of this.liveRows.values()) yield r.jobId
  }

  /** Counts per function and state, one per task (its latest attempt); only the jobs `keep` accepts, if given. */
  summarize(keep?: (jobId: string) => boolean): TaskSummary {
    const summary: TaskSummary['summary'] = {}
    const infeasible: { taskId: string; name: string; requiredResources: Resources }[] = []
    let total = 0
    for (const r of this.latest.values()) {
      if (keep && !keep(r.jobId)) continue
      total++
      const s = (summary[r.funcOrClassName] ??= { funcOrClassName: r.funcOrClassName, type: r.type, stateCounts: {} })
      s.stateCounts[r.state] = (s.stateCounts[r.state] ?? 0) + 1
      if (r.infeasible) infeasible.push({ taskId: r.taskId, name: r.name, requiredResources: r.requiredResources })
    }
    return { summary, totalTasks: total, infeasible, droppedRows: this.dropped, droppedEvents: this.droppedAtSource }
  }

  /** The row of this attempt: made if it is the task's newest (or first, given `jobId`); undefined if stale. */
  private rowFor(taskId: string, attempt: number, time: number, jobId?: string, canCreate = true): TaskRow | undefined {
    const prev = this.latest.get(taskId)
    if (prev && attempt < prev.attempt) return undefined
    if (prev && attempt === prev.attempt) return prev
    if (!canCreate) return undefined
    if (!prev && (jobId === undefined || this.evicted.has(`${taskId}:${attempt}`))) return undefined
    // A newer attempt means the older one is over, whether or not its end was reported (a restarted actor's calls).
    if (prev && !finished(prev.state)) this.apply(prev, 'FAILED', time, {})
    const row = prev
      ? { ...prev, attempt, state: 'PENDING_NODE_ASSIGNMENT' as TaskState, events: [], creationTime: time }
      : this.newRow(taskId, jobId as string, attempt, time)
    Object.assign(row, { nodeId: null, workerId: null, startTime: null, endTime: null, infeasible: false })
    Object.assign(row, { errorType: null, errorName: null, errorMessage: null })
    const owner = prev && this.owners.get(prev)
    if (owner) this.owners.set(row, owner)
    this.add(row)
    return row
  }

  private newRow(taskId: string, jobId: string, attempt: number, time: number, task?: TaskEvent['task']): TaskRow {
    return {
      taskId,
      name: task?.name ?? '',
      state: 'PENDING_ARGS_AVAIL',
      type: task?.type ?? 'NORMAL_TASK',
      funcOrClassName: task?.funcName ?? '',
      jobId,
      nodeId: null,
      workerId: null,
      actorId: task?.actorId ?? null,
      attempt,
      creationTime: time,
      startTime: null,
      endTime: null,
      errorType: null,
      errorName: null,
      errorMessage: null,
      events: [],
      infeasible: false,
      requiredResources: task?.resources ?? {},
    }
  }

  /** One report on a row: the event joins its history in time order; the state only moves forward. */
  private apply(row: TaskRow, state: TaskState, time: number, at: { nodeId?: string; workerId?: string }): void {
    if (finished(row.state) && row.events.length) {
      // A report that comes after the attempt's end (the node's RUNNING after the owner's FINISHED: they travel apart)
      // joins the history once, and fills in what the row lacks; the state stays.
      if (finished(state) || row.events.some((e) => e.state === state)) return
      row.nodeId ??= at.nodeId ?? null
      row.workerId ??= at.workerId ?? null
      if (state === 'RUNNING') row.startTime ??= time
    } else {
      if (at.nodeId) row.nodeId = at.nodeId
      if (at.workerId) row.workerId = at.workerId
      if (state === 'RUNNING') row.startTime = time
    }
    const event = { state, time, attempt: row.attempt, ...(at.nodeId && { nodeId: at.nodeId }) }
    let i = row.events.length
    while (i > 0 && (row.events[i - 1]?.time ?? 0) > time) i--
    row.events.splice(i, 0, event)
    if (RANK[state] < RANK[row.state]) return
    row.state = state
    if (state !== 'PENDING_NODE_ASSIGNMENT') row.infeasible = false
    if (finished(state)) {
      row.endTime = time
      const key = keyOf(row)
      if (this.liveRows.delete(key)) {
        this.finishedRows.set(key, row)
        const shelf = this.shelfOf.get(row) as Shelf
        shelf.live--
        shelf.finishedOrder.push(key)
      }
    }
  }

  private setError(row: TaskRow, error: WireError): void {
    row.errorType = rayErrorType(error.code)
    row.errorName = error.name
    row.errorMessage = error.message
  }

  private add(row: TaskRow): void {
    const key = keyOf(row)
    const tenant = this.tenantOf(row.jobId)
    let shelf = this.shelves.get(tenant)
    if (!shelf) this.shelves.set(tenant, (shelf = { liveOrder: new Deque(), finishedOrder: new Deque(), rows: 0, live: 0 }))
    this.shelfOf.set(row, shelf)
    this.rows.set(key, row)
    this.liveRows.set(key, row)
    shelf.liveOrder.push(key)
    shelf.rows++
    shelf.live++
    this.latest.set(row.taskId, row)
    while (shelf.rows > this.maxRows) this.evictOne(shelf)
    // Keys of rows that finished stay in the live order until they reach its front: compact it now and then.
    if (shelf.liveOrder.length > 2 * shelf.live + 1024) {
      const order = new Deque<string>()
      for (const k of shelf.liveOrder) if (this.liveRows.has(k)) order.push(k)
      shelf.liveOrder = order
    }
  }

  /**
   * Drops the tenant's oldest finished row, or if none finished, its oldest live one: amortized O(1), whatever the
   * table holds.
   */
  private evictOne(shelf: Shelf): void {
    for (const [order, from] of [
      [shelf.finishedOrder, this.finishedRows],
      [shelf.liveOrder, this.liveRows],
    ] as const) {
      while (order.length) {
        const key = order.shift() as string
        const r = from.get(key)
        if (!r) continue // it moved on (finished) or went already
        if (from === this.liveRows) shelf.live--
        shelf.rows--
        from.delete(key)
        this.rows.delete(key)
        if (this.latest.get(r.taskId) === r) this.latest.delete(r.taskId)
        this.dropped++
        this.evicted.add(key)
        this.evictedOrder.push(key)
        if (this.evictedOrder.length > this.maxRows) this.evicted.delete(this.evictedOrder.shift() as string)
        return
      }
    }
  }
}

const keyOf = (r: TaskRow) => `${r.taskId}:${r.attempt}`
