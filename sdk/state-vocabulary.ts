/**
 * The state vocabulary (Ray's names), with no dependencies: the wire protocol uses it, and so can a page that must
 * not bundle the protocol's schemas (the dashboard).
 */
export const TASK_STATES = [
  'PENDING_ARGS_AVAIL',
  'PENDING_NODE_ASSIGNMENT',
  'SUBMITTED_TO_WORKER',
  /** An actor call at its actor, waiting for its turn (the actor runs `maxConcurrency` calls at a time). */
  'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY',
  'RUNNING',
  'FINISHED',
  'FAILED',
] as const
export type TaskState = (typeof TASK_STATES)[number]
export const TASK_TYPES = ['NORMAL_TASK', 'ACTOR_CREATION_TASK', 'ACTOR_TASK'] as const
export type TaskType = (typeof TASK_TYPES)[number]
export const ACTOR_STATES = ['DEPENDENCIES_UNREADY', 'PENDING_CREATION', 'ALIVE', 'RESTARTING', 'DEAD'] as const
export type ActorState = (typeof ACTOR_STATES)[number]
