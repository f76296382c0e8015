import type { ObjectId } from '../sdk/ids.ts'
import type { TaskSpec } from '../sdk/protocol/index.ts'
import type { ResourceUnits } from '../sdk/resources.ts'
import type { Session } from './session.ts'

/**
 * A task the coordinator is responsible for — an actor's creation or one of its calls (Ray's GCS places actors; plain
 * tasks go from their owners straight to leased nodes) — from submit until its result is stored.
 */
export interface TaskRecord {
  spec: TaskSpec
  jobId: string
  owner: Session
  attempt: number
  phase: 'waiting-deps' | 'queued' | 'assigned' | 'done'
  /** Top-level ref arguments not yet ready (only those are dependencies, as in Ray). */
  missing: number
  nodeId?: string
  /** Everything pinned for this task: released when it is done. */
  pinned: ObjectId[]
  /** What it holds while it runs, in fixed-point units. */
  resources: ResourceUnits
  strategy: TaskSpec['strategy']
  /** May be placed on a volunteer node. */
  volunteers?: boolean
  /** The scheduler's queue for it, while queued. */
  queueKey?: string
  preferNode?: string
}
