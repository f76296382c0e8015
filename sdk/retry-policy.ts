import type { WireError } from './errors.ts'

/** What a task's options say about going again (Ray's `max_retries` and `retry_exceptions`). */
export interface RetryOptions {
  /** How often a failed attempt may go again; -1 means without end. */
  readonly maxRetries: number
  /** Whether a user error (the task threw) goes again: any, none, or only those of these class names. */
  readonly retryExceptions: boolean | readonly string[]
}

/** What becomes of a failed attempt: it goes again as the next attempt, or the task fails with `error`. */
export type RetryDecision = { readonly kind: 'retry' } | { readonly kind: 'fail'; readonly error: WireError }

const RETRY: RetryDecision = Object.freeze({ kind: 'retry' })

/**
 * Ray's retry rule, for the owner's tasks and the coordinator's alike. `attempt` counts from 0 (the attempt that
 * failed). A system failure (its node or worker died, it was lost on its way) goes again while retries are left; a
 * user error only if `retryExceptions` is true or names its class — the class the task threw, not TaskError.
 */
export function decideRetry(attempt: number, options: RetryOptions, error: WireError, userError: boolean): RetryDecision {
  const left = options.maxRetries === -1 || attempt < options.maxRetries
  if (!left) return { kind: 'fail', error }
  if (!userError) return RETRY
  const { retryExceptions } = options
  if (retryExceptions === true) return RETRY
  const name = (error.data?.remoteName as string | undefined) ?? error.name
  if (Array.isArray(retryExceptions) && retryExceptions.includes(name)) return RETRY
  return { kind: 'fail', error }
}
