/// <reference lib="webworker" />
/**
 * A worker process: runs tasks one at a time, or hosts exactly one actor. User code runs only here — never on the
 * page's main thread, never on the coordinator. Values arrive and leave encoded, so the page never decodes them.
 */
import * as Comlink from 'comlink'
import { ActorHandleBase } from '../sdk/actor-handle.ts'
import { decodeValue, encodeValue } from '../sdk/codec.ts'
import { connect, type Mesh } from '../sdk/connect.ts'
import { toWireError, ValidationError, type WireError } from '../sdk/errors.ts'
import type { ActorId } from '../sdk/ids.ts'
import { MAX_FRAME_BYTES } from '../sdk/protocol.ts'

export type ExecResult = { ok: true; returns: Uint8Array[] } | { ok: false; error: WireError; userError: boolean }
export interface ExecTask {
  taskId: string
  attempt: number
  actorId?: string
  jobId: string
  name: string
  args: Uint8Array[]
  numReturns: number
}
export interface ExecutorContext {
  workerId: string
  nodeId: string
  address: string
  token?: string
}

/** esbuild (tsx, Vite) may wrap inner functions in `__name(fn, "x")`: the helper must exist where the source is compiled. */
const PRELUDE = 'const __name = (f) => f;'
const compiled = new Map<string, unknown>()
const meshes = new Map<string, Promise<Mesh>>()
let ctx: ExecutorContext | undefined
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

function decodeArgs(args: Uint8Array[], mesh: Mesh): unknown[] {
  const bind = {
    bindActorHandle: (w: { actorId: string; className: string; methods: string[] }) =>
      new ActorHandleBase(w.actorId as ActorId, w.className, w.methods, mesh),
  }
  return args.map((a) => decodeValue(a, bind))
}

function encodeReturns(value: unknown, t: ExecTask): Uint8Array[] {
  let values: unknown[] = [value]
  if (t.numReturns > 1) {
    if (!Array.isArray(value) || value.length !== t.numReturns)
      throw new ValidationError(
        `${t.name} has numReturns ${t.numReturns} but returned ${Array.isArray(value) ? `an array of ${value.length}` : typeof value}`,
      )
    values = value
  }
  const out = values.map((v, i) => encodeValue(v, t.numReturns > 1 ? `return value ${i} of ${t.name}` : `the return value of ${t.name}`))
  const size = out.reduce((n, b) => n + b.byteLength, 0)
  if (size > MAX_FRAME_BYTES)
    throw new ValidationError(`${t.name} returned ${size} bytes; values over ${MAX_FRAME_BYTES} bytes cannot travel inline`)
  return out
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
    args = decodeArgs(t.args, await meshFor(t.jobId))
  } catch (e) {
    return { ok: false, error: toWireError(e), userError: false }
  }
  try {
    const value = await body(args)
    return transfer({ ok: true, returns: encodeReturns(value, t) })
  } catch (e) {
    return { ok: false, error: toWireError(e), userError: true }
  }
}

/** Hands the result buffers to the page instead of copying them. */
function transfer(r: ExecResult): ExecResult {
  if (!r.ok) return r
  return Comlink.transfer(
    r,
    r.returns.map((b) => b.buffer as ArrayBuffer),
  )
}

const api = {
  init(c: ExecutorContext): void {
    ctx = c
  },
  run(t: ExecTask & { source: string; funcName: string }): Promise<ExecResult> {
    return execute(t, (args) => {
      const fn = compile(t.source, t.funcName)
      if (typeof fn !== 'function') throw new ValidationError(`${t.funcName} did not compile to a function`)
      return fn(...args)
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
