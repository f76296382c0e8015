import { decodeValue, encodeValue } from '../sdk/codec.ts'
import { TaskError, toWireError } from '../sdk/errors.ts'
import type { ExecResult, ExecTask } from '../sdk/protocol/index.ts'
import { toUnits } from '../sdk/resources.ts'
import { SimulatedWorkerSlots } from '../sim/worker-slots.ts'
import { joinAsNode } from '../worker-page/join.ts'
import { NodeAgent } from '../worker-page/node/agent.ts'
import { noObjects } from '../worker-page/node/no-objects.ts'
import type { WorkerSlot } from '../worker-page/node/ports.ts'

/*
 * A node in the test's own process: the real NodeAgent of worker-page/node/agent.ts on a real socket to a real coordinator,
 * registered with a hello as a browser node is, with workers that really run the functions' sources. No Chromium.
 * Used by the security suite (docs/trust.md) and the verified-task tests, where a node may also lie (`forge`).
 */

// ---- an in-process node that really runs what it is given ----

/** esbuild (vitest) wraps inner functions in `__name(fn, "x")`: the helper must exist where sources are compiled. */
const PRELUDE = 'const __name = (f) => f;'
function compile(source: string, name: string): unknown {
  try {
    return new Function(`${PRELUDE} return (${source})`)()
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e
    return new Function(`${PRELUDE} return ({ ${source} })[${JSON.stringify(name)}]`)()
  }
}

/**
 * A node's workers, in this process: each task's source is compiled and run as the executor worker runs it
 * (decode the inline arguments, call, encode the return). Actors live per worker slot. Large (plasma) arguments
 * are not supported: every value in these tests is small.
 */
export class EvalWorkers extends SimulatedWorkerSlots {
  private instances = new Map<string, Record<string, unknown>>()
  tasksRun = 0
  /** A lying node: what it returns instead of each plain task's true value (the value is what the code returned). */
  forge: ((value: unknown, t: ExecTask) => unknown) | undefined

  protected override forget(w: WorkerSlot): void {
    this.instances.delete(w.id)
  }

  run(_w: WorkerSlot, t: ExecTask & { source: string; funcName: string }): Promise<ExecResult> {
    return this.exec(t, async (args) => {
      const fn = compile(t.source, t.funcName)
      if (typeof fn !== 'function') throw new Error(`${t.funcName} did not compile to a function`)
      const value = await (fn as (...a: unknown[]) => unknown)(...args)
      return this.forge ? this.forge(value, t) : value
    })
  }

  createActor(w: WorkerSlot, t: ExecTask & { source: string; className: string }): Promise<ExecResult> {
    return this.exec(t, (args) => {
      const Cls = compile(t.source, t.className) as new (...a: unknown[]) => Record<string, unknown>
      this.instances.set(w.id, new Cls(...args))
      return null
    })
  }

  callActor(w: WorkerSlot, t: ExecTask & { method: string }): Promise<ExecResult> {
    return this.exec(t, (args) => {
      const inst = this.instances.get(w.id)
      if (!inst) throw new Error('this worker hosts no actor')
      const m = inst[t.method]
      if (typeof m !== 'function') throw new Error(`no method ${t.method}`)
      return (m as (...a: unknown[]) => unknown).apply(inst, args)
    })
  }

  private async exec(t: ExecTask, body: (args: unknown[]) => unknown): Promise<ExecResult> {
    // A worker answers in a message event of its own: never inside the turn that started the task.
    await new Promise((r) => setImmediate(r))
    this.tasksRun++
    let args: unknown[]
    try {
      args = t.args.map((a) => {
        if (!(a instanceof Uint8Array)) throw new Error('large arguments are not supported by this test node')
        return decodeValue(a)
      })
    } catch (e) {
      return { ok: false, error: toWireError(e), userError: false }
    }
    let value: unknown
    try {
      value = await body(args)
    } catch (e) {
      const err = e as Error
      return { ok: false, error: new TaskError(t.name, t.taskId, err.name, err.message, err.stack).toWire(), userError: true }
    }
    if (t.numReturns === 0) return { ok: true, returns: [] }
    const values = t.numReturns === 1 ? [value] : (value as unknown[])
    return { ok: true, returns: values.map((v, i) => encodeValue(v, `return ${i} of ${t.name}`).slice()) }
  }
}

/** One node, in this process: the real NodeAgent on a real socket, registered with a hello as a browser node is. */
export class EvalNode {
  nodeId = ''
  closedReason: string | undefined
  agent: NodeAgent | undefined
  readonly workers = new EvalWorkers()
  readonly errors: string[] = []

  static async start(opts: {
    address: string
    token?: string
    cpus?: number
    heartbeatMs?: number
    name?: string
    forge?: (value: unknown, t: ExecTask) => unknown
  }): Promise<EvalNode> {
    const n = new EvalNode()
    n.workers.forge = opts.forge
    const cpus = opts.cpus ?? 4
    const { socket, welcome, early } = await joinAsNode(
      opts.address,
      {
        ...(opts.token && { token: opts.token }),
        node: { resources: { CPU: cpus }, objectStoreMemory: 64 * 1024 * 1024, name: opts.name ?? 'eval-node' },
      },
      5000,
    )
    n.nodeId = welcome.nodeId as string
    let agent: NodeAgent | undefined
    const objects = noObjects('this test node', () => agent)
    agent = new NodeAgent(n.nodeId, socket, n.workers, objects, toUnits({ CPU: cpus }), {
      ...(welcome.leaseKey && { leaseKey: welcome.leaseKey }),
      ...(opts.heartbeatMs !== undefined && { heartbeatMs: opts.heartbeatMs }),
    })
    n.agent = agent
    const a = agent
    socket.onMessage = (m) => {
      if (m.type === 'error') n.errors.push(m.error.message)
      a.onMessage(m)
    }
    a.onClose = (reason) => {
      n.closedReason ??= reason
    }
    for (const m of early) a.onMessage(m)
    return n
  }

  get alive(): boolean {
    return this.closedReason === undefined
  }

  stop(): void {
    if (this.alive) this.agent?.stop('test over')
    this.closedReason ??= 'stopped by the test'
  }
}
