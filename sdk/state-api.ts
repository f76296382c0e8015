import * as v from 'valibot'
import { parseOptions } from './options.ts'
import type { ActorState, Resources, StateFilter, StateQuery, TaskState, TaskType } from './protocol/index.ts'
import { StateFilterSchema } from './protocol/index.ts'

/**
 * A row of `listTasks`: one per task attempt, as Ray lists them (Ray's fields in camelCase). Times are ms since the
 * epoch.
 */
export interface TaskRow {
  taskId: string
  name: string
  state: TaskState
  type: TaskType
  funcOrClassName: string
  jobId: string
  nodeId: string | null
  workerId: string | null
  actorId: string | null
  attempt: number
  creationTime: number
  startTime: number | null
  endTime: number | null
  /** Ray's ErrorType: TASK_EXECUTION_EXCEPTION, TASK_CANCELLED, ACTOR_DIED, NODE_DIED, WORKER_DIED, OBJECT_LOST… */
  errorType: string | null
  /** The class of the error `get` rejects with (TaskError, TaskCancelledError…). */
  errorName: string | null
  errorMessage: string | null
  /** Every state this task passed through, with when. */
  events: { state: TaskState; time: number; attempt: number; nodeId?: string }[]
  /** True while no alive or future node could ever fit the task's resources. */
  infeasible: boolean
  requiredResources: Resources
}
export interface NodeRow {
  nodeId: string
  state: 'ALIVE' | 'DEAD'
  resources: Resources
  availableResources: Resources
  objectStoreMemory: number
  objectStoreUsed: number
  /** Bytes spilled to OPFS (not counted in objectStoreUsed). */
  objectStoreSpilled: number
  name: string | null
  startTime: number
  endTime: number | null
  deathReason: string | null
  runningTasks: number
  workers: number
  /** `trusted` (joined with a node token, or no auth is configured) or `volunteer` (joined without one). */
  trust: 'trusted' | 'volunteer'
  /** Why it gets no more work (a verified task's replicas outvoted its result), or null. */
  quarantined: string | null
  /** Its donor paused it (the /node page): it stays ALIVE, what runs there finishes, nothing new is placed there. */
  paused: boolean
  /** Its donor is leaving (a drain): nothing new is placed there; it goes once its work and objects are handed over. */
  draining: boolean
}
export interface JobRow {
  jobId: string
  /** Whose job it is (the tenant of the token that started it). */
  tenant: string
  state: 'RUNNING' | 'FINISHED' | 'FAILED'
  startTime: number
  endTime: number | null
  namespace: string
}
export interface ActorRow {
  actorId: string
  name: string | null
  namespace: string
  className: string
  state: ActorState
  nodeId: string | null
  jobId: string
  restarts: number
  detached: boolean
  deathCause: string | null
}
export interface ObjectRow {
  objectId: string
  size: number
  locations: string[]
  refCount: number
  spilled: boolean
}
export interface TaskSummary {
  /** Per funcOrClassName: its type and how many tasks are in each state. */
  summary: Record<string, { funcOrClassName: string; type: TaskType; stateCounts: Partial<Record<TaskState, number>> }>
  totalTasks: number
  /** Tasks waiting because no node could ever fit them (Ray's infeasible demand). */
  infeasible: { taskId: string; name: string; requiredResources: Resources }[]
  /** Attempt rows dropped to keep the table bounded (the oldest finished ones go first). */
  droppedRows: number
  /**
   * Task events dropped before they reached the coordinator: an owner or node buffers at most 100,000 (Ray's
   * task_events_max_num_status_events_buffer_on_worker), so a huge submission in one loop shows only its newest.
   */
  droppedEvents: number
}

/** The columns of each kind of row: what filters may name (Ray's snake_case and any letter case work too). */
export const STATE_COLUMNS = {
  tasks: [
    'taskId',
    'name',
    'state',
    'type',
    'funcOrClassName',
    'jobId',
    'nodeId',
    'workerId',
    'actorId',
    'attempt',
    'creationTime',
    'startTime',
    'endTime',
    'errorType',
    'errorName',
    'errorMessage',
    'infeasible',
  ] satisfies (keyof TaskRow)[],
  nodes: [
    'nodeId',
    'state',
    'objectStoreMemory',
    'objectStoreUsed',
    'objectStoreSpilled',
    'name',
    'startTime',
    'endTime',
    'deathReason',
    'runningTasks',
    'workers',
    'trust',
    'quarantined',
    'paused',
    'draining',
  ] satisfies (keyof NodeRow)[],
  jobs: ['jobId', 'tenant', 'state', 'startTime', 'endTime', 'namespace'] satisfies (keyof JobRow)[],
  actors: [
    'actorId',
    'name',
    'namespace',
    'className',
    'state',
    'nodeId',
    'jobId',
    'restarts',
    'detached',
    'deathCause',
  ] satisfies (keyof ActorRow)[],
  objects: ['objectId', 'size', 'refCount', 'spilled'] satisfies (keyof ObjectRow)[],
} as const

export interface ListOptions {
  /** Ray's filter triples, e.g. `[['name', '=', 'x'], ['state', '!=', 'FINISHED']]`. */
  filters?: StateFilter[]
  limit?: number
}
const ListOptionsSchema = v.strictObject({
  filters: v.optional(v.array(StateFilterSchema)),
  limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
})

/**
 * The state API: a snapshot of cluster state, as Ray's `ray.util.state`.
 * @example
 * const running = await mesh.state.listTasks({ filters: [['state', '=', 'RUNNING']] })
 */
export class StateApi {
  constructor(private query: (q: StateQuery) => Promise<unknown>) {}

  private list<T>(resource: StateQuery['resource'], opts: ListOptions | undefined, where: string): Promise<T> {
    const o = parseOptions(ListOptionsSchema, opts, where)
    return this.query({ resource, ...o }) as Promise<T>
  }
  listTasks(opts?: ListOptions): Promise<TaskRow[]> {
    return this.list('tasks', opts, 'listTasks')
  }
  listNodes(opts?: ListOptions): Promise<NodeRow[]> {
    return this.list('nodes', opts, 'listNodes')
  }
  listJobs(opts?: ListOptions): Promise<JobRow[]> {
    return this.list('jobs', opts, 'listJobs')
  }
  listActors(opts?: ListOptions): Promise<ActorRow[]> {
    return this.list('actors', opts, 'listActors')
  }
  listObjects(opts?: ListOptions): Promise<ObjectRow[]> {
    return this.list('objects', opts, 'listObjects')
  }
  summarizeTasks(): Promise<TaskSummary> {
    return this.query({ resource: 'summary-tasks' }) as Promise<TaskSummary>
  }
}
