import { describe, expect, it } from 'vitest'
import {
  functionIdOf,
  isPutObjectId,
  jobIdFromNumber,
  jobIdOfObject,
  jobIdOfTask,
  newPutObjectId,
  newTaskId,
  objectIdOf,
  taskIdOfObject,
} from './ids.ts'

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

  it('tell a put from a task return, and the job of either', () => {
    const job = jobIdFromNumber(7)
    const put = newPutObjectId(job)
    const ret = objectIdOf(newTaskId(job), 1)
    expect([isPutObjectId(put), isPutObjectId(ret)]).toEqual([true, false])
    expect([jobIdOfObject(put), jobIdOfObject(ret)]).toEqual([job, job])
  })

  it('hash function sources stably', () => {
    expect(functionIdOf('function f() {}')).toBe(functionIdOf('function f() {}'))
    expect(functionIdOf('function f() {}')).not.toBe(functionIdOf('function g() {}'))
  })
})
