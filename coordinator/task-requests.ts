import { ValidationError } from '../sdk/errors.ts'
import { jobIdOfTask, type ObjectId, type TaskId, taskIdOfObject } from '../sdk/ids.ts'
import type { ClientMessageOf } from '../sdk/protocol/index.ts'
import type { ActorManager } from './actor-manager.ts'
import type { JobTable } from './gcs/jobs.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { PlacedTasks } from './placed-tasks.ts'
import { SUBMITS_PER_SECOND } from './rate-limit.ts'
import type { Session } from './session.ts'
import type { Tenancy } from './tenancy.ts'

export interface TaskRequestsDeps {
  tasks: PlacedTasks
  events: TaskEvents
  leases: LeaseManager
  actors: ActorManager
  jobs: JobTable
  objects: ObjectDirectory
  tenancy: Tenancy
}

/** What a connection says of tasks: submits through the coordinator, task events, and cancels. */
export class TaskRequests {
  constructor(private readonly deps: TaskRequestsDeps) {}

  /** Tasks for the coordinator to place, so many per second per connection (then its tasks fail, clearly). */
  submit(s: Session, tasks: ClientMessageOf<'submit'>['tasks']): void {
    if (!s.submitRate.take(tasks.length)) {
      const why = `over the rate limit of ${SUBMITS_PER_SECOND} task submissions per second per connection; slow down`
      for (const t of tasks) this.deps.tasks.reject(s, t, why, () => {})
      throw new ValidationError(why)
    }
    let unnamed = 0
    let first = ''
    for (const t of tasks)
      this.deps.tasks.submit(s, t, (why) => {
        if (!unnamed++) first = why
      })
    // One error for the specs that did not even name their task, however many there were.
    if (unnamed) throw new ValidationError(`${unnamed} task spec(s) refused; the first: ${first}`)
  }

  /**
   * Task events: an owner reports the tasks it submitted (of its own job); a node reports RUNNING for the tasks it runs
   * — those the coordinator placed on it, or those of a job it holds a lease of now.
   */
  events(s: Session, msg: ClientMessageOf<'task-events'>): void {
    const { events, leases, actors, jobs, tasks } = this.deps
    if (msg.dropped) events.droppedAtSource += msg.dropped
    if (s.role === 'driver') {
      const jobId = s.jobId as string
      const mine = msg.events.filter((e) => jobIdOfTask(e.taskId as TaskId) === jobId)
      return events.report(mine, jobId, s)
    }
    for (const e of msg.events) {
      const rec = tasks.get(e.taskId)
      if (rec) {
        if (rec.nodeId !== s.nodeId || rec.attempt !== e.attempt) continue // stale: an attempt this node no longer runs
        const at = { attempt: e.attempt, nodeId: s.nodeId, time: e.time, ...(e.workerId && { workerId: e.workerId }) }
        events.state(e.taskId, e.state, at)
        continue
      }
      const jobId = jobIdOfTask(e.taskId as TaskId)
      // What a node may say of others' tasks: that it runs them (or, for an actor's call, that it waits its turn).
      const nodeState = e.state === 'RUNNING' || e.state === 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY'
      const runsJob = leases.holdsJob(s.nodeId as string, jobId) || actors.callsOnNode(s.nodeId as string, jobId)
      if (!nodeState || !runsJob) continue
      events.report([{ ...e, nodeId: s.nodeId }], jobId, undefined, jobs.get(jobId)?.state === 'RUNNING')
    }
  }

  /**
   * `cancel(ref)`: a task the coordinator placed (an actor's creation) is not cancelled but killed; any other is its
   * owner's to cancel, so the request goes to the owner. Only tasks of the caller's own tenant.
   */
  cancel(s: Session, objectId: ObjectId, force: boolean): void {
    const taskId = taskIdOfObject(objectId)
    if (!this.deps.tenancy.sees(s, jobIdOfTask(taskId)))
      throw new ValidationError(`cancel: ObjectRef(${objectId}) is not one of this tenant's tasks; nothing was cancelled`)
    const placed = this.deps.tasks.get(taskId)
    if (placed) return this.deps.tasks.cancel(placed)
    // Its owner: the one that reported it, or (if its report is still on the way) the owner of its published return.
    const owner = (this.deps.events.ownerOf(taskId) ?? this.deps.objects.read(objectId)?.owner) as Session | undefined
    if (owner && owner !== s && !owner.closed) owner.send({ type: 'cancel-owned', taskId, force })
  }
}
