/**
 * Validation of the options users pass (`.options({...})`, `connect({...})`, `get(…, {timeout})`). Every mistake
 * becomes a ValidationError naming the option, what it expected and what it got; an unknown option suggests the
 * closest known name (Ray users type `num_cpus` or `numCPUs`).
 */
import * as v from 'valibot'
import { ValidationError } from './errors.ts'
import { issuePath, MAX_REPLICAS, ResourcesSchema, SchedulingStrategySchema } from './protocol/index.ts'

const nonNegInt = v.pipe(v.number(), v.integer('must be a whole number'), v.minValue(0))
const retries = v.pipe(v.number(), v.integer('must be a whole number'), v.minValue(-1, 'must be -1 (forever) or more'))
const nonNegNum = v.pipe(v.number(), v.finite(), v.minValue(0))

/** A namespace names a group of named actors; Ray refuses an empty one (give none for an anonymous namespace). */
const namespace = v.pipe(v.string(), v.minLength(1, 'must not be empty (leave it out for an anonymous namespace of this job)'))

export const TaskOptionsSchema = v.strictObject({
  name: v.optional(v.pipe(v.string(), v.minLength(1))),
  numCpus: v.optional(nonNegNum),
  numGpus: v.optional(nonNegNum),
  resources: v.optional(ResourcesSchema),
  maxRetries: v.optional(retries),
  retryExceptions: v.optional(v.union([v.boolean(), v.array(v.string())])),
  /** 0: no ref comes back (Ray's num_returns=0); the task runs for its effects. */
  numReturns: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000))),
  schedulingStrategy: v.optional(SchedulingStrategySchema),
  /** May run on volunteer nodes (joined without a token): they see its code and arguments. Default: trusted only. */
  volunteers: v.optional(v.boolean()),
  /**
   * Run the task on `replicas` distinct nodes and accept its result only when they return the same bytes (on
   * disagreement, more replicas within `maxRetries` and a strict majority; else VerificationError). For deterministic
   * tasks whose results must not be forged by one node: a volunteer's, say.
   */
  verify: v.optional(
    v.strictObject({
      replicas: v.pipe(
        v.number(),
        v.integer('must be a whole number'),
        v.minValue(2, 'must be at least 2 (one node cannot check itself)'),
        v.maxValue(MAX_REPLICAS, `must be at most ${MAX_REPLICAS}`),
      ),
    }),
  ),
})
export type TaskOptions = v.InferOutput<typeof TaskOptionsSchema>

export const ActorOptionsSchema = v.strictObject({
  name: v.optional(v.pipe(v.string(), v.minLength(1))),
  namespace: v.optional(namespace),
  getIfExists: v.optional(v.boolean()),
  lifetime: v.optional(v.picklist(['detached', 'non_detached'])),
  maxConcurrency: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  numCpus: v.optional(nonNegNum),
  numGpus: v.optional(nonNegNum),
  resources: v.optional(ResourcesSchema),
  maxRestarts: v.optional(retries),
  maxTaskRetries: v.optional(retries),
  schedulingStrategy: v.optional(SchedulingStrategySchema),
  /** May be placed on a volunteer node (joined without a token): it sees the actor's code and calls. */
  volunteers: v.optional(v.boolean()),
})
export type ActorOptions = v.InferOutput<typeof ActorOptionsSchema>

export const ConnectOptionsSchema = v.strictObject({
  address: v.optional(v.pipe(v.string(), v.url('must be a URL like http://127.0.0.1:8265'))),
  token: v.optional(v.string()),
  namespace: v.optional(namespace),
  timeout: v.optional(nonNegInt),
  /**
   * How tasks and results travel between this driver and nodes: `direct` (default) over WebRTC data channels where
   * they open, else through the coordinator; `relay` always through the coordinator (slower; for networks that never
   * let links open, and tests).
   */
  peerLinks: v.optional(v.picklist(['direct', 'relay'])),
})
export type ConnectOptions = v.InferOutput<typeof ConnectOptionsSchema>

export const GetOptionsSchema = v.strictObject({ timeout: v.optional(v.nullable(nonNegNum)) })
export const WaitOptionsSchema = v.strictObject({
  numReturns: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  timeout: v.optional(v.nullable(nonNegNum)),
  fetchLocal: v.optional(v.boolean()),
})
export const CancelOptionsSchema = v.strictObject({ force: v.optional(v.boolean()), recursive: v.optional(v.boolean()) })

/** Parses `input` against `schema`, or throws a ValidationError that reads like a sentence. */
export function parseOptions<S extends v.GenericSchema>(schema: S, input: unknown, where: string): v.InferOutput<S> {
  if (input === undefined) input = {}
  const result = v.safeParse(schema, input)
  if (result.success) return result.output
  const issue = result.issues[0]
  const path = issuePath(issue)
  const key = issue.path?.[0]?.key
  if (issue.type === 'strict_object' && typeof key === 'string' && 'entries' in schema) {
    const known = Object.keys((schema as unknown as v.StrictObjectSchema<v.ObjectEntries, undefined>).entries)
    const hint = closest(key, known)
    throw new ValidationError(
      `${where}: unknown option '${key}'${hint ? ` (did you mean '${hint}'?)` : ''}; known options: ${known.join(', ')}`,
    )
  }
  if (!path) throw new ValidationError(`${where}: ${issue.message}`)
  throw new ValidationError(`${where}: invalid option '${path}': ${issue.message}`)
}

function closest(key: string, known: string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '')
  return known.find((k) => norm(k) === norm(key))
}
