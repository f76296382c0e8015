import { describe, expect, it } from 'vitest'
import { functionIdOf, type JobId, objectIdOf, type TaskId } from './ids.ts'
import type { ClientMessage } from './protocol/index.ts'
import { taskSpec } from './task-spec.fixture.ts'
import { FUNCTION_MARK, isTaskMark, TaskSubmitter } from './task-submitter.ts'

describe('frame manifests (what a refused frame fails)', () => {
  it('names relayed pushes by task id, submits by their return objects, registrations by marked function id', () => {
    const job = '01000000' as JobId
    const spec = taskSpec(job, functionIdOf('function f() {}'), { numReturns: 2 })
    const push = { type: 'peer-send', to: 'n', msgs: [{ type: 'push', lease: {}, tasks: [{ taskId: spec.taskId }] }] }
    const pushed = TaskSubmitter.manifestOf(push as unknown as ClientMessage) ?? []
    expect(pushed).toEqual([spec.taskId])
    expect(pushed.every(isTaskMark)).toBe(true)
    const made = TaskSubmitter.manifestOf({ type: 'submit', tasks: [spec] } as ClientMessage) ?? []
    expect(made).toEqual([objectIdOf(spec.taskId as TaskId, 1), objectIdOf(spec.taskId as TaskId, 2)])
    expect(made.some(isTaskMark)).toBe(false)
    const fn = { functionId: spec.functionId, name: 'f', kind: 'function', source: 'function f() {}' }
    const registered = TaskSubmitter.manifestOf({ type: 'register-functions', functions: [fn] } as ClientMessage) ?? []
    expect(registered).toEqual([`${FUNCTION_MARK}${spec.functionId}`])
    expect(registered.some(isTaskMark)).toBe(false)
  })
})
