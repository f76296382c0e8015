import type { ActorSubmitter } from './actor-handle.ts'
import { encodeValue } from './codec.ts'
import { ValidationError, type WireError } from './errors.ts'
import {
  type ActorId,
  type FunctionId,
  functionIdOf,
  type JobId,
  newActorId,
  newPutObjectId,
  newTaskId,
  type ObjectId,
  objectIdOf,
  type TaskId,
} from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import {
  type ClientMessage,
  type FunctionDef,
  INLINE_OBJECT_MAX_BYTES,
  type PeerMessage,
  type Resources,
  type TaskArg,
  type TaskSpec,
} from './protocol/index.ts'
import type { RemoteFunctionSubmitter } from './remote-function.ts'
import { batchBytesFor, sizeOfValues, TurnBatch } from './turn-batch.ts'

/** Marks a function registration in a frame's manifest (see manifestOf). */
export const FUNCTION_MARK = 'fn:'
/**
 * A task pushed through the coordinator is its bare id in a frame's manifest (see manifestOf): 48 characters, which
 * no object id (56) nor marked function has. A relayed million-task run keeps a million of these for a while; a
 * marked copy of each id was 40 bytes more per task.
 */
export const isTaskMark = (id: string): boolean => id.length === 48
/** Room for a task's ids, names and options beside its arguments in one frame. */
const TASK_FRAME_OVERHEAD = 4096
/** An actor call's resources (it runs in its actor's): one shared map, so a loop of calls shares one template. */
const NO_RESOURCES: Resources = Object.freeze({})
/** A submit message holds at most this many tasks (and a share of the frame limit: see batchBytesFor). */
const SUBMIT_MAX_TASKS = 2000

/** What the submitter needs from its connection. */
export interface SubmitChannel {
  readonly jobId: JobId
  readonly namespace: string
  send(msg: ClientMessage): void
  /** Throws ConnectionError if the connection is closed. */
  assertOpen(): void
  /** A ref to an object this connection makes (counted by the reference counter). */
  own<T>(id: ObjectId): ObjectRef<T>
  /** The returns of a task are expected here (from its node, or from the coordinator for an actor's). */
  expect(id: ObjectId): void
  /**
   * A task this connection owns and sends to nodes itself (see OwnedTasks); `rejected` fails it at once; `keepAlive`
   * lives while it is pending.
   */
  submitOwned(spec: TaskSpec, rejected?: WireError, keepAlive?: readonly ObjectId[]): void
  /** These objects' refs leave this connection (inside a value, or to a task the coordinator runs): see Mesh.escape. */
  escape(ids: readonly ObjectId[]): void
  /** These objects are in the coordinator's directory (returns of the tasks it runs). */
  inDirectory(ids: readonly ObjectId[]): void
  /** Stores a large by-value argument once and gives its ref (Ray puts arguments over 100 KiB). */
  putArgument(data: Uint8Array, nested: ObjectId[]): ObjectRef
  /** The task submitting, when this connection belongs to a running task. */
  parentTaskId(): string | undefined
  /** The largest frame the coordinator accepts (submits are cut well under it). */
  maxFrameBytes(): number
}

/**
 * Turns `.remote()` calls into task specs: makes the task id and return refs locally, so a call never waits. A normal
 * task goes to this connection's own table of owned tasks (it owns it, and pushes it to a leased node); actor creations and
 * actor calls go to the coordinator in batches at the end of the turn — cut by count and by size, so a loop of a
 * million calls never makes a frame the coordinator must refuse.
 */
export class TaskSubmitter implements RemoteFunctionSubmitter, Pick<ActorSubmitter, 'createActor' | 'submitActorTask'> {
  /** Functions and classes made remote on this connection, by id: sources go to nodes with the first push. */
  private functions = new Map<FunctionId, FunctionDef>()
  private idsBySource = new Map<string, FunctionId>()
  /** Classes and functions registered with the coordinator (it places actors and verified tasks). */
  private registered = new Set<FunctionId>()
  private readonly specs = new TurnBatch<TaskSpec>((tasks) => this.channel.send({ type: 'submit', tasks }), {
    maxItems: SUBMIT_MAX_TASKS,
    maxBytes: () => batchBytesFor(this.channel.maxFrameBytes()),
    sizeOf: (spec) => sizeOfValues(spec.args.map((a) => ('v' in a ? a.v : undefined))),
  })
  /** Large by-value arguments already put, by identity: the ref lives as long as the value does. */
  private autoPuts = new WeakMap<object, ObjectRef>()

  constructor(private readonly channel: SubmitChannel) {}

  /**
   * What a message would make: its tasks' return ids, the tasks it pushes (their ids: see isTaskMark), or (as
   * `fn:<id>`) the functions it registers. The transport
   * keeps this per frame, so a refused frame fails those refs and forgets those registrations.
   */
  static manifestOf(msg: ClientMessage): readonly string[] | undefined {
    if (msg.type === 'register-functions') return msg.functions.map((f) => `${FUNCTION_MARK}${f.functionId}`)
    if (msg.type === 'peer-send') return (msg.msgs as PeerMessage[]).flatMap((m) => (m.type === 'push' ? m.tasks.map((t) => t.taskId) : []))
    if (msg.type !== 'submit') return undefined
    const ids: string[] = []
    for (const t of msg.tasks as TaskSpec[]) for (let i = 1; i <= t.numReturns; i++) ids.push(objectIdOf(t.taskId as TaskId, i))
    return ids
  }

  /** A registration the coordinator refused: the next task of that function registers it again. */
  forgetFunction(functionId: string): void {
    this.registered.delete(functionId as FunctionId)
  }

  /** The source of a function or class made remote here. */
  functionDef(functionId: string): FunctionDef | undefined {
    return this.functions.get(functionId as FunctionId)
  }

  submitTask(
    fn: { source: string; name: string; kind: 'function' },
    args: unknown[],
    s: Parameters<RemoteFunctionSubmitter['submitTask']>[2],
  ): ObjectRef[] {
    this.channel.assertOpen()
    const functionId = this.defineFunction(fn.source, fn.name, 'function')
    const nested: ObjectId[] = []
    const spec: TaskSpec = {
      taskId: newTaskId(this.channel.jobId),
      type: 'NORMAL_TASK',
      functionId,
      name: s.name,
      funcName: fn.name,
      args: this.encodeArgs(args, fn.name, nested),
      numReturns: s.numReturns,
      resources: s.resources,
      maxRetries: s.maxRetries,
      retryExceptions: s.retryExceptions,
      strategy: s.strategy,
      ...(s.volunteers && { volunteers: true }),
      ...(nested.length && { nestedRefs: nested }),
    }
    if (!s.verify) return this.own(spec)
    // A verified task is placed by the coordinator, which alone can compare its replicas' results honestly.
    spec.verify = s.verify
    this.register(functionId)
    return this.enqueue(spec)
  }

  /** A normal task or an actor call: owned here. Refs nested in its arguments leave this connection with it. */
  private own(spec: TaskSpec, keepAlive?: readonly ObjectId[]): ObjectRef[] {
    const refs = this.returnsOf(spec)
    if (spec.nestedRefs?.length) this.channel.escape(spec.nestedRefs as ObjectId[])
    // Each inline argument is at most 100 KiB (larger ones were put), but together they may not fit any frame.
    const bytes = sizeOfValues(spec.args.map((a) => ('v' in a ? a.v : undefined)))
    const limit = this.channel.maxFrameBytes()
    const tooBig =
      bytes > limit - TASK_FRAME_OVERHEAD
        ? new ValidationError(
            `task ${spec.name} (${spec.taskId}) was not submitted: its arguments are ${bytes} bytes in one message, over the coordinator's ${limit}-byte limit: pass large values with put()`,
          ).toWire()
        : undefined
    this.channel.submitOwned(spec, tooBig, keepAlive)
    return refs
  }

  createActor(cls: { source: string; name: string }, args: unknown[], s: Parameters<ActorSubmitter['createActor']>[2]) {
    this.channel.assertOpen()
    const functionId = this.defineFunction(cls.source, cls.name, 'class')
    this.register(functionId)
    const actorId = newActorId(this.channel.jobId)
    const nested: ObjectId[] = []
    const [ready] = this.enqueue({
      taskId: newTaskId(this.channel.jobId),
      type: 'ACTOR_CREATION_TASK',
      functionId,
      name: `${cls.name}.__init__`,
      funcName: `${cls.name}.__init__`,
      args: this.encodeArgs(args, `${cls.name} constructor`, nested),
      numReturns: 1,
      resources: s.resources,
      maxRetries: 0,
      retryExceptions: false,
      strategy: s.strategy,
      ...(s.volunteers && { volunteers: true }),
      actorId,
      actor: s.actor,
      ...(nested.length && { nestedRefs: nested }),
    })
    return { actorId, ready: ready as ObjectRef<null> }
  }

  /**
   * An actor call: owned here, and sent by this connection straight to the actor's node (see ActorCallSubmitter). The
   * actor's handle object lives while the call is pending, so the actor cannot end under it.
   */
  submitActorTask(
    actorId: ActorId,
    className: string,
    method: string,
    args: unknown[],
    numReturns: number,
    handleId?: ObjectId,
  ): ObjectRef[] {
    this.channel.assertOpen()
    const nested: ObjectId[] = []
    return this.own(
      {
        taskId: newTaskId(this.channel.jobId),
        type: 'ACTOR_TASK',
        functionId: '',
        name: `${className}.${method}`,
        funcName: `${className}.${method}`,
        args: this.encodeArgs(args, `${className}.${method}`, nested),
        numReturns,
        resources: NO_RESOURCES,
        maxRetries: 0,
        retryExceptions: false,
        strategy: 'DEFAULT',
        actorId,
        method,
        ...(nested.length && { nestedRefs: nested }),
      },
      handleId && [handleId],
    )
  }

  /** A new object id for a `put` of this job. */
  newPutId(): ObjectId {
    return newPutObjectId(this.channel.jobId)
  }

  /** Sends the specs queued so far now (before a message that must come after them: a request, a registration). */
  flush(): void {
    this.specs.flush()
  }

  /**
   * Encodes top-level arguments: refs stay refs (the task waits for them), small values travel inline, and a value
   * over 100 KiB is put in the object store and passed by ref (as Ray does), once per identical value.
   */
  private encodeArgs(args: unknown[], what: string, nestedRefs: ObjectId[]): TaskArg[] {
    return args.map((a, i) => {
      if (a instanceof ObjectRef) return { ref: a.id }
      const nested: ObjectId[] = []
      const v = encodeValue(a, `argument ${i} of ${what}`, nested)
      if (v.byteLength > INLINE_OBJECT_MAX_BYTES) return { ref: this.autoPut(a, v, nested).id }
      nestedRefs.push(...nested)
      return { v }
    })
  }

  private autoPut(value: unknown, data: Uint8Array, nested: ObjectId[]): ObjectRef {
    const key = typeof value === 'object' && value !== null ? value : undefined
    const cached = key && this.autoPuts.get(key)
    if (cached) return cached
    this.flush() // specs queued before the put must not wait behind it
    const ref = this.channel.putArgument(data, nested)
    if (key) this.autoPuts.set(key, ref)
    return ref
  }

  /**
   * An actor creation or a verified task: the coordinator places it, so every ref it takes (top-level or nested)
   * must be known there first (the publish goes out before the submit, on the same socket).
   */
  private enqueue(spec: TaskSpec): ObjectRef[] {
    const refs = this.returnsOf(spec)
    // The coordinator runs it: its returns are in its directory from the start (their releases go there).
    this.channel.inDirectory(refs.map((r) => r.id))
    const taken = [...spec.args.flatMap((a) => ('ref' in a ? [a.ref as ObjectId] : [])), ...((spec.nestedRefs ?? []) as ObjectId[])]
    if (taken.length) this.channel.escape(taken)
    this.specs.push(spec)
    return refs
  }

  private returnsOf(spec: TaskSpec): ObjectRef[] {
    const parent = this.channel.parentTaskId()
    if (parent) spec.parentTaskId = parent
    const refs: ObjectRef[] = []
    for (let i = 1; i <= spec.numReturns; i++) {
      const id = objectIdOf(spec.taskId as TaskId, i)
      this.channel.expect(id)
      refs.push(this.channel.own(id))
    }
    return refs
  }

  private defineFunction(source: string, name: string, kind: 'function' | 'class'): FunctionId {
    // Hashed once per source: every task of a function then shares one id string (not one copy each).
    let functionId = this.idsBySource.get(source)
    if (functionId) return functionId
    functionId = functionIdOf(source)
    this.idsBySource.set(source, functionId)
    if (!this.functions.has(functionId)) this.functions.set(functionId, { functionId, name, kind, source })
    return functionId
  }

  /** The coordinator places actors and verified tasks: it needs their class or function, once per connection. */
  private register(functionId: FunctionId): void {
    if (this.registered.has(functionId)) return
    const def = this.functions.get(functionId) as FunctionDef
    this.registered.add(functionId)
    this.flush() // specs queued before this registration must not wait behind it, nor overtake it
    this.channel.send({ type: 'register-functions', functions: [def] })
  }
}

/** Encodes a value for a put, or throws naming what cannot be serialized. */
export function encodePut(value: unknown, nested: ObjectId[]): Uint8Array {
  if (value instanceof ObjectRef) throw new ValidationError('put: the value is already an ObjectRef; pass it directly')
  return encodeValue(value, 'the value given to put', nested)
}
