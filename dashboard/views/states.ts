/** Ray's task states in lifecycle order. */
export { TASK_STATES } from '../../sdk/state-vocabulary.ts'

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
