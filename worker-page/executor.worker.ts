/// <reference lib="webworker" />
/**
 * A worker process: runs tasks one at a time, or hosts exactly one actor. User code runs only here — never on the
 * page's main thread, never on the coordinator. Values arrive and leave encoded, so the page never decodes them.
 */
import * as Comlink from 'comlink'
import type { IDBPDatabase } from 'idb'
import { decodeValue, encodeErrorFields, encodeValue } from '../sdk/codec.ts'
import {
  ObjectLostError,
  ObjectStoreFullError,
  ShoalError,
  TaskError,
  toWireError,
  ValidationError,
  type WireError,
} from '../sdk/errors.ts'
import { type JobId, type ObjectId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { Mesh } from '../sdk/mesh.ts'
import { taskConnectionAddress, workerChannelOf } from '../sdk/peer-address.ts'
import {
  type ActorCall,
  type BatchItem,
  type ExecArg,
  type ExecResult,
  type ExecTask,
  type ExecutorApi,
  type ExecutorContext,
  type FunctionTask,
  INLINE_OBJECT_MAX_BYTES,
  type PageToWorker,
  PROTOCOL_VERSION,
  type RuntimeContext,
  type WorkerToPage,
} from '../sdk/protocol/index.ts'
import { openPlasma, readObject, writeObject } from './object-store/plasma-db.ts'
import { WorkerChannel } from './worker-channel.ts'

/** How often a running batch sends the results it has so far (ms). */
const BATCH_FLUSH_MS = 4

/** Inline return values of one result add up to at most this; the rest go to the plasma store, as large ones do. */
const INLINE_RESULT_MAX_BYTES = 1024 * 1024

/** esbuild (tsx, Vite) may wrap inner functions in `__name(fn, "x")`: the helper must exist where the source is compiled. */
const PRELUDE = 'const __name = (f) => f;'
const compiled = new Map<string, unknown>()
/** `self.shoal` per job (a worker serves one job at a time; an actor's worker one job for its life). */
const meshes = new Map<string, { mesh: Mesh; channel: WorkerChannel }>()
let ctx: ExecutorContext | undefined
let reserveRoom: ((bytes: number) => Promise<void>) | undefined
let reportBlocked: ((taskId: string, blocked: boolean) => void) | undefined
let actor: { instance: Record<string, unknown>; className: string; maxConcurrency: number } | undefined

function compile(source: string, name: string): unknown {
  const key = source
  let fn = compiled.get(key)
  if (fn) return fn
  try {
    fn = new Function(`${PRELUDE} return (${source})`)()
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e
    // Method shorthand (`work(x) { … }` taken from an object literal) is not an expression on its own.
    fn = new Function(`${PRELUDE} return ({ ${source} })[${JSON.stringify(name)}]`)()
  }
  compiled.set(key, fn)
  return fn
}

/**
 * `self.shoal`: the SDK bound to the job of the task running now, so tasks can submit tasks and call actors. Its
 * channel rides on the node's socket and opens on first use.
 */
function meshFor(t: ExecTask): { mesh: Mesh; channel: WorkerChannel } {
  let m = meshes.get(t.jobId)
  if (!m) {
    const c = ctx as ExecutorContext
    const channel = new WorkerChannel(workerChannelOf(c.workerId, t.jobId), {
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'driver',
      attachJob: t.jobId,
      ...(t.actorId && { actorId: t.actorId }),
    })
    channel.maxFrameBytes = c.maxFrameBytes
    // Its peer messages (tasks it submits, their results) go through the coordinator, which knows this channel.
    const mesh = new Mesh(channel, c.address, t.jobId as JobId, t.namespace, {
      peerAddress: taskConnectionAddress(c.nodeId, channel.channel),
      relayOnly: true,
    })
    m = { mesh, channel }
    meshes.set(t.jobId, m)
  }
  ;(self as unknown as { shoal: Mesh }).shoal = m.mesh
  return m
}

/** Large arguments are read straight from the node's IndexedDB plasma store: they never pass through the page. */
async function decodeArgs(args: ExecArg[], mesh: Mesh): Promise<unknown[]> {
  // Refs and actor handles inside the arguments belong to the task's connection (`self.shoal`).
  const bind = mesh.decodeCtx
  const db = args.some((a) => !(a instanceof Uint8Array)) ? await openPlasma((ctx as ExecutorContext).nodeId) : undefined
  const out: unknown[] = []
  for (const a of args) {
    if (a instanceof Uint8Array) out.push(decodeValue(a, bind))
    else {
      const bytes = await readObject(db as IDBPDatabase, a.plasma)
      if (!bytes) throw new ObjectLostError(a.plasma, 'it vanished from this node\u2019s store before the task read it')
      out.push(decodeValue(bytes, bind))
    }
  }
  return out
}

/** Small returns travel inline; a large one is written to the node's plasma store here and reported by size. */
async function encodeReturns(
  value: unknown,
  t: ExecTask,
): Promise<{ returns: (Uint8Array | { stored: number; bytes?: Uint8Array })[]; nestedRefs: string[] }> {
  // numReturns 0 (Ray's num_returns=0): the task ran for its effects; its value is dropped.
  let values: unknown[] = t.numReturns === 0 ? [] : [value]
  if (t.numReturns > 1) {
    if (!Array.isArray(value) || value.length !== t.numReturns)
      throw new ValidationError(
        `${t.name} has numReturns ${t.numReturns} but returned ${Array.isArray(value) ? `an array of ${value.length}` : typeof value}`,
      )
    values = value
  }
  const nestedRefs: ObjectId[] = []
  const returns: (Uint8Array | { stored: number; bytes?: Uint8Array })[] = []
  let inline = 0
  for (let i = 0; i < values.length; i++) {
    const what = t.numReturns > 1 ? `return value ${i} of ${t.name}` : `the return value of ${t.name}`
    // A copy of its own: the encoder's buffer is shared with the next value, and this one's is moved to the page.
    const bytes = encodeValue(values[i], what, nestedRefs).slice()
    if (t.inlineReturns !== undefined) {
      inline += bytes.byteLength
      verifiedReturnProblem(t, inline, nestedRefs)
      returns.push(bytes)
      continue
    }
    // Small values travel inline, up to a total per result that keeps it well inside a frame (numReturns: 1000).
    if (bytes.byteLength <= INLINE_OBJECT_MAX_BYTES && inline + bytes.byteLength <= INLINE_RESULT_MAX_BYTES) {
      inline += bytes.byteLength
      returns.push(bytes)
      continue
    }
    const c = ctx as ExecutorContext
    if (bytes.byteLength > c.storeCapacity)
      throw new ObjectStoreFullError(
        `${t.name} returned ${bytes.byteLength} bytes, more than this node's object store holds (${c.storeCapacity})`,
      )
    // The page makes room (spilling if needed) before the write, so the store never goes over capacity.
    await (reserveRoom as (n: number) => Promise<void>)(bytes.byteLength)
    await writeObject(await openPlasma(c.nodeId), objectIdOf(t.taskId as TaskId, i + 1), bytes)
    // Also handed to the page (moved, not copied): it stays hot in the store's memory tier.
    returns.push({ stored: bytes.byteLength, bytes })
  }
  return { returns, nestedRefs }
}

/** A verified task's returns are compared byte by byte at the coordinator: they must travel there, and mean the same. */
function verifiedReturnProblem(t: ExecTask, bytes: number, nestedRefs: readonly string[]): void {
  const max = t.inlineReturns as number
  if (bytes > max)
    throw new ValidationError(
      `${t.name} is verified (verify.replicas) and returned over ${max} bytes; verified returns travel to the coordinator to be compared: return less, or a digest of it`,
    )
  if (nestedRefs.length)
    throw new ValidationError(
      `${t.name} is verified (verify.replicas) and returned an ObjectRef: each replica's refs would differ, so nothing could be compared; return plain values`,
    )
}

/**
 * What a failure reports. An error from Shoal itself that the task let escape (a nested `get` that raised
 * TaskCancelledError, ActorDiedError…) keeps its class, as Ray's `RayTaskError(TaskCancelledError)` is an instance
 * of TaskCancelledError; anything else the user's code threw becomes a TaskError whose `cause` keeps its fields.
 */
function failureOf(e: unknown, t: ExecTask, keepShoalErrors: boolean): WireError {
  if (e instanceof ShoalError && keepShoalErrors) return e.toWire()
  if (e instanceof ObjectStoreFullError) return e.toWire()
  const err = e instanceof Error ? e : undefined
  const name = err?.name ?? 'Error'
  const message = err ? err.message : typeof e === 'string' ? e : toWireError(e).message
  return new TaskError(t.name, t.taskId, name, message, err?.stack, encodeErrorFields(e)).toWire()
}

/**
 * Runs one task or actor call: decodes its arguments, runs `body`, encodes the result. A normal task has a scope:
 * what it made or found is let go when it ends (carried in its result), as a Ray task's local refs are.
 */
async function execute(t: ExecTask, scoped: boolean, body: (args: unknown[]) => unknown): Promise<ExecResult> {
  const c = ctx as ExecutorContext
  const runtime: RuntimeContext = {
    jobId: t.jobId,
    taskId: t.taskId,
    attempt: t.attempt,
    nodeId: c.nodeId,
    workerId: c.workerId,
    actorId: t.actorId ?? null,
    assignedResources: { ...t.resources },
  }
  ;(self as unknown as { shoalContext: RuntimeContext }).shoalContext = runtime
  const { mesh, channel } = meshFor(t)
  const sentBefore = channel.messagesSent
  if (scoped) mesh.refs.beginScope()
  // Tasks submitted from here know their parent (recursive cancel), unless calls of a concurrent actor interleave.
  mesh.parentTaskId = !actor || actor.maxConcurrency === 1 ? t.taskId : undefined
  const result = await run(t, mesh, body)
  // Refs inside the returns leave this worker with them: those it owns are published first.
  if (result.ok && result.nestedRefs?.length) mesh.escape(result.nestedRefs as ObjectId[])
  const release = scoped ? mesh.endScope() : []
  // Everything the task sent goes out before its result does (the page forwards both in this order).
  mesh.flushNow()
  const used = channel.messagesSent > sentBefore ? { usedChannel: true } : {}
  return release.length ? { ...result, ...used, scope: { channel: channel.channel, release } } : { ...result, ...used }
}

async function run(t: ExecTask, mesh: Mesh, body: (args: unknown[]) => unknown): Promise<ExecResult> {
  let args: unknown[]
  try {
    args = await decodeArgs(t.args, mesh)
  } catch (e) {
    return { ok: false, error: toWireError(e), userError: false }
  }
  let value: unknown
  try {
    value = await body(args)
  } catch (e) {
    return { ok: false, error: failureOf(e, t, true), userError: true }
  }
  try {
    const { returns, nestedRefs } = await encodeReturns(value, t)
    return { ok: true, returns, ...(nestedRefs.length && { nestedRefs }) }
  } catch (e) {
    return { ok: false, error: failureOf(e, t, false), userError: true }
  }
}

/** Hands the result buffers to the page instead of copying them (each is a buffer of its own, see encodeReturns). */
function transfer(r: ExecResult): ExecResult {
  return Comlink.transfer(r, buffersOf(r))
}

/** The result's own buffers, moved to the page rather than copied. */
function buffersOf(r: ExecResult): ArrayBuffer[] {
  if (!r.ok) return []
  const buffers: ArrayBuffer[] = []
  for (const b of r.returns) {
    const view = b instanceof Uint8Array ? b : b.bytes
    if (view && view.byteOffset === 0 && view.byteLength === view.buffer.byteLength) buffers.push(view.buffer as ArrayBuffer)
  }
  return buffers
}

/**
 * Tells the page when this worker is gone. Where Web Locks exist (secure contexts: https and localhost) the worker
 * holds a lock for its whole life and the page waits for it, so any death — `self.close()`, a crash — frees the lock
 * and the page learns of it. `self.close()` also says so first, for pages where locks do not exist.
 */
async function holdLifeLock(name: string): Promise<void> {
  const realClose = self.close.bind(self)
  self.close = () => {
    self.postMessage({ __shoal: 'closing', reason: 'the task called self.close()' } satisfies WorkerToPage)
    realClose()
  }
  const locks = (navigator as { locks?: LockManager }).locks
  if (!locks) return
  await new Promise<void>((granted) => {
    void locks.request(name, () => {
      granted()
      return new Promise<void>(() => {}) // held until the worker dies
    })
  })
}

/** Runs one normal task (its scope ends with it; while it waits in get/wait its CPU is lent back). */
function runTask(t: FunctionTask): Promise<ExecResult> {
  return execute(t, true, async (args) => {
    const fn = compile(t.source, t.funcName)
    if (typeof fn !== 'function') throw new ValidationError(`${t.funcName} did not compile to a function`)
    // While the task waits in self.shoal.get/wait, its CPU is lent back to the node (nested tasks can then run).
    const { mesh } = meshFor(t)
    let waits = 0
    mesh.blockingHooks = {
      enter: () => void (waits++ === 0 && reportBlocked?.(t.taskId, true)),
      leave: () => void (--waits === 0 && reportBlocked?.(t.taskId, false)),
    }
    try {
      return await fn(...args)
    } finally {
      mesh.blockingHooks = undefined
      if (waits > 0) reportBlocked?.(t.taskId, false)
    }
  })
}

const api = {
  async init(
    c: ExecutorContext,
    down: MessagePort,
    lockName: string,
    reserve: (bytes: number) => Promise<void>,
    blocked: (taskId: string, blocked: boolean) => void,
  ): Promise<void> {
    ctx = c
    reserveRoom = reserve
    reportBlocked = blocked
    down.onmessage = (ev: MessageEvent<PageToWorker>) => {
      const jobId = ev.data.channel.slice(ev.data.channel.indexOf('/') + 1)
      meshes.get(jobId)?.channel.deliver(ev.data.frame)
    }
    await holdLifeLock(lockName)
  },
  run(t: FunctionTask): Promise<ExecResult> {
    const t0 = performance.now()
    return runTask(t).then((r) => transfer({ ...r, ms: performance.now() - t0 }))
  },
  /**
   * Several short tasks of one lease (or calls of one caller to this worker's actor, which runs one call at a time)
   * in one message, run one after another (a message each way per task is most of a node page's cost for a no-op
   * task). Each result says how long its task ran.
   */
  async runMany(ts: BatchItem[]): Promise<{ from: number; results: ExecResult[] }> {
    const out: ExecResult[] = []
    let sent = 0
    // Every few milliseconds what finished goes ahead (a later task of the batch may wait or run long).
    const flush = () => {
      if (out.length === sent) return
      const results = out.slice(sent)
      self.postMessage({ __shoal: 'results', from: sent, results } satisfies WorkerToPage, { transfer: results.flatMap(buffersOf) })
      sent = out.length
    }
    const timer = setInterval(flush, BATCH_FLUSH_MS)
    try {
      for (const t of ts) {
        const t0 = performance.now()
        const r = await ('method' in t ? callMethod(t) : runTask(t))
        out.push({ ...r, ms: performance.now() - t0 })
      }
    } finally {
      clearInterval(timer)
    }
    const results = out.slice(sent)
    return Comlink.transfer({ from: sent, results }, results.flatMap(buffersOf))
  },
  createActor(t: ExecTask & { source: string; className: string; maxConcurrency: number }): Promise<ExecResult> {
    return execute(t, false, (args) => {
      const Cls = compile(t.source, t.className) as new (...a: unknown[]) => Record<string, unknown>
      actor = { instance: new Cls(...args), className: t.className, maxConcurrency: t.maxConcurrency }
      return null
    }).then(transfer)
  },
  callActor(t: ActorCall): Promise<ExecResult> {
    return callMethod(t).then(transfer)
  },
} satisfies ExecutorApi<MessagePort>

/** Runs one call of this worker's actor. */
function callMethod(t: ActorCall): Promise<ExecResult> {
  return execute(t, false, (args) => {
    if (!actor) throw new ValidationError('this worker hosts no actor')
    const m = actor.instance[t.method]
    if (typeof m !== 'function') throw new ValidationError(`${actor.className} has no method '${t.method}'`)
    return (m as (...a: unknown[]) => unknown).apply(actor.instance, args)
  })
}

Comlink.expose(api)
