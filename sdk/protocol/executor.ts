/**
 * The node page ↔ its executor workers (comlink calls): what a page asks a worker to run and what comes back. The
 * worker (`worker-page/executor.worker.ts`) implements `ExecutorApi` (checked with `satisfies`); the page's pool
 * (`worker-page/worker-pool.ts`), the simulators and the in-process test node speak it too.
 */
import type { WireError } from '../errors.ts'

/** What one task or actor call produced, as the worker reports it to its page. */
export type ExecResult = (
  | { ok: true; returns: (Uint8Array | { stored: number; bytes?: Uint8Array })[]; nestedRefs?: string[] }
  | { ok: false; error: WireError; userError: boolean }
) & {
  /** What the task made and let go when it ended, on its channel (see TaskResult.scope). */
  scope?: { channel: string; release: string[] }
  /**
   * The task used `self.shoal` (its channel sent something to the coordinator): its result must reach its owner
   * through the coordinator, after what the task sent, so the coordinator sees both in order.
   */
  usedChannel?: boolean
  /** How long the task itself ran in the worker (ms), without the trip to it. */
  ms?: number
}

/** An argument: its encoded bytes, or a large object already in this node's plasma store. */
export type ExecArg = Uint8Array | { plasma: string }

export interface ExecTask {
  taskId: string
  attempt: number
  actorId?: string
  jobId: string
  namespace: string
  name: string
  args: ExecArg[]
  numReturns: number
  /** What the task holds while it runs (its lease's or assignment's resources), as Ray's get_assigned_resources. */
  resources: Record<string, number>
  /** A verified task's replica: all returns inline, at most this many bytes in all, none holding a ref. */
  inlineReturns?: number
}

/** A task of a function: its source travels with it (the worker compiles each source once). */
export type FunctionTask = ExecTask & { source: string; funcName: string }
/** A call of the worker's actor. */
export type ActorCall = ExecTask & { method: string }
/** One item of a batch: a task (its function's source) or a call of the worker's actor (its method). */
export type BatchItem = FunctionTask | ActorCall

export interface ExecutorContext {
  workerId: string
  nodeId: string
  address: string
  /** The node's object store capacity: a larger result cannot be stored. */
  storeCapacity: number
  /** The largest frame the coordinator accepts from a driver (`self.shoal` cuts its frames under it). */
  maxFrameBytes: number
}

/** Ray's runtime context: what a task can know about where and as what it runs. */
export interface RuntimeContext {
  jobId: string
  taskId: string
  attempt: number
  nodeId: string
  workerId: string
  actorId: string | null
  /** Ray's `get_assigned_resources()`: what the task (or actor) holds while it runs, e.g. `{ CPU: 0.5 }`. */
  assignedResources: Record<string, number>
}

/**
 * What an executor worker exposes over comlink. `Port` is the platform's MessagePort (this module has no platform's
 * types): the page posts `PageToWorker` frames on it.
 */
export interface ExecutorApi<Port = unknown> {
  /**
   * Set-up, once: the node's context, the port frames from the coordinator arrive on (for `self.shoal`), the Web
   * Lock that marks the worker alive, and the page's callbacks to make room in the store and to report a task blocked
   * in a nested `get`.
   */
  init(
    c: ExecutorContext,
    down: Port,
    lockName: string,
    reserve: (bytes: number) => Promise<void>,
    blocked: (taskId: string, blocked: boolean) => void,
  ): Promise<void>
  /** Runs one task. */
  run(t: FunctionTask): Promise<ExecResult>
  /**
   * Several short tasks (or calls of this worker's actor) one after another; results of the first ones go ahead as
   * `WorkerToPage` 'results' messages while the later ones run, and the rest come back here from `from` on.
   */
  runMany(ts: BatchItem[]): Promise<{ from: number; results: ExecResult[] }>
  /** Constructs the one actor this worker hosts for its life. */
  createActor(t: ExecTask & { source: string; className: string; maxConcurrency: number }): Promise<ExecResult>
  /** Runs one call of this worker's actor. */
  callActor(t: ActorCall): Promise<ExecResult>
}
