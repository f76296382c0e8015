/// <reference lib="webworker" />
/**
 * A worker process: runs tasks one at a time, or hosts exactly one actor. User code runs only here — never on the
 * page's main thread, never on the coordinator. Values arrive and leave encoded, so the page never decodes them.
 */
import * as Comlink from 'comlink'
import type { IDBPDatabase } from 'idb'
import { decodeValue, encodeValue } from '../sdk/codec.ts'
import { connect, type Mesh } from '../sdk/connect.ts'
import { ObjectLostError, ObjectStoreFullError, toWireError, ValidationError, type WireError } from '../sdk/errors.ts'
import { type ObjectId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { INLINE_OBJECT_MAX_BYTES } from '../sdk/protocol.ts'
import { openPlasma, readObject, writeObject } from './object-store/plasma-db.ts'

export type ExecResult =
  | { ok: true; returns: (Uint8Array | { stored: number; bytes?: Uint8Array })[]; nestedRefs?: string[] }
  | { ok: false; error: WireError; userError: boolean }
/** An argument: its encoded bytes, or a large object already in this node's plasma store. */
export type ExecArg = Uint8Array | { plasma: string }
export interface ExecTask {
  taskId: string
  attempt: number
  actorId?: string
  jobId: string
  name: string
  args: ExecArg[]
  numReturns: number
}
export interface ExecutorContext {
  workerId: string
  nodeId: string
  address: string
  token?: string
  /** The node's object store capacity: a larger result cannot be stored. */
  storeCapacity: number
}

/** esbuild (tsx, Vite) may wrap inner functions in `__name(fn, "x")`: the helper must exist where the source is compiled. */
const PRELUDE = 'const __name = (f) => f;'
const compiled = new Map<string, unknown>()
const meshes = new Map<string, Promise<Mesh>>()
let ctx: ExecutorContext | undefined
let reserveRoom: ((bytes: number) => Promise<void>) | undefined
let reportBlocked: ((taskId: string, blocked: boolean) => void) | undefined
let actor: { instance: Record<string, unknown>; className: string } | undefined

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

/** `self.shoal`: the SDK bound to the job of the task running now, so tasks can submit tasks and call actors. */
async function meshFor(jobId: string): Promise<Mesh> {
  let m = meshes.get(jobId)
  if (!m) {
    const c = ctx as ExecutorContext
    m = connect({ address: c.address, attachJob: jobId, ...(c.token !== undefined && { token: c.token }) })
    meshes.set(jobId, m)
    m.catch(() => meshes.delete(jobId))
  }
  const mesh = await m
  ;(self as unknown as { shoal: Mesh }).shoal = mesh
  return mesh
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
  let values: unknown[] = [value]
  if (t.numReturns > 1) {
    if (!Array.isArray(value) || value.length !== t.numReturns)
      throw new ValidationError(
        `${t.name} has numReturns ${t.numReturns} but returned ${Array.isArray(value) ? `an array of ${value.length}` : typeof value}`,
      )
    values = value
  }
  const nestedRefs: ObjectId[] = []
  const returns: (Uint8Array | { stored: number; bytes?: Uint8Array })[] = []
  for (let i = 0; i < values.length; i++) {
    const bytes = encodeValue(values[i], t.numReturns > 1 ? `return value ${i} of ${t.name}` : `the return value of ${t.name}`, nestedRefs)
    if (bytes.byteLength <= INLINE_OBJECT_MAX_BYTES) {
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
    // Also handed to the page (transferred, not copied): it stays hot in the store's memory tier.
    returns.push({ stored: bytes.byteLength, bytes })
  }
  return { returns, nestedRefs }
}

/** Ray's runtime context: what a task can know about where and as what it runs. */
export interface RuntimeContext {
  jobId: string
  taskId: string
  attempt: number
  nodeId: string
  workerId: string
  actorId: string | null
}

async function execute(t: ExecTask, body: (args: unknown[]) => unknown): Promise<ExecResult> {
  const c = ctx as ExecutorContext
  const runtime: RuntimeContext = {
    jobId: t.jobId,
    taskId: t.taskId,
    attempt: t.attempt,
    nodeId: c.nodeId,
    workerId: c.workerId,
    actorId: t.actorId ?? null,
  }
  ;(self as unknown as { shoalContext: RuntimeContext }).shoalContext = runtime
  let args: unknown[]
  try {
    args = await decodeArgs(t.args, await meshFor(t.jobId))
  } catch (e) {
    return { ok: false, error: toWireError(e), userError: false }
  }
  try {
    const value = await body(args)
    const { returns, nestedRefs } = await encodeReturns(value, t)
    return transfer({ ok: true, returns, ...(nestedRefs.length && { nestedRefs }) })
  } catch (e) {
    return { ok: false, error: toWireError(e), userError: true }
  }
}

/** Hands the result buffers to the page instead of copying them. */
function transfer(r: ExecResult): ExecResult {
  if (!r.ok) return r
  const buffers = new Set<ArrayBuffer>()
  for (const b of r.returns) {
    const view = b instanceof Uint8Array ? b : b.bytes
    if (view) buffers.add(view.buffer as ArrayBuffer)
  }
  return Comlink.transfer(r, [...buffers])
}

const api = {
  init(c: ExecutorContext, reserve: (bytes: number) => Promise<void>, blocked: (taskId: string, blocked: boolean) => void): void {
    ctx = c
    reserveRoom = reserve
    reportBlocked = blocked
  },
  run(t: ExecTask & { source: string; funcName: string }): Promise<ExecResult> {
    return execute(t, async (args) => {
      const fn = compile(t.source, t.funcName)
      if (typeof fn !== 'function') throw new ValidationError(`${t.funcName} did not compile to a function`)
      // While the task waits in self.shoal.get/wait, its CPU is lent back to the node (nested tasks can then run).
      const mesh = await meshFor(t.jobId)
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
  },
  createActor(t: ExecTask & { source: string; className: string }): Promise<ExecResult> {
    return execute(t, (args) => {
      const Cls = compile(t.source, t.className) as new (...a: unknown[]) => Record<string, unknown>
      actor = { instance: new Cls(...args), className: t.className }
      return null
    })
  },
  callActor(t: ExecTask & { method: string }): Promise<ExecResult> {
    return execute(t, (args) => {
      if (!actor) throw new ValidationError('this worker hosts no actor')
      const m = actor.instance[t.method]
      if (typeof m !== 'function') throw new ValidationError(`${actor.className} has no method '${t.method}'`)
      return (m as (...a: unknown[]) => unknown).apply(actor.instance, args)
    })
  },
}
export type ExecutorApi = typeof api
Comlink.expose(api)
