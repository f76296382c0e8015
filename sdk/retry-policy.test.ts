import { describe, expect, it } from 'vitest'
import { NodeDiedError, TaskError, type WireError } from './errors.ts'
import { decideRetry } from './retry-policy.ts'

const system: WireError = new NodeDiedError('n1', 't1', 1).toWire()
const thrown = (name: string): WireError => new TaskError('f', 't1', name, 'boom', undefined).toWire()

describe('decideRetry', () => {
  it('retries a system failure while retries are left, then fails with its error', () => {
    const o = { maxRetries: 2, retryExceptions: false }
    expect(decideRetry(0, o, system, false)).toEqual({ kind: 'retry' })
    expect(decideRetry(1, o, system, false)).toEqual({ kind: 'retry' })
    expect(decideRetry(2, o, system, false)).toEqual({ kind: 'fail', error: system })
  })

  it('retries without end when maxRetries is -1, and never when it is 0', () => {
    expect(decideRetry(1000, { maxRetries: -1, retryExceptions: false }, system, false).kind).toBe('retry')
    expect(decideRetry(0, { maxRetries: 0, retryExceptions: true }, system, false).kind).toBe('fail')
    expect(decideRetry(0, { maxRetries: 0, retryExceptions: true }, thrown('Error'), true).kind).toBe('fail')
  })

  it('fails a user error unless retryExceptions allows it', () => {
    expect(decideRetry(0, { maxRetries: 3, retryExceptions: false }, thrown('Error'), true)).toEqual({
      kind: 'fail',
      error: thrown('Error'),
    })
    expect(decideRetry(0, { maxRetries: 3, retryExceptions: true }, thrown('Error'), true).kind).toBe('retry')
  })

  it('matches a retryExceptions list against the class the task threw, not TaskError', () => {
    const o = { maxRetries: 3, retryExceptions: ['RangeError'] }
    expect(decideRetry(0, o, thrown('RangeError'), true).kind).toBe('retry')
    expect(decideRetry(0, o, thrown('TypeError'), true).kind).toBe('fail')
    // A user error that is not a TaskError (e.g. rebuilt from a plain wire error) is matched by its own name.
    expect(decideRetry(0, o, { name: 'RangeError', code: 'X', message: 'm' }, true).kind).toBe('retry')
  })

  it('retries a system failure even when retryExceptions names nothing', () => {
    expect(decideRetry(0, { maxRetries: 1, retryExceptions: [] }, system, false).kind).toBe('retry')
  })
})
