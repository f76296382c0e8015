import { ValidationError } from '../sdk/errors.ts'
import { jobIdOfObject } from '../sdk/ids.ts'
import type { StateFilter, StateQuery } from '../sdk/protocol/index.ts'
import { fromUnits, type ResourceUnits } from '../sdk/resources.ts'
import { STATE_COLUMNS, type TaskRow } from '../sdk/state-api.ts'
import { ACTOR_STATES, TASK_STATES } from '../sdk/state-vocabulary.ts'
import type { ActorManager } from './actor-manager.ts'
import type { JobTable } from './gcs/jobs.ts'
import type { NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { Schedulable, Scheduler } from './scheduler/scheduler.ts'
import type { Tenancy, Viewer } from './tenancy.ts'

type Listable = keyof typeof STATE_COLUMNS

/** The states a row's `state` may hold, per kind of row. */
const STATES: Record<Listable, readonly string[] | undefined> = {
  tasks: TASK_STATES,
  actors: ACTOR_STATES,
  nodes: ['ALIVE', 'DEAD'],
  jobs: ['RUNNING', 'FINISHED', 'FAILED'],
  objects: undefined,
}

const normalize = (key: string) => key.replace(/_/g, '').toLowerCase()

/**
 * Filters and limits rows of the state API as Ray's: `[key, '=' | '!=', value]` triples, where the key may be
 * written in Ray's snake_case or any letter case (`func_or_class_name`, `STATE`), and a state value in any case.
 * An unknown key or state is a ValidationError that lists the valid ones — never a silently empty answer.
 */
export function filterRows<T extends object>(resource: Listable, rows: Iterable<T>, filters: StateFilter[] = [], limit = 10_000): T[] {
  const columns: readonly string[] = STATE_COLUMNS[resource]
  const predicates = filters.map(([key, op, value]) => {
    const column = columns.find((c) => normalize(c) === normalize(key))
    if (!column) throw new ValidationError(`list ${resource}: unknown filter key '${key}'; valid keys: ${columns.join(', ')}`)
    let want = String(value)
    const states = STATES[resource]
    if (column === 'state' && states) {
      const state = states.find((st) => st === want.toUpperCase())
      if (!state) throw new ValidationError(`list ${resource}: unknown state '${want}'; valid states: ${states.join(', ')}`)
      want = state
    }
    return (row: T) => (String((row as Record<string, unknown>)[column]) === want) === (op === '=')
  })
  const out: T[] = []
  for (const r of rows) {
    if (!predicates.every((p) => p(r))) continue
    out.push(r)
    if (out.length >= limit) break
  }
  return out
}

export interface StateReaderDeps {
  nodes: NodeTable
  jobs: JobTable
  actors: ActorManager
  objects: ObjectDirectory
  events: TaskEvents
  scheduler: Pick<Scheduler<Schedulable>, 'queued'>
  leases: Pick<LeaseManager, 'count'>
  tenancy: Tenancy
}

/**
 * The state API, shared by the WebSocket and REST, as a viewer may see it: an admin sees everything; a driver its
 * tenant's jobs, tasks, actors and objects (and every node: they serve all tenants).
 */
export class StateReader {
  constructor(private readonly deps: StateReaderDeps) {}

  query(q: StateQuery, viewer: Viewer): unknown {
    const { events, nodes, jobs, actors, objects } = this.deps
    const limit = q.limit ?? 10_000
    const keep = this.deps.tenancy.keepFor(viewer)
    const mine = <R>(rows: R[], jobOf: (r: R) => string) => (keep ? rows.filter((r) => keep(jobOf(r))) : rows)
    switch (q.resource) {
      case 'tasks':
        return filterRows(
          'tasks',
          mine(events.list(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'nodes':
        return filterRows('nodes', nodes.rows(), q.filters, limit)
      case 'jobs':
        return filterRows(
          'jobs',
          mine(jobs.list(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'actors':
        return filterRows(
          'actors',
          mine(actors.rows(), (r) => r.jobId),
          q.filters,
          limit,
        )
      case 'objects':
        return filterRows(
          'objects',
          mine(objects.rows(), (r) => jobIdOfObject(r.objectId)),
          q.filters,
          limit,
        )
      case 'summary-tasks':
        return events.summarize(keep)
      case 'status':
        return this.status(viewer)
      default:
        return q.resource satisfies never
    }
  }

  /** The task row of `taskId`, if `viewer` may see it. */
  taskRow(taskId: string, viewer: Viewer): TaskRow | undefined {
    const row = this.deps.events.get(taskId)
    return row && this.deps.tenancy.sees(viewer, row.jobId) ? row : undefined
  }

  status(viewer: Viewer) {
    const { events, nodes, jobs, objects } = this.deps
    const alive = nodes.alive()
    const total: ResourceUnits = {}
    const used: ResourceUnits = {}
    for (const n of alive) {
      for (const [k, v] of Object.entries(n.total)) {
        total[k] = (total[k] ?? 0) + v
        used[k] = (used[k] ?? 0) + v - (n.available[k] ?? 0)
      }
    }
    const keep = this.deps.tenancy.keepFor(viewer)
    const summary = events.summarize(keep)
    const running = jobs.list().filter((j) => j.state === 'RUNNING' && (!keep || keep(j.jobId)))
    return {
      nodes: { alive: alive.length, dead: nodes.rows().length - alive.length },
      resources: { total: fromUnits(total), used: fromUnits(used) },
      jobs: { running: running.length },
      tasks: keep
        ? { pending: countWhere(events.liveJobs(), keep) }
        : { pending: events.live, queued: this.deps.scheduler.queued, leases: this.deps.leases.count },
      objects: keep ? countWhere(objects.ids(), (id) => keep(jobIdOfObject(id))) : objects.size,
      infeasible: summary.infeasible,
    }
  }

  /** Per tenant: jobs running, tasks not finished, objects (the metrics' tenant labels). */
  tenantGauges(): Map<string, { jobs: number; pending: number; objects: number }> {
    const { events, jobs, objects } = this.deps
    const out = new Map<string, { jobs: number; pending: number; objects: number }>()
    const of = (jobId: string) => {
      const t = jobs.tenantOf(jobId) ?? '?'
      let g = out.get(t)
      if (!g) out.set(t, (g = { jobs: 0, pending: 0, objects: 0 }))
      return g
    }
    for (const j of jobs.list()) if (j.state === 'RUNNING') of(j.jobId).jobs++
    for (const jobId of events.liveJobs()) of(jobId).pending++
    for (const id of objects.ids()) of(jobIdOfObject(id)).objects++
    return out
  }
}

function countWhere<T>(items: Iterable<T>, pred: (x: T) => boolean): number {
  let n = 0
  for (const x of items) if (pred(x)) n++
  return n
}
