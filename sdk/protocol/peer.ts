/**
 * The peer wire: what an owner (a driver, or a task that submits tasks) and a node say to each other directly, over
 * a WebRTC data channel, or through the coordinator's relay when no channel can open. Either side may be anyone, so
 * both ends validate what they receive against these schemas.
 *
 * An owner pushes tasks under a lease the coordinator signed; the node runs them in the lease's worker and answers
 * with their results. Neither the coordinator nor anyone else is in that path (Ray's direct task submission).
 */
import * as v from 'valibot'
import { attempt, bytes, FunctionDefSchema, hex, invalidText, LargeArgSchema, LeaseSchema, TaskResultSchema } from './schema.ts'

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

/**
 * A message sent again through the coordinator because the direct link it went on closed before the receiver said it
 * had it (see FrameHeader). The receiver runs `msg` unless it already had message `seq` of `stream`.
 */
export const ResentSchema = v.strictObject({
  type: v.literal('resent'),
  stream: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(0xffffffff)),
  base: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER)),
  seq: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER)),
  msg: v.unknown(),
})
export type Resent = v.InferOutput<typeof ResentSchema>
/** What travels between peers: a peer message, or one sent again. */
export type PeerWireMessage = PeerMessage | Resent

/** A relayed message that says it was sent again: parsed, or why it is refused; undefined if it does not say so. */
export function parseResent(raw: unknown): { resent: Resent } | { problem: string } | undefined {
  if ((raw as { type?: unknown } | undefined)?.type !== 'resent') return undefined
  const r = v.safeParse(ResentSchema, raw)
  return r.success ? { resent: r.output } : { problem: invalidText("invalid 'resent'", r.issues) }
}

/** Parses one peer message from an untrusted sender; undefined (and why) if it is not one. */
export function parsePeerMessage(raw: unknown): { msg: PeerMessage } | { problem: string } {
  const r = v.safeParse(PeerMessageSchema, raw)
  if (r.success) return { msg: r.output }
  const type = (raw as { type?: unknown } | undefined)?.type
  return { problem: invalidText(`invalid '${String(type).slice(0, 40)}'`, r.issues) }
}

/**
 * Every frame of peer messages on a direct link starts with this header (then the msgpack of its messages, if any):
 * - `stream`, `first`: the sender's stream to this receiver and the number of the frame's first message (the others
 *   follow in order);
 * - `base`: the lowest number the sender has not yet heard acknowledged (where a receiver that never heard of the
 *   stream starts counting);
 * - `ackStream`, `ack`: what the sender received on the other way: every message of the receiver's stream `ackStream`
 *   up to `ack` (0 if none). A frame with no messages only acknowledges.
 * A data channel that closes loses what was in flight on it. So the sender keeps every message until it is
 * acknowledged; when the link goes down it sends them again through the coordinator as `resent`, and the receiver
 * runs only those it did not already have: every message arrives once (sdk/transport/peer-streams.ts).
 */
export interface FrameHeader {
  stream: number
  base: number
  first: number
  ackStream: number
  ack: number
}
export const FRAME_HEADER_BYTES = 32

export function writeFrameHeader(h: FrameHeader): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(FRAME_HEADER_BYTES)
  const view = new DataView(b.buffer)
  view.setUint32(0, h.stream, true)
  view.setUint32(4, h.ackStream, true)
  view.setFloat64(8, h.base, true)
  view.setFloat64(16, h.first, true)
  view.setFloat64(24, h.ack, true)
  return b
}

/** The header of a frame from an untrusted peer; undefined if it is not one. */
export function readFrameHeader(frame: Uint8Array): FrameHeader | undefined {
  if (frame.byteLength < FRAME_HEADER_BYTES) return undefined
  const view = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES)
  const h = {
    stream: view.getUint32(0, true),
    ackStream: view.getUint32(4, true),
    base: view.getFloat64(8, true),
    first: view.getFloat64(16, true),
    ack: view.getFloat64(24, true),
  }
  const count = (x: number) => Number.isSafeInteger(x) && x >= 0
  return h.stream && count(h.base) && count(h.first) && count(h.ack) ? h : undefined
}

/**
 * Whether a task's result leaves objects the coordinator must count: stored (large) or ref-holding returns, or a
 * scope whose releases it must run. Such a result goes through the coordinator, which enters its returns in the
 * object directory; any other travels straight to its owner. (A node's result or a worker's, wire or not.)
 */
export function leavesObjects(r: { ok: boolean; returns?: readonly unknown[]; nestedRefs?: readonly string[]; scope?: unknown }): boolean {
  if (r.scope) return true
  return r.ok && (!!r.nestedRefs?.length || !!r.returns?.some((x) => !(x instanceof Uint8Array)))
}

/** A rough size of a peer message: its values plus a few hundred bytes per task (to cut batches under a frame limit). */
export function sizeOfPeerMessage(m: PeerWireMessage): number {
  if (m.type === 'resent') return 64 + sizeOfPeerMessage(m.msg as PeerMessage)
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
