import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { invalidText, issuePath } from './schema.ts'

describe('invalidText', () => {
  const Schema = v.strictObject({ tasks: v.array(v.strictObject({ n: v.number() })) })
  const issues = (x: unknown) => {
    const r = v.safeParse(Schema, x)
    if (r.success) throw new Error('expected a failure')
    return r.issues
  }

  it('names where the first problem is, as a dotted path', () => {
    const i = issues({ tasks: [{ n: 1 }, { n: 'two' }] })
    expect(issuePath(i[0])).toBe('tasks.1.n')
    expect(invalidText("invalid 'submit' message", i)).toMatch(/^invalid 'submit' message at 'tasks\.1\.n': .+/)
  })

  it('says the problem alone when it is at the top', () => {
    const i = issues(42)
    expect(issuePath(i[0])).toBe('')
    expect(invalidText('auth file', i)).toBe(`auth file: ${i[0].message}`)
  })
})
