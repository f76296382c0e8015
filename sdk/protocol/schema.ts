/**
 * Schema pieces shared by the wires that cross a trust boundary (control messages to the coordinator, peer messages
 * between owners and nodes): ids, bytes, resources, results, leases. One home, so both wires check them alike.
 */
import * as v from 'valibot'
import { DRIVER_PEER_ID, PEER_ADDRESS } from '../peer-address.ts'

/** Where in a value its first problem is, as a dotted path (`tasks.0.resources`); empty at the top. */
export function issuePath(issue: v.BaseIssue<unknown>): string {
  return issue.path?.map((p) => String(p.key)).join('.') ?? ''
}

/**
 * Why a value failed its schema, in one line: `what at 'a.b': message` (`what: message` at the top). The one text of
 * a validation error, for every input checked at a trust boundary (messages, task specs, files).
 */
export function invalidText(what: string, issues: readonly [v.BaseIssue<unknown>, ...v.BaseIssue<unknown>[]]): string {
  const issue = issues[0]
  const where = issuePath(issue)
  return `${what}${where ? ` at '${where}'` : ''}: ${issue.message}`
}

export const hex = (len: number) => v.pipe(v.string(), v.regex(new RegExp(`^[0-9a-f]{${len}}$`), `must be ${len} hex digits`))
export const bytes = v.custom<Uint8Array>((x) => x instanceof Uint8Array, 'must be bytes')
/** A retry or restart count: -1 means unlimited. */
export const count = v.pipe(v.number(), v.integer(), v.minValue(-1))
export const attempt = v.pipe(v.number(), v.integer(), v.minValue(0))
export const size = v.pipe(v.number(), v.integer(), v.minValue(0))

/** A peer's address: a node's id, a driver's `d-…` id, or a task's connection on a node (see sdk/peer-address.ts). */
export const PeerAddressSchema = v.pipe(v.string(), v.regex(PEER_ADDRESS, 'must be a peer address'))
/** A driver's peer id (its PeerJS id, whether or not it could join the peer mesh). */
export const DriverPeerIdSchema = v.pipe(v.string(), v.regex(DRIVER_PEER_ID, 'must be a driver peer id (d- and 54 hex digits)'))

export const ResourcesSchema = v.record(v.string(), v.pipe(v.number(), v.finite(), v.minValue(0)))
export type Resources = v.InferOutput<typeof ResourcesSchema>
/** Resources in fixed-point units (sdk/resources.ts): whole numbers. */
export const ResourceUnitsSchema = v.record(v.string(), v.pipe(v.number(), v.integer(), v.minValue(0)))

export const SchedulingStrategySchema = v.union([
  v.picklist(['DEFAULT', 'SPREAD']),
  v.strictObject({ nodeId: hex(56), soft: v.optional(v.boolean(), false) }),
])
export type SchedulingStrategy = v.InferOutput<typeof SchedulingStrategySchema>

export const FunctionDefSchema = v.strictObject({
  functionId: v.string(),
  name: v.string(),
  kind: v.picklist(['function', 'class']),
  source: v.string(),
})
export type FunctionDef = v.InferOutput<typeof FunctionDefSchema>

export const WireErrorSchema = v.object({
  name: v.string(),
  code: v.string(),
  message: v.string(),
  stack: v.optional(v.string()),
  data: v.optional(v.record(v.string(), v.unknown())),
})

/**
 * What a task's worker held only for that task and let go when it ended (Ray releases a finished task's local refs):
 * objects it made, on the worker's channel. Carried in the result so the coordinator lets them go only after it has
 * taken what the result contains.
 */
const ScopeEndSchema = v.strictObject({ channel: v.string(), release: v.array(hex(56)) })

/** Facts about the run a node adds to a result: which worker ran it, and for how long (ms, for pipelining). */
const runFacts = {
  workerId: v.optional(hex(56)),
  ms: v.optional(v.pipe(v.number(), v.minValue(0))),
}

export const TaskResultSchema = v.variant('ok', [
  v.strictObject({
    taskId: hex(48),
    attempt,
    ok: v.literal(true),
    scope: v.optional(ScopeEndSchema),
    /** Small returns inline; a large one was written to the node's plasma store and is reported by size. */
    returns: v.array(v.union([bytes, v.strictObject({ stored: size })])),
    /** Object ids nested inside the returns: they stay alive while the returned object does. */
    nestedRefs: v.optional(v.array(hex(56))),
    ...runFacts,
  }),
  v.strictObject({
    taskId: hex(48),
    attempt,
    ok: v.literal(false),
    error: WireErrorSchema,
    /** true when user code threw (retried only with retryExceptions); false for a system failure (always retried). */
    userError: v.boolean(),
    scope: v.optional(ScopeEndSchema),
    ...runFacts,
  }),
])
export type TaskResult = v.InferOutput<typeof TaskResultSchema>

/**
 * A worker lease (Ray's): the right of `owner` to run tasks of one job on `nodeId`, holding `units` there, until the
 * owner returns it or the coordinator ends it. Signed by the coordinator with the node's own key, so the node can
 * check a lease an owner shows it without asking anyone.
 */
export const LeaseSchema = v.strictObject({
  leaseId: hex(32),
  nodeId: hex(56),
  owner: PeerAddressSchema,
  jobId: hex(8),
  units: ResourceUnitsSchema,
  /**
   * An actor lease: the right of `owner` to call this incarnation of an actor hosted on `nodeId` (it holds no
   * resources of its own: the actor does). Calls under it carry a sequence number; the node runs them in that order.
   */
  actor: v.optional(v.strictObject({ actorId: hex(32), incarnation: attempt })),
  sig: hex(64),
})
export type Lease = v.InferOutput<typeof LeaseSchema>

/** The bytes a lease's signature covers. */
export function leaseSigningText(l: Omit<Lease, 'sig'>): string {
  const units = Object.keys(l.units)
    .sort()
    .map((k) => `${k}=${l.units[k]}`)
    .join(',')
  const actor = l.actor ? `|actor=${l.actor.actorId}:${l.actor.incarnation}` : ''
  return `${l.leaseId}|${l.nodeId}|${l.owner}|${l.jobId}|${units}${actor}`
}

/** A large task argument: which object, how big, and which nodes hold it. */
export const LargeArgSchema = v.strictObject({ ref: hex(56), size, locations: v.array(v.string()) })
export type LargeArg = v.InferOutput<typeof LargeArgSchema>
