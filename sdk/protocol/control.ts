/**
 * The control wire: every message a driver or node sends the coordinator, and every message it sends them.
 *
 * Messages TO the coordinator cross a trust boundary, so they are valibot schemas (validated once at the edge) and
 * their types are inferred from them. Messages FROM the coordinator are trusted and are plain types.
 * Frames are msgpackr-encoded binary WebSocket messages (see codec.ts). User values inside are opaque `Uint8Array`s
 * the coordinator never decodes: it never runs or even parses user data.
 */
import * as v from 'valibot'
import type { WireError } from '../errors.ts'
import {
  attempt,
  bytes,
  count,
  DriverPeerIdSchema,
  type FunctionDef,
  FunctionDefSchema,
  hex,
  type LargeArg,
  type Lease,
  PeerAddressSchema,
  ResourcesSchema,
  type SchedulingStrategy,
  SchedulingStrategySchema,
  type TaskResult,
  TaskResultSchema,
  WireErrorSchema,
} from './schema.ts'

export type { Resources, SchedulingStrategy } from './schema.ts'
export type { FunctionDef, LargeArg, Lease, TaskResult }
export { FunctionDefSchema, ResourcesSchema, SchedulingStrategySchema }

export const PROTOCOL_VERSION = 1
/**
 * Largest control frame the coordinator accepts by default (its welcome tells clients the limit in force). Larger
 * objects move through the data plane; senders cut their frames under it.
 */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024
/** A node carries its workers' frames inside its own: its limit is this much larger, so a full worker frame fits. */
export const RELAY_OVERHEAD_BYTES = 64 * 1024
/** A `submit` message holds at most this many task specs (the SDK sends at most 2,000). */
export const MAX_TASKS_PER_SUBMIT = 10_000
/** Most CPUs a node may say it gives (hello's resources are the first word; `node-update` the later ones). */
export const MAX_NODE_CPUS = 1024
/** A drain's deadline is at most this long (an hour): the coordinator keeps the node's work waiting meanwhile. */
export const MAX_DRAIN_DEADLINE_MS = 3_600_000

/** Ray's max_direct_call_object_size: values up to this travel inline in control messages. */
export const INLINE_OBJECT_MAX_BYTES = 100 * 1024
/** Large objects cross the control socket (driver puts and gets, relays) in chunks of this size. */
export const OBJECT_CHUNK_BYTES = 1024 * 1024

import type { ResourceUnits } from '../resources.ts'
import { ACTOR_STATES, type ActorState, TASK_STATES, TASK_TYPES, type TaskState, type TaskType } from '../state-vocabulary.ts'

export type { ActorState, TaskState, TaskType }
export { ACTOR_STATES, TASK_STATES, TASK_TYPES }

/** A top-level task argument: an inline encoded value, or a ref the coordinator resolves before the task runs. */
export const TaskArgSchema = v.union([v.strictObject({ v: bytes }), v.strictObject({ ref: hex(56) })])
export type TaskArg = v.InferOutput<typeof TaskArgSchema>

export const ActorCreationSchema = v.strictObject({
  className: v.string(),
  methods: v.array(v.string()),
  name: v.optional(v.string()),
  namespace: v.string(),
  getIfExists: v.boolean(),
  detached: v.boolean(),
  maxConcurrency: v.pipe(v.number(), v.integer(), v.minValue(1)),
  maxRestarts: count,
  maxTaskRetries: count,
})
export type ActorCreation = v.InferOutput<typeof ActorCreationSchema>

/** The most replicas a verified task may ask for (each needs a node of its own). */
export const MAX_REPLICAS = 16
/** A verified task's returns, in all, at most: they travel to the coordinator to be compared byte by byte. */
export const VERIFIED_RETURNS_MAX_BYTES = 4 * 1024 * 1024

/**
 * Why a task cannot be verified with this strategy, if it cannot: its replicas need distinct nodes. One rule for the
 * SDK (`.options()` throws at once) and the coordinator (a spec that skipped the SDK is refused).
 */
export function verifyProblem(verify: { replicas: number } | undefined, strategy: SchedulingStrategy | undefined): string | undefined {
  if (!verify || typeof strategy !== 'object' || strategy.soft) return undefined
  return `verify needs ${verify.replicas} distinct nodes, and a hard node affinity (schedulingStrategy.nodeId without soft) allows only one`
}

export const TaskSpecSchema = v.strictObject({
  taskId: hex(48),
  type: v.picklist(TASK_TYPES),
  functionId: v.string(),
  /** The name shown in the state API: `options.name`, else funcName. */
  name: v.string(),
  /** Ray's func_or_class_name (`Counter.inc` for an actor task). */
  funcName: v.string(),
  args: v.array(TaskArgSchema),
  numReturns: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1000)),
  resources: ResourcesSchema,
  maxRetries: count,
  retryExceptions: v.union([v.boolean(), v.array(v.string())]),
  strategy: SchedulingStrategySchema,
  /**
   * Object ids nested inside inline args: they stay alive while the task is pending. They are not dependencies (as
   * in Ray, only top-level ref arguments are): the task gets them as refs and may run before they are ready.
   */
  nestedRefs: v.optional(v.array(hex(56))),
  /** The task that submitted this one, if a task did (for `cancel(ref, { recursive: true })`). */
  parentTaskId: v.optional(hex(48)),
  actorId: v.optional(hex(32)),
  method: v.optional(v.string()),
  actor: v.optional(ActorCreationSchema),
  /** May run on volunteer nodes (else trusted nodes only). */
  volunteers: v.optional(v.boolean()),
  /** Run on this many distinct nodes and accept only a result they agree on (a plain task; the coordinator places it). */
  verify: v.optional(v.strictObject({ replicas: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(MAX_REPLICAS)) })),
})
export type TaskSpec = v.InferOutput<typeof TaskSpecSchema>

export const StateFilterSchema = v.tuple([v.string(), v.picklist(['=', '!=']), v.union([v.string(), v.number(), v.boolean()])])
export type StateFilter = v.InferOutput<typeof StateFilterSchema>
export const StateQuerySchema = v.strictObject({
  resource: v.picklist(['tasks', 'nodes', 'jobs', 'actors', 'objects', 'summary-tasks', 'status']),
  filters: v.optional(v.array(StateFilterSchema)),
  limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
})
export type StateQuery = v.InferOutput<typeof StateQuerySchema>

const NodeInfoSchema = v.strictObject({
  resources: ResourcesSchema,
  objectStoreMemory: v.pipe(v.number(), v.minValue(0)),
  name: v.optional(v.string()),
  userAgent: v.optional(v.string()),
  /** Its donor paused it before it (re)joined (kept in the tab's storage): no work is placed there until resumed. */
  paused: v.optional(v.boolean()),
})

/** A `task-events` message holds at most this many events (the reporter cuts its messages under it). */
export const MAX_TASK_EVENTS_PER_MESSAGE = 5000

/**
 * One state change of one task attempt. Its owner reports its life (created, waiting, pushed, finished, failed, with
 * what it is on the first event); the node that runs it reports RUNNING.
 */
const TaskEventSchema = v.strictObject({
  taskId: hex(48),
  attempt,
  state: v.picklist(TASK_STATES),
  time: v.number(),
  nodeId: v.optional(hex(56)),
  workerId: v.optional(hex(56)),
  error: v.optional(WireErrorSchema),
  /** No node alive could ever fit it (it waits for one). */
  infeasible: v.optional(v.boolean()),
  task: v.optional(
    v.strictObject({
      name: v.string(),
      funcName: v.string(),
      type: v.picklist(TASK_TYPES),
      resources: ResourcesSchema,
      actorId: v.optional(hex(32)),
      parentTaskId: v.optional(hex(48)),
    }),
  ),
})

const reqId = v.pipe(v.number(), v.integer())

/** Every message a driver or node sends to the coordinator. */
export const ClientMessageSchema = v.variant('type', [
  v.strictObject({
    type: v.literal('hello'),
    reqId,
    protocol: v.number(),
    role: v.picklist(['driver', 'node']),
    token: v.optional(v.string()),
    namespace: v.optional(v.string()),
    /** A connection opened inside a task joins the job of that task instead of starting one. */
    attachJob: v.optional(hex(8)),
    /** That task's worker hosts this actor: its channel ends (and what it owns with it) when the actor does. */
    actorId: v.optional(hex(32)),
    /** A driver's address among peers (its PeerJS id, whether or not it could join): results find it by this. */
    peerId: v.optional(DriverPeerIdSchema),
    node: v.optional(NodeInfoSchema),
  }),
  v.strictObject({ type: v.literal('register-functions'), functions: v.array(FunctionDefSchema) }),
  v.strictObject({ type: v.literal('submit'), tasks: v.pipe(v.array(v.unknown()), v.maxLength(MAX_TASKS_PER_SUBMIT)) }),
  v.strictObject({ type: v.literal('put'), reqId, objectId: hex(56), data: bytes, nestedRefs: v.optional(v.array(hex(56))) }),
  v.strictObject({ type: v.literal('subscribe'), objectIds: v.array(hex(56)) }),
  v.strictObject({ type: v.literal('release'), objectIds: v.array(hex(56)) }),
  /** Ray's `internal_api.free`: delete these objects everywhere now; later reads get ObjectFreedError. */
  v.strictObject({ type: v.literal('free'), reqId, objectIds: v.array(hex(56)) }),
  /** Refs this connection found inside values (Ray's borrowers): their objects live while the refs do. */
  v.strictObject({ type: v.literal('borrow'), objectIds: v.array(hex(56)) }),
  v.strictObject({ type: v.literal('unborrow'), objectIds: v.array(hex(56)) }),
  v.strictObject({ type: v.literal('cancel'), reqId, objectId: hex(56), force: v.boolean(), recursive: v.optional(v.boolean()) }),
  v.strictObject({ type: v.literal('state'), reqId, query: StateQuerySchema }),
  v.strictObject({ type: v.literal('get-actor'), reqId, name: v.string(), namespace: v.string() }),
  v.strictObject({ type: v.literal('kill-actor'), reqId, actorId: hex(32), noRestart: v.boolean() }),
  v.strictObject({
    type: v.literal('heartbeat'),
    running: v.number(),
    workers: v.number(),
    storeUsed: v.optional(v.number()),
    storeSpilled: v.optional(v.number()),
  }),
  /** A chunk of a large object: a driver's put (to the coordinator), or a node answering `upload-object`. */
  v.strictObject({
    type: v.literal('object-chunk'),
    objectId: hex(56),
    offset: v.pipe(v.number(), v.integer(), v.minValue(0)),
    total: v.pipe(v.number(), v.integer(), v.minValue(0)),
    data: bytes,
    nestedRefs: v.optional(v.array(hex(56))),
    reqId: v.optional(reqId),
  }),
  /** A browser driver keeps a large put itself and serves it to nodes over WebRTC from its peer id. */
  v.strictObject({
    type: v.literal('put-remote'),
    reqId,
    objectId: hex(56),
    size: v.pipe(v.number(), v.integer(), v.minValue(0)),
    peerId: DriverPeerIdSchema,
    nestedRefs: v.optional(v.array(hex(56))),
  }),
  /** A driver or node wants the bytes of large objects sent to it over this socket. */
  v.strictObject({ type: v.literal('fetch-objects'), objectIds: v.array(hex(56)) }),
  /** A node now holds (or no longer can serve) these objects in its plasma store. */
  v.strictObject({ type: v.literal('objects-stored'), objects: v.array(v.strictObject({ objectId: hex(56), size: v.number() })) }),
  v.strictObject({ type: v.literal('objects-spilled'), objectIds: v.array(hex(56)), spilled: v.boolean(), log: v.optional(v.string()) }),
  v.strictObject({ type: v.literal('upload-failed'), objectId: hex(56), reason: v.string() }),
  /**
   * A node asks which of these jobs share a tenant with `jobId` (a pushed task of `jobId` takes their objects as
   * arguments): the reply's value is the list of those that do. Only a node asks; each pair once.
   */
  v.strictObject({
    type: v.literal('may-use'),
    reqId,
    jobId: hex(8),
    objectJobIds: v.pipe(v.array(hex(8)), v.maxLength(1000)),
  }),
  /** `dropped`: events the sender's bounded buffer let go since its last message (Ray counts them too). */
  v.strictObject({
    type: v.literal('task-events'),
    events: v.pipe(v.array(TaskEventSchema), v.maxLength(MAX_TASK_EVENTS_PER_MESSAGE)),
    dropped: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
  }),
  v.strictObject({ type: v.literal('task-results'), results: v.array(TaskResultSchema) }),
  /** The worker hosting an actor died. `attempt` is the incarnation (its creation's attempt): an older one is stale. */
  v.strictObject({ type: v.literal('actor-died'), actorId: hex(32), attempt: v.number(), reason: v.string() }),
  /**
   * A frame from one of the node's workers (`self.shoal` inside a task): the node carries its workers' control
   * traffic on its own socket, so a worker's messages and the node's task results stay in one order.
   */
  v.strictObject({ type: v.literal('relay-up'), channel: v.pipe(v.string(), v.maxLength(80)), frame: bytes }),
  /** Those workers' channels are gone (the worker stopped or crashed): what they held is let go. */
  v.strictObject({ type: v.literal('relay-close'), channels: v.array(v.pipe(v.string(), v.maxLength(80))) }),
  /**
   * An owner's objects that others can now reach (a ref to them went inside a value, or to a task the coordinator
   * runs): first while pending, then again with the value or error once the task that makes them ends.
   */
  v.strictObject({
    type: v.literal('publish'),
    objects: v.array(v.strictObject({ objectId: hex(56), data: v.optional(bytes), error: v.optional(WireErrorSchema) })),
  }),
  /**
   * An owner wants `count` more worker leases for one shape of task (`shapeId` is its own name for the shape). `head`
   * names a task waiting for one, for the warning if no node can ever fit it.
   */
  v.strictObject({
    type: v.literal('lease-request'),
    shapeId: v.pipe(v.string(), v.maxLength(64)),
    resources: ResourcesSchema,
    strategy: SchedulingStrategySchema,
    preferNode: v.optional(hex(56)),
    count: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)),
    head: v.strictObject({ taskId: hex(48), name: v.string() }),
    /** Leases on volunteer nodes are fine for these tasks (else trusted nodes only). */
    volunteers: v.optional(v.boolean()),
  }),
  /** The owner no longer wants the leases of this shape it asked for and was not granted yet. */
  v.strictObject({ type: v.literal('lease-cancel'), shapeId: v.pipe(v.string(), v.maxLength(64)) }),
  /** The owner is done with these leases: their resources are free again. */
  v.strictObject({ type: v.literal('lease-return'), leaseIds: v.array(hex(32)) }),
  /** A node: the task running under this lease waits in get/wait (its resources are lent meanwhile), or stopped. */
  v.strictObject({ type: v.literal('lease-blocked'), leaseId: hex(32), blocked: v.boolean() }),
  /**
   * A caller wants to call this actor: the coordinator answers with `actor-state` now and at every change of the
   * actor's life (an actor lease for each incarnation that is alive) until the actor is dead.
   */
  v.strictObject({ type: v.literal('actor-lease-request'), actorId: hex(32) }),
  /**
   * A node's donor changed what it gives (the /node page's controls): its CPUs, or paused (running work finishes, no
   * new work is placed there). Only about the sending node itself.
   */
  v.strictObject({
    type: v.literal('node-update'),
    cpus: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_NODE_CPUS))),
    paused: v.optional(v.boolean()),
  }),
  /**
   * The node's donor leaves (Ray's drain-node): no new work; running work finishes (or is handed back at the
   * deadline); objects only this node holds that are still needed are copied to another node; then `drained`.
   */
  v.strictObject({
    type: v.literal('node-drain'),
    deadlineMs: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_DRAIN_DEADLINE_MS)),
  }),
  /** Peer messages for `to`, through the coordinator (no direct channel, or they must stay in order with this socket). */
  v.strictObject({ type: v.literal('peer-send'), to: PeerAddressSchema, msgs: v.pipe(v.array(v.unknown()), v.maxLength(100_000)) }),
])
export type ClientMessage = v.InferOutput<typeof ClientMessageSchema>
export type ClientMessageOf<T extends ClientMessage['type']> = Extract<ClientMessage, { type: T }>

/** What a node receives to run one task attempt. Ref args are already resolved to inline values. */
export interface Assignment {
  taskId: string
  attempt: number
  jobId: string
  type: TaskType
  functionId: string
  name: string
  funcName: string
  args: (Uint8Array | LargeArg)[]
  numReturns: number
  /**
   * What the task holds while it runs, in fixed-point units (sdk/resources.ts): the node starts queued tasks only
   * when its own free resources fit them.
   */
  units: ResourceUnits
  /** The job's namespace, for `self.shoal` inside the task (its channel needs no round trip to learn it). */
  namespace: string
  actorId?: string
  actor?: { className: string; maxConcurrency: number }
  /**
   * A replica of a verified task: every return comes back inline, in all at most this many bytes (the coordinator
   * compares replicas' bytes), and none may hold an ObjectRef (each replica's would differ).
   */
  inlineReturns?: number
}

/** An object became ready: inline bytes, or (large) its size and where it lives; or its error. */
export interface ObjectUpdate {
  objectId: string
  data?: Uint8Array
  size?: number
  locations?: string[]
  error?: WireError
}

/** Every message the coordinator sends. */
/** The coordinator's welcome: answers a hello (see ClientMessage `hello`). */
export interface WelcomeMessage {
  type: 'welcome'
  reqId: number
  jobId?: string
  nodeId?: string
  namespace: string
  peerjsPath: string
  /** STUN/TURN servers for this participant's data channels (TURN with credentials minted for it alone). */
  iceServers: RTCIceServerLike[]
  /** `relay`: every data channel goes through TURN (`shoal start --ice-transport-policy relay`). */
  iceTransportPolicy: IceTransportPolicy
  /** The largest frame the coordinator accepts from this client. */
  maxFrameBytes: number
  /** To a node: the key the coordinator signs its leases with (HMAC-SHA256, hex). */
  leaseKey?: string
  /** The ticket to sign in to the PeerJS signaling server as this connection's peer id (its node id or `peerId`). */
  peerjsKey?: string
}

/** What the coordinator sends to any connection, driver or node. */
export type ToAnyone =
  | WelcomeMessage
  | { type: 'reply'; reqId: number; ok: true; value: unknown }
  | { type: 'reply'; reqId: number; ok: false; error: WireError }
  | { type: 'objects'; objects: ObjectUpdate[] }
  /** A frame or message was refused. `frame` counts binary frames on this channel from 1, as the sender does. */
  | { type: 'error'; error: WireError; frame?: number }
  /** A chunk of a large object: to a driver that fetched it, or to a node asked to store it. */
  | { type: 'object-chunk'; objectId: string; offset: number; total: number; data: Uint8Array }
  /** To a node, or a browser driver serving its puts: send the bytes of this object back as `object-chunk` messages. */
  | { type: 'upload-object'; objectId: string }
  /** To a node (or a browser driver serving its puts): nothing refers to these objects any more; delete them. */
  | { type: 'delete-objects'; objectIds: string[] }
  /** Peer messages from `from`, relayed (the coordinator vouches for `from`). */
  | { type: 'peer-recv'; from: string; msgs: unknown[] }

/** What the coordinator sends only to drivers: owners of tasks and leases, callers of actors. */
export type DriverBound =
  | ToAnyone
  /** Something the driver should know and print once (a task no node can ever fit, as Ray warns). */
  | { type: 'warning'; message: string; taskIds: string[]; shapeId?: string }
  /** To an owner: a lease it asked for. */
  | { type: 'lease-granted'; shapeId: string; lease: Lease }
  /** To an owner: leases of this shape can never be granted (hard affinity to a node that is gone or too small). */
  | { type: 'lease-failed'; shapeId: string; error: WireError }
  /** To an owner: these leases are gone (their node died): what ran under them did not finish. */
  | { type: 'lease-revoked'; leaseIds: string[]; nodeId: string; reason: string }
  /** To an owner: cancel this task of yours (someone else asked, with a ref to its result). */
  | { type: 'cancel-owned'; taskId: string; force: boolean }
  /** To an owner: others wait for these leases' resources; return them once their tasks in flight are done. */
  | { type: 'lease-reclaim'; leaseIds: string[] }
  /**
   * To a caller of an actor (`actorId` as it asked, maybe a getIfExists alias): the actor is alive (with an actor
   * lease to call it under), restarting (calls in flight went with the old incarnation), or dead (why, in `error`).
   */
  | ActorStateMessage

/** What the coordinator sends only to nodes. */
export type NodeBound =
  | ToAnyone
  /** A frame for one of a node's workers (see `relay-up`). */
  | { type: 'relay-down'; channel: string; frame: Uint8Array }
  | { type: 'assign'; tasks: Assignment[]; functions: FunctionDef[] }
  | { type: 'kill-actor'; actorId: string }
  /**
   * The job ended. Its idle workers that own nothing go (Ray kills a finished job's workers, but not one that owns
   * objects still in use); `channels` names workers that own nothing any more, whatever their job.
   */
  | { type: 'retire-workers'; jobId?: string; channels: string[] }
  /** These leases ended (returned, or their owner died: then `kill` stops what still runs under them). */
  | { type: 'lease-ended'; leaseIds: string[]; kill: boolean }
  /** Copy these objects here (pull them from where they are): their only holder is leaving. */
  | { type: 'pull-objects'; objects: LargeArg[] }
  /**
   * The drain this node asked for is done: every object someone needs has another copy (`lost` counts those that could
   * not be copied before the deadline). The coordinator closes the connection next.
   */
  | { type: 'drained'; lost: number }

/** Every message the coordinator sends. */
export type ServerMessage = DriverBound | NodeBound

/** A named actor, as `get-actor` finds it: enough to make a handle (`handleId` counts the handle's lifetime). */
export interface ActorLookup {
  actorId: string
  className: string
  methods: string[]
  handleId?: string
}

/**
 * What an ok reply carries, per request type. `state` answers with the rows of the resource asked (typed per
 * resource by the state API); `hello` is answered by `welcome`, not a reply.
 */
export interface Replies {
  hello: never
  put: null
  'put-remote': null
  'object-chunk': null
  free: null
  cancel: null
  'kill-actor': null
  'get-actor': ActorLookup
  state: unknown
  'may-use': string[]
}
/** A client message that asks for a reply (it carries a `reqId`; `object-chunk` does on a put's last chunk). */
export type RequestMessage = Extract<ClientMessage, { type: keyof Replies }>
export type ReplyTo<M extends RequestMessage> = Replies[M['type']]

export type ActorStateMessage =
  | { type: 'actor-state'; actorId: string; state: 'ALIVE'; lease: Lease; maxTaskRetries: number }
  | { type: 'actor-state'; actorId: string; state: 'RESTARTING'; reason: string; maxTaskRetries: number }
  | { type: 'actor-state'; actorId: string; state: 'DEAD'; error: WireError }

/** RTCConfiguration's iceTransportPolicy. */
export type IceTransportPolicy = 'all' | 'relay'

export interface RTCIceServerLike {
  urls: string | string[]
  username?: string
  credential?: string
}
