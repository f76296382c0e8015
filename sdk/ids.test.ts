import { describe, expect, it } from 'vitest'
import { functionIdOf, jobIdFromNumber, jobIdOfTask, newPutObjectId, newTaskId, objectIdOf, taskIdOfObject } from './ids.ts'

describe('ids', () => {
  it('carry their lineage like Ray: object = task + index, task ends with its job', () => {
    const job = jobIdFromNumber(1)
    expect(job).toBe('01000000')
    const task = newTaskId(job)
    const obj = objectIdOf(task, 1)
    expect(obj).toMatch(/^[0-9a-f]{56}$/)
    expect(obj.endsWith('01000000')).toBe(true)
    expect(taskIdOfObject(obj)).toBe(task)
    expect(jobIdOfTask(task)).toBe(job)
    expect(newPutObjectId(job).endsWith('00000000')).toBe(true)
  })

  it('hash function sources stably', () => {
    expect(functionIdOf('function f() {}')).toBe(functionIdOf('function f() {}'))
    expect(functionIdOf('function f() {}')).not.toBe(functionIdOf('function g() {}'))
  })
})
