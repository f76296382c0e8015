import { describe, expect, it } from 'vitest'
import { ValidationError } from '../sdk/errors.ts'
import { filterRows } from './state-query.ts'

const rows = [
  { taskId: 'a', state: 'RUNNING', funcOrClassName: 'f' },
  { taskId: 'b', state: 'FINISHED', funcOrClassName: 'g' },
]

describe('state API filters (as Ray)', () => {
  it('take keys as Ray writes them (snake_case, any case) and states in any case', () => {
    expect(filterRows('tasks', rows, [['func_or_class_name', '=', 'g']]).map((r) => r.taskId)).toEqual(['b'])
    expect(filterRows('tasks', rows, [['STATE', '=', 'running']]).map((r) => r.taskId)).toEqual(['a'])
    expect(filterRows('tasks', rows, [['state', '!=', 'RUNNING']]).map((r) => r.taskId)).toEqual(['b'])
    expect(filterRows('tasks', rows, [], 1)).toHaveLength(1)
  })

  it('refuse an unknown key or state, listing the valid ones, instead of answering nothing', () => {
    expect(() => filterRows('tasks', rows, [['stat', '=', 'RUNNING']])).toThrow(ValidationError)
    expect(() => filterRows('tasks', rows, [['stat', '=', 'RUNNING']])).toThrow(
      /unknown filter key 'stat'; valid keys: taskId, name, state/,
    )
    expect(() => filterRows('tasks', rows, [['state', '=', 'DONE']])).toThrow(/unknown state 'DONE'; valid states: PENDING_ARGS_AVAIL/)
  })
})
