/**
 * The peer wire: what an owner (a driver, or a task that submits tasks) and a node say to each other directly, over
 * a WebRTC data channel, or through the coordinator's relay when no channel can open. Either side may be anyone, so
 * both ends validate what they receive against these schemas.
 *
 * An owner pushes tasks under a lease the coordinator signed; the node runs them in the lease's worker and answers
 * with their results. Neither the coordinator nor anyone else is in that path (Ray's direct task submission).
 */
import * as v from 'valibot'
import { attempt, bytes, FunctionDefSchema, hex, LargeArgSchema, LeaseSchema, TaskResultSchema } from './schema.ts'

/** One task attempt as an owner pushes it: its arguments are already values (or large objects and where they are). */
export const PushedTaskSchema = v.strictObject({
  taskId: hex(48),
  attempt,
  functionId: v.string(),
  name: v.string(),
  funcName: v.string(),
  args: v.array(v.union([bytes, LargeArgSchema])),
  numReturns: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000)),
  /**
   * The task's arguments hold refs: its result comes back through the coordinator, which must see what the worker
   * did with them first (borrows, releases) and in order.
   */
  carriesRefs: v.optional(v.literal(true)),
  /** An actor call (under an actor lease): the method, and its place in the caller's order for this incarnation. */
  method: v.optional(v.pipe(v.string(), v.maxLength(256))),
  seq: v.optional(attempt),
})
export type PushedTask = v.InferOutput<typeof PushedTaskSchema>

export const PeerMessageSchema = v.variant('type', [
  /** Owner → node: tasks to run under a lease (functions the node has not been sent under it yet come along). */
  v.strictObject({
    type: v.literal('push'),
    lease: LeaseSchema,
    /** The job's namespace (a task's own connection, `self.shoal`, starts in it). */
    namespace: v.string(),
    tasks: v.array(PushedTaskSchema),
    functions: v.optional(v.array(FunctionDefSchema)),
  }),
  /**
   * Owner → node: stop this task (queued: dropped; running: its worker is stopped). An actor call is only dropped if
   * it has not started (the node answers it as cancelled); a running one is never interrupted.
   */
  v.strictObject({ type: v.literal('cancel'), leaseId: hex(32), taskId: hex(48), force: v.boolean() }),
  /**
   * Node → owner: results of tasks pushed under a lease. `registered` is set by the coordinator only, when it relayed
   * them and entered their returns in its object directory.
   */
  v.strictObject({
    type: v.literal('results'),
    leaseId: hex(32),
    results: v.array(TaskResultSchema),
    registered: v.optional(v.literal(true)),
  }),
])
export type PeerMessage = v.InferOutput<typeof PeerMessageSchema>
export type PeerMessageOf<T extends PeerMessage['type']> = Extract<PeerMessage, { type: T }>

/** Parses one peer message from an untrusted sender; undefined (and why) if it is not one. */
export function parsePeerMessage(raw: unknown): { msg: PeerMessage } | { problem: string } {
  const r = v.safeParse(PeerMessageSchema, raw)
  if (r.success) return { msg: r.output }
  const issue = r.issues[0]
  const where = issue.path?.map((p) => String(p.key)).join('.') ?? ''
  return { problem: `${where ? `${where}: ` : ''}${issue.message}` }
}

/** A data channel message carries at most this many bytes (Chromium's SCTP maxMessageSize is 256 KiB). */
export const PEER_MESSAGE_MAX_BYTES = 256 * 1024
/** Binary data channel messages start with one of these bytes. */
export const PeerFrameKind = {
  /** A chunk of an object being pulled: `[kind][u32 transfer id][bytes]`. */
  objectChunk: 0,
  /** A msgpack frame of peer messages (one, or an array sent in one turn). */
  messages: 1,
  /** A piece of a frame too big for one data channel message: `[kind][u32 id][u32 total][u32 offset][bytes]`. */
  fragment: 2,
} as const

/** A rough size of a peer message: its values plus a few hundred bytes per task (to cut batches under a frame limit). */
/**
 * Whether a task's result leaves objects the coordinator must count: stored (large) or ref-holding returns, or a
 * scope whose releases it must run. Such a result goes through the coordinator, which enters its returns in the
 * object directory; any other travels straight to its owner. (A node's result or a worker's, wire or not.)
 */
export function leavesObjects(r: { ok: boolean; returns?: readonly unknown[]; nestedRefs?: readonly string[]; scope?: unknown }): boolean {
  if (r.scope) return true
  return r.ok && (!!r.nestedRefs?.length || !!r.returns?.some((x) => !(x instanceof Uint8Array)))
}

export function sizeOfPeerMessage(m: PeerMessage): number {
  let n = 256
  if (m.type === 'push') {
    for (const t of m.tasks) {
      n += 256
      for (const a of t.args) if (a instanceof Uint8Array) n += a.byteLength
    }
    for (const f of m.functions ?? []) n += f.source.length
  } else if (m.type === 'results') {
    for (const r of m.results) {
      n += 256
      if (r.ok) for (const x of r.returns) if (x instanceof Uint8Array) n += x.byteLength
    }
  }
  return n
}

/**
 * The error code of a result for a task whose function its node does not have (the push that carried it was lost):
 * the owner sends the function again with the task, as the same attempt.
 */
export const FUNCTION_MISSING = 'FUNCTION_MISSING'

/**
 * The error code of a result for an actor call whose node does not host that incarnation of the actor (it died, or
 * moved): the call never ran; its caller asks the coordinator where the actor is now and sends it again.
 */
export const ACTOR_NOT_HERE = 'ACTOR_NOT_HERE'
