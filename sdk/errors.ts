/**
 * Shoal's errors. Each has a stable `code` and a `name` equal to its class name; across a worker, socket or data
 * channel they travel as a {@link WireError} and are rebuilt by `code` (never by `instanceof` across realms).
 */
export type ErrorCode =
  | 'TASK_ERROR'
  | 'GET_TIMEOUT'
  | 'OBJECT_LOST'
  | 'ACTOR_DIED'
  | 'TASK_CANCELLED'
  | 'CONNECTION'
  | 'VALIDATION'
  | 'OBJECT_STORE_FULL'
  | 'NODE_DIED'
  | 'WORKER_CRASHED'
  | 'OBJECT_FREED'
  | 'TASK_UNSCHEDULABLE'
  | 'ACTOR_UNSCHEDULABLE'
  | 'OWNER_DIED'
  | 'PROTOCOL'
  | 'VERIFICATION'

/** An error as it crosses a boundary. `data` holds the class's own fields. */
export interface WireError {
  name: string
  code: ErrorCode | string
  message: string
  stack?: string
  data?: Record<string, unknown>
}

/** Base class of every Shoal error. */
export class ShoalError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
  override name = 'ShoalError'
  /** Fields beyond name/code/message that must survive the wire. */
  protected wireData(): Record<string, unknown> | undefined {
    return undefined
  }
  /**
   * The error as it crosses a boundary. No stack: where a system error was raised (the coordinator, a node) is not
   * the receiver's business, and a server's paths are not for its clients (docs/trust.md). A task's own error keeps the
   * remote stack in its data (TaskError).
   */
  toWire(): WireError {
    const data = this.wireData()
    return { name: this.name, code: this.code, message: this.message, ...(data && { data }) }
  }
}

/**
 * A task or actor method threw. Carries the remote error's name, message and stack, and as `cause` the remote error
 * itself, rebuilt with its own fields (`e.code`, `e.field`…), as Ray's `RayTaskError.cause`.
 */
export class TaskError extends ShoalError {
  override readonly name = 'TaskError'
  /** The error the task threw, rebuilt here: its name, message, stack and own enumerable fields. */
  declare readonly cause: Error
  constructor(
    readonly taskName: string,
    readonly taskId: string,
    readonly remoteName: string,
    readonly remoteMessage: string,
    readonly remoteStack: string | undefined,
    /** The remote error's own fields, encoded as a value (the coordinator never decodes it). */
    readonly remoteFields?: Uint8Array,
  ) {
    super('TASK_ERROR', `Task '${taskName}' (${taskId}) failed: ${remoteName}: ${remoteMessage}`, {
      cause: rebuildCause(remoteName, remoteMessage, remoteStack, remoteFields),
    })
    if (remoteStack) this.stack = `${this.name}: ${this.message}\n--- remote stack ---\n${remoteStack}`
  }
  protected override wireData() {
    const { taskName, taskId, remoteName, remoteMessage, remoteStack, remoteFields } = this
    return { taskName, taskId, remoteName, remoteMessage, remoteStack, ...(remoteFields && { remoteFields }) }
  }
}

/** The key under which a cause's fields that could not cross a process are described (see `encodeErrorFields`). */
export const UNSERIALIZABLE_FIELDS = '(fields that are not serializable)'

/** How TaskError decodes the remote fields; set by the codec module so this one needs no codec (no cycle). */
let decodeFields: ((bytes: Uint8Array) => unknown) | undefined
export function setErrorFieldDecoder(decode: (bytes: Uint8Array) => unknown): void {
  decodeFields = decode
}

function rebuildCause(name: string, message: string, stack: string | undefined, fields: Uint8Array | undefined): Error {
  const cause = new Error(message)
  cause.name = name
  cause.stack = stack ?? `${name}: ${message}`
  if (fields && decodeFields) {
    try {
      const own = decodeFields(fields) as Record<string, unknown> | undefined
      const left = own?.[UNSERIALIZABLE_FIELDS]
      if (own && typeof own === 'object') {
        delete own[UNSERIALIZABLE_FIELDS]
        Object.assign(cause, own)
      }
      if (typeof left === 'string') cause.message = `${message} (fields left out because they aren't serializable: ${left})`
    } catch {
      // fields that cannot be decoded here are left out: the name, message and stack still say what happened
    }
  }
  return cause
}

/** `get` did not see the value within its timeout. The task keeps running. */
export class GetTimeoutError extends ShoalError {
  override readonly name = 'GetTimeoutError'
  constructor(
    readonly timeoutMs: number,
    readonly pending: number,
    /** Why some of them may never be ready (a task no node can fit), when the driver knows. */
    why?: string,
  ) {
    super('GET_TIMEOUT', `get timed out after ${timeoutMs} ms with ${pending} object(s) not ready${why ? `: ${why}` : ''}`)
  }
  protected override wireData() {
    return { timeoutMs: this.timeoutMs, pending: this.pending }
  }
}

/** Every copy of an object is gone and it cannot be rebuilt (or, as its subclass ObjectFreedError, it was freed). */
export class ObjectLostError extends ShoalError {
  override readonly name: string = 'ObjectLostError'
  constructor(
    readonly objectId: string,
    reason: string,
    code: 'OBJECT_LOST' | 'OBJECT_FREED' | 'OWNER_DIED' = 'OBJECT_LOST',
  ) {
    super(code, `Object ${objectId} is lost: ${reason}`)
  }
  protected override wireData() {
    return { objectId: this.objectId }
  }
}

/**
 * The object's owner (the driver or the task's worker that made it) died: as in Ray, an object shares its owner's
 * fate, even while others still hold refs to it. Ray's OwnerDiedError.
 */
export class OwnerDiedError extends ObjectLostError {
  override readonly name = 'OwnerDiedError'
  constructor(objectId: string, owner = 'its owner') {
    super(objectId, `${owner} died (an object shares the fate of the driver or task worker that made it)`, 'OWNER_DIED')
  }
}

/** The actor is dead (killed, its job ended, or its node died with no restarts left). */
export class ActorDiedError extends ShoalError {
  override readonly name = 'ActorDiedError'
  constructor(
    readonly actorId: string,
    reason: string,
  ) {
    super('ACTOR_DIED', `Actor ${actorId} died: ${reason}`)
  }
  protected override wireData() {
    return { actorId: this.actorId }
  }
}

/** The task was cancelled with `cancel` or because its job ended. */
export class TaskCancelledError extends ShoalError {
  override readonly name = 'TaskCancelledError'
  constructor(
    readonly taskId: string,
    reason = 'cancelled',
  ) {
    super('TASK_CANCELLED', `Task ${taskId} was ${reason}`)
  }
  protected override wireData() {
    return { taskId: this.taskId }
  }
}

/** The node running a task died and the task has no retries left. Names the lost node. */
export class NodeDiedError extends ShoalError {
  override readonly name = 'NodeDiedError'
  constructor(
    readonly nodeId: string,
    readonly taskId: string,
    attempts: number,
  ) {
    super('NODE_DIED', `Task ${taskId} failed: node ${nodeId} died (after ${attempts} attempt(s); no retries left)`)
  }
  protected override wireData() {
    return { nodeId: this.nodeId, taskId: this.taskId }
  }
}

/**
 * The worker running a task died mid-task (it called `self.close()`, ran out of memory, or crashed): a system
 * failure, retried within `maxRetries` like a node death. Ray's WorkerCrashedError.
 */
export class WorkerCrashedError extends ShoalError {
  override readonly name = 'WorkerCrashedError'
  constructor(
    readonly taskId: string,
    reason: string,
  ) {
    super('WORKER_CRASHED', `The worker running task ${taskId} died: ${reason}`)
  }
  protected override wireData() {
    return { taskId: this.taskId }
  }
}

/** The object was deleted on purpose with `mesh.free()`. Ray's ObjectFreedError. */
export class ObjectFreedError extends ObjectLostError {
  override readonly name = 'ObjectFreedError'
  constructor(objectId: string) {
    super(objectId, 'it was freed with mesh.free()', 'OBJECT_FREED')
  }
}

/**
 * The task can never be placed: its hard node affinity names a node that is gone, or one that can never fit it.
 * Ray's TaskUnschedulableError. (A task no *current* node fits waits for one instead, with a warning.)
 */
export class TaskUnschedulableError extends ShoalError {
  override readonly name: string = 'TaskUnschedulableError'
  constructor(
    readonly taskId: string,
    reason: string,
    code: 'TASK_UNSCHEDULABLE' | 'ACTOR_UNSCHEDULABLE' = 'TASK_UNSCHEDULABLE',
  ) {
    super(code, `Task ${taskId} cannot be scheduled: ${reason}`)
  }
  protected override wireData() {
    return { taskId: this.taskId }
  }
}

/** The actor can never be placed (see TaskUnschedulableError). Ray's ActorUnschedulableError. */
export class ActorUnschedulableError extends TaskUnschedulableError {
  override readonly name = 'ActorUnschedulableError'
  constructor(taskId: string, reason: string) {
    super(taskId, reason, 'ACTOR_UNSCHEDULABLE')
    this.message = `The actor created by task ${taskId} cannot be scheduled: ${reason}`
  }
}

/** One outcome of a verified task and the nodes that returned it (`digest`: the first bytes of its SHA-256, hex). */
export interface VerificationGroup {
  digest: string
  nodes: string[]
}

/**
 * A task run with `verify: { replicas: N }` got no result it could trust: its replicas disagreed and no outcome won a
 * strict majority within `maxRetries` more replicas (or too few replicas finished to compare). `groups` names which
 * nodes returned which outcome. Nothing any replica returned is given to the caller.
 */
export class VerificationError extends ShoalError {
  override readonly name = 'VerificationError'
  constructor(
    readonly taskId: string,
    reason: string,
    readonly groups: VerificationGroup[] = [],
  ) {
    const who = groups.map((g) => `${g.digest}: ${g.nodes.join(', ')}`).join('; ')
    super('VERIFICATION', `Task ${taskId} could not be verified: ${reason}${who ? ` (results by node: ${who})` : ''}`)
  }
  protected override wireData() {
    return { taskId: this.taskId, groups: this.groups }
  }
}

/** No coordinator answered, the token was refused, or the connection dropped. */
export class ConnectionError extends ShoalError {
  override readonly name = 'ConnectionError'
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONNECTION', message, options)
  }
}

/** A bad option, argument or message. Names what is wrong; nothing changed. */
export class ValidationError extends ShoalError {
  override readonly name = 'ValidationError'
  constructor(message: string) {
    super('VALIDATION', message)
  }

  /** A task returned another number of values than its `numReturns` (its owner and the coordinator both check). */
  static returnCount(taskName: string, returned: number, numReturns: number): ValidationError {
    return new ValidationError(`task ${taskName} returned ${returned} value(s) but numReturns is ${numReturns}`)
  }
}

/** The object store and its spill space are both full. */
export class ObjectStoreFullError extends ShoalError {
  override readonly name = 'ObjectStoreFullError'
  constructor(message: string) {
    super('OBJECT_STORE_FULL', message)
  }
}

/** The peer broke the wire protocol (malformed or oversized frame). */
export class ProtocolError extends ShoalError {
  override readonly name = 'ProtocolError'
  constructor(message: string) {
    super('PROTOCOL', message)
  }
}

/**
 * Ray's ErrorType for each of our error codes, as the state API reports it (`errorType`; our class is `errorName`).
 */
export function rayErrorType(code: string): string {
  switch (code) {
    case 'TASK_ERROR':
      return 'TASK_EXECUTION_EXCEPTION'
    case 'TASK_CANCELLED':
      return 'TASK_CANCELLED'
    case 'ACTOR_DIED':
      return 'ACTOR_DIED'
    case 'NODE_DIED':
      return 'NODE_DIED'
    case 'WORKER_CRASHED':
      return 'WORKER_DIED'
    case 'OBJECT_LOST':
      return 'OBJECT_LOST'
    case 'OBJECT_FREED':
      return 'OBJECT_FREED'
    case 'OWNER_DIED':
      return 'OWNER_DIED'
    case 'OBJECT_STORE_FULL':
      return 'OUT_OF_MEMORY'
    case 'TASK_UNSCHEDULABLE':
      return 'TASK_UNSCHEDULABLE_ERROR'
    case 'ACTOR_UNSCHEDULABLE':
      return 'ACTOR_UNSCHEDULABLE_ERROR'
    default:
      return 'TASK_EXECUTION_EXCEPTION'
  }
}

/** Turns any thrown value into a WireError, keeping a user error's own name and stack. */
export function toWireError(err: unknown): WireError {
  if (err instanceof ShoalError) return err.toWire()
  if (err instanceof Error) return { name: err.name, code: 'TASK_ERROR', message: err.message, stack: err.stack }
  return { name: 'Error', code: 'TASK_ERROR', message: typeof err === 'string' ? err : safeString(err) }
}

function safeString(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return String(v)
  }
}

/** Rebuilds a Shoal error from the wire by its code. */
export function fromWireError(w: WireError): ShoalError {
  const d = (w.data ?? {}) as Record<string, never>
  let err: ShoalError
  switch (w.code) {
    case 'TASK_ERROR':
      err = new TaskError(
        d.taskName ?? '?',
        d.taskId ?? '?',
        d.remoteName ?? w.name,
        d.remoteMessage ?? w.message,
        d.remoteStack ?? w.stack,
        d.remoteFields,
      )
      return err
    case 'GET_TIMEOUT':
      err = new GetTimeoutError(d.timeoutMs ?? 0, d.pending ?? 0)
      break
    case 'OBJECT_LOST':
      err = new ObjectLostError(d.objectId ?? '?', '')
      break
    case 'ACTOR_DIED':
      err = new ActorDiedError(d.actorId ?? '?', '')
      break
    case 'TASK_CANCELLED':
      err = new TaskCancelledError(d.taskId ?? '?')
      break
    case 'NODE_DIED':
      err = new NodeDiedError(d.nodeId ?? '?', d.taskId ?? '?', 0)
      break
    case 'WORKER_CRASHED':
      err = new WorkerCrashedError(d.taskId ?? '?', '')
      break
    case 'OBJECT_FREED':
      err = new ObjectFreedError(d.objectId ?? '?')
      break
    case 'OWNER_DIED':
      err = new OwnerDiedError(d.objectId ?? '?')
      break
    case 'TASK_UNSCHEDULABLE':
      err = new TaskUnschedulableError(d.taskId ?? '?', '')
      break
    case 'ACTOR_UNSCHEDULABLE':
      err = new ActorUnschedulableError(d.taskId ?? '?', '')
      break
    case 'CONNECTION':
      err = new ConnectionError(w.message)
      break
    case 'OBJECT_STORE_FULL':
      err = new ObjectStoreFullError(w.message)
      break
    case 'PROTOCOL':
      err = new ProtocolError(w.message)
      break
    case 'VERIFICATION':
      err = new VerificationError(d.taskId ?? '?', '', Array.isArray(d.groups) ? d.groups : [])
      break
    default:
      err = new ValidationError(w.message)
  }
  // The message was composed where the error happened; keep it verbatim.
  err.message = w.message
  if (w.stack) err.stack = w.stack
  return err
}
