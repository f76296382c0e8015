import { encodeValue } from './codec.ts'
import { type JobId, newTaskId } from './ids.ts'
import type { TaskSpec } from './protocol/index.ts'

/**
 * For tests: the spec `f.remote(1)` makes for a plain function `f` (1 CPU, 3 retries, DEFAULT strategy), with any
 * field overridden. The one home of this default, for the owner's tests and the coordinator's harness.
 */
export function taskSpec(jobId: JobId, functionId: string, over: Partial<TaskSpec> = {}): TaskSpec {
  return {
    taskId: newTaskId(jobId),
    type: 'NORMAL_TASK',
    functionId,
    name: 'f',
    funcName: 'f',
    args: [{ v: encodeValue(1, 'x') }],
    numReturns: 1,
    resources: { CPU: 1 },
    maxRetries: 3,
    retryExceptions: false,
    strategy: 'DEFAULT',
    ...over,
  }
}

/** For tests: the fields that make a spec `handle.m.remote(…)` on an actor `A` (no resources of its own, no retries). */
export function actorCallFields(actorId: string): Partial<TaskSpec> {
  return {
    type: 'ACTOR_TASK',
    functionId: '',
    name: 'A.m',
    funcName: 'A.m',
    actorId,
    method: 'm',
    resources: {},
    maxRetries: 0,
  }
}
