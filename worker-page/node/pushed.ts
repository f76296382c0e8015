import type { WireError } from '../../sdk/errors.ts'
import type { PushedTask, TaskResult } from '../../sdk/protocol/index.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'

/** A task pushed under a lease, and the way it came (its result goes back the same way, or through the coordinator). */
export interface Pushed extends PushedTask {
  route: Route
}

/** An error of the system, not of the task's code (its owner retries the task, or fails it, as the code says). */
export const systemError = (code: string, name: string, message: string, data?: Record<string, unknown>): WireError => ({
  name,
  code,
  message,
  ...(data && { data }),
})

/** A task's failure the node answers itself, without running it (refused, cancelled before it started, its caller forgotten). */
export const unrun = (t: { taskId: string; attempt: number }, error: WireError): TaskResult => ({
  taskId: t.taskId as never,
  attempt: t.attempt,
  ok: false,
  error,
  userError: false,
})
