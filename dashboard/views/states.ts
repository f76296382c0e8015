import type { TaskState } from '../../sdk/protocol.ts'

/** Ray's task states in lifecycle order (a local copy: importing the runtime list would bundle valibot). */
export const TASK_STATES = [
  'PENDING_ARGS_AVAIL',
  'PENDING_NODE_ASSIGNMENT',
  'SUBMITTED_TO_WORKER',
  'RUNNING',
  'FINISHED',
  'FAILED',
] as const satisfies readonly TaskState[]

export type BadgeColor = 'grey' | 'yellow' | 'blue' | 'green' | 'red'

/** One palette for every state enum on the page (tasks, nodes, jobs, actors). */
export function stateColor(state: string): BadgeColor {
  switch (state) {
    case 'RUNNING':
      return 'blue'
    case 'FINISHED':
    case 'ALIVE':
      return 'green'
    case 'FAILED':
    case 'DEAD':
      return 'red'
    case 'SUBMITTED_TO_WORKER':
    case 'RESTARTING':
      return 'yellow'
    default:
      return 'grey'
  }
}
