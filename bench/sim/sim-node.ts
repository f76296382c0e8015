/**
 * A simulated node for the scale benchmark and for tests: the real node agent (worker-page/node/agent.ts) on a real
 * WebSocket to a coordinator (the SDK's own ControlSocket, codec and protocol), with workers that run every task at
 * once as a no-op. Only the workers are simulated: the hello, the welcome, the lease checks (the node's own
 * LeaseVerifier, HMAC-SHA256 with the key of the welcome), pushes relayed by the coordinator (`peer-recv`), one task at
 * a time per lease, results batched per turn and sent back through the relay (`peer-send`), RUNNING events,
 * heartbeats, `lease-ended`, `cancel` and every other message are the browser node's own code. So the simulator
 * speaks exactly the protocol a browser node speaks, and cannot drift from it: a change to the node or the protocol
 * changes the simulator with it (or stops it compiling).
 *
 * A task's result is its first argument's encoded bytes, unchanged (what `function noop(x) { return x }` returns), or
 * an encoded `null` when it has none; numReturns 0 returns nothing, numReturns n > 1 splits an array of n, as the real
 * executor does. Actors are no-ops too (their creation returns null, a call returns its first argument).
 */
import { decodeValue, encodeValue } from '../../sdk/codec.ts'
import { ConnectionError, fromWireError, type WireError } from '../../sdk/errors.ts'
import type { ExecArg, ExecResult, ExecTask } from '../../sdk/protocol/index.ts'
import { type ClientMessage, PROTOCOL_VERSION, RELAY_OVERHEAD_BYTES, type WelcomeMessage } from '../../sdk/protocol/index.ts'
import { toUnits } from '../../sdk/resources.ts'
import { ControlSocket } from '../../sdk/transport/websocket.ts'
import { SimulatedWorkerSlots } from '../../sim/worker-slots.ts'
import { NodeAgent } from '../../worker-page/node/agent.ts'
import { noObjects } from '../../worker-page/node/no-objects.ts'
import type { NodeWorkers, WorkerSlot } from '../../worker-page/node/ports.ts'

/** What one simulated node did (plain numbers, so a fleet adds up thousands of them cheaply). */
export interface SimCounters {
  /** Tasks and actor calls its workers ran. */
  tasksRun: number
  /** Results it sent to owners (inside `peer-send` through the relay) or to the coordinator (`task-results`). */
  resultsSent: number
  /** Push messages (tasks under a lease) it received, and the tasks they carried. */
  pushesIn: number
  tasksPushed: number
  /** RUNNING task events it reported. */
  runningEvents: number
  heartbeatsSent: number
  /** WebSocket frames and their bytes, each way. */
  framesIn: number
  framesOut: number
  bytesIn: number
  bytesOut: number
  /** Control messages, each way (a frame carries one, or a turn's worth). */
  messagesIn: number
  messagesOut: number
  /** `error` messages from the coordinator, frames it could not decode, handlers that threw. */
  errors: number
}

export const emptyCounters = (): SimCounters => ({
  tasksRun: 0,
  resultsSent: 0,
  pushesIn: 0,
  tasksPushed: 0,
  runningEvents: 0,
  heartbeatsSent: 0,
  framesIn: 0,
  framesOut: 0,
  bytesIn: 0,
  bytesOut: 0,
  messagesIn: 0,
  messagesOut: 0,
  errors: 0,
})

export interface SimNodeOptions {
  /** The coordinator, e.g. `http://127.0.0.1:8265` (its `/ws` is used). */
  address: string
  cpus?: number
  name?: string
  token?: string
  /** Each task takes this long (ms) before its result; 0 (default): at once. */
  taskDelayMs?: number
  /** Heartbeat period; default: the real node's. */
  heartbeatMs?: number
  /** Bound on opening the socket and on waiting for the welcome (ms). */
  connectTimeoutMs?: number
  /** What the node says its object store holds (it holds nothing: no large objects here). */
  objectStoreMemory?: number
  /** Something went wrong that a real node would print (an `error` from the coordinator, a handler that threw). */
  onError?: (node: SimNode, message: string) => void
}

type Welcome = WelcomeMessage

const NULL_BYTES = encodeValue(null, 'null').slice()

/** What a simulated task returns: its first argument unchanged (a no-op), split as the real executor splits returns. */
function noopResult(t: ExecTask): ExecResult {
  if (t.numReturns === 0) return { ok: true, returns: [] }
  const first: ExecArg | undefined = t.args[0]
  if (first !== undefined && !(first instanceof Uint8Array))
    return { ok: false, error: systemError('OBJECT_LOST', 'ObjectLostError', 'a simulated node holds no large objects'), userError: false }
  const bytes = first ?? NULL_BYTES
  if (t.numReturns === 1) return { ok: true, returns: [bytes] }
  const value = decodeValue(bytes)
  if (!Array.isArray(value) || value.length !== t.numReturns)
    return {
      ok: false,
      error: systemError('VALIDATION', 'ValidationError', `${t.name} has numReturns ${t.numReturns} but returned something else`),
      userError: true,
    }
  return { ok: true, returns: value.map((x, i) => encodeValue(x, `return value ${i} of ${t.name}`).slice()) }
}

function systemError(code: string, name: string, message: string): WireError {
  return { name, code, message }
}

/** A worker slot with the timer of the task it is running (when tasks take time). */
interface SimSlot extends WorkerSlot {
  timer?: ReturnType<typeof setTimeout>
}

/**
 * The node's workers, simulated: a task ends at once (or after `delayMs`) with its no-op result. A stopped worker's
 * task never ends, as a terminated Web Worker's (the node has settled it already).
 *
 * "At once" is the next macrotask, as a Web Worker's reply is a message event of its own: the tasks a node started in
 * one turn end together in its next one (their results go in one frame), and a lease's next task starts then. So a
 * node never runs a whole lease's queue inside one turn (which no browser node can), and thousands of nodes in one
 * process take turns: their timers — heartbeats — keep their time while others work.
 */
class NoopWorkers extends SimulatedWorkerSlots<SimSlot> implements NodeWorkers {
  /** Tasks started this turn, ended together in the next one. */
  private due: { slot: SimSlot; end: () => void }[] = []

  constructor(
    private readonly counters: SimCounters,
    private readonly delayMs: number,
  ) {
    super()
  }

  protected override forget(slot: SimSlot): void {
    if (slot.timer) clearTimeout(slot.timer)
    slot.timer = undefined
    this.due = this.due.filter((d) => d.slot !== slot)
  }

  run(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return this.exec(w, t, noopResult)
  }

  createActor(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return this.exec(w, t, () => ({ ok: true, returns: t.numReturns === 0 ? [] : [NULL_BYTES] }))
  }

  callActor(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return this.exec(w, t, noopResult)
  }

  private exec(w: WorkerSlot, t: ExecTask, result: (t: ExecTask) => ExecResult): Promise<ExecResult> {
    this.counters.tasksRun++
    const slot = w as SimSlot
    return new Promise((resolve) => {
      const end = () => resolve(result(t))
      if (this.delayMs > 0) {
        slot.timer = setTimeout(() => {
          slot.timer = undefined
          end()
        }, this.delayMs)
        return
      }
      if (!this.due.length) setImmediate(() => this.endDue())
      this.due.push({ slot, end })
    })
  }

  private endDue(): void {
    const due = this.due
    this.due = []
    for (const d of due) d.end()
  }
}

/**
 * One simulated node: registers with a hello as a browser node does, then lives until `close()` or until the
 * coordinator closes its socket (it declared the node dead, or stopped).
 */
export class SimNode {
  readonly counters = emptyCounters()
  readonly cpus: number
  readonly name: string
  nodeId = ''
  agent: NodeAgent | undefined
  /** When the welcome arrived (performance.now()). */
  registeredAt = 0
  /** Why its connection ended; undefined while it is alive. */
  closedReason: string | undefined
  /** The coordinator closed it as DEAD while this node was alive and well (it never chose to leave). */
  declaredDead = false
  /** The longest time between two heartbeats this node sent (ms): a node that kept beating was healthy. */
  maxHeartbeatGapMs = 0
  lastHeartbeatAt = 0
  /** Called once when its connection ends, with why. */
  onClosed: (reason: string) => void = () => {}

  private socket: ControlSocket | undefined
  private stoppedByUs = false

  private constructor(private readonly opts: SimNodeOptions) {
    this.cpus = opts.cpus ?? 1
    this.name = opts.name ?? 'sim'
  }

  /** Opens a node's socket and registers it; resolves once welcomed (bounded by `connectTimeoutMs`). */
  static async start(opts: SimNodeOptions): Promise<SimNode> {
    const node = new SimNode(opts)
    await node.connect()
    return node
  }

  get alive(): boolean {
    return this.closedReason === undefined
  }

  /** Leaves the cluster, as a closed tab does: its socket closes and the coordinator retries its tasks elsewhere. */
  close(reason = 'closed by client'): void {
    this.stoppedByUs = true
    if (this.agent) this.agent.stop(reason)
    else if (this.socket?.isOpen) this.socket.close()
    this.ended(reason)
  }

  private async connect(): Promise<void> {
    const timeoutMs = this.opts.connectTimeoutMs ?? 10_000
    const url = `${this.opts.address.replace(/\/+$/, '').replace(/^http/, 'ws')}/ws`
    const socket = await ControlSocket.open(url, timeoutMs)
    this.socket = socket
    this.instrument(socket)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.close()
        reject(new ConnectionError(`no welcome from the coordinator at ${url} within ${timeoutMs} ms`))
      }, timeoutMs)
      socket.onMessage = (m) => {
        if (m.type === 'welcome') {
          clearTimeout(timer)
          // At once, in this turn: what the coordinator sends right after the welcome goes to the agent.
          this.registered(socket, m)
          resolve()
        } else if ((m.type === 'reply' && !m.ok) || m.type === 'error') {
          clearTimeout(timer)
          socket.close()
          reject(fromWireError(m.error))
        }
      }
      socket.onClose = (reason) => {
        clearTimeout(timer)
        reject(new ConnectionError(`the coordinator closed the connection before its welcome: ${reason}`))
      }
      socket.send({
        type: 'hello',
        reqId: 0,
        protocol: PROTOCOL_VERSION,
        role: 'node',
        ...(this.opts.token && { token: this.opts.token }),
        node: {
          resources: { CPU: this.cpus },
          objectStoreMemory: this.opts.objectStoreMemory ?? 64 * 1024 * 1024,
          name: this.name,
          userAgent: `shoal-sim-node (${process.version})`,
        },
      })
    })
  }

  /** The welcome: the agent takes over the socket, as worker-page/start-node.ts wires it. */
  private registered(socket: ControlSocket, welcome: Welcome): void {
    this.nodeId = welcome.nodeId as string
    this.registeredAt = performance.now()
    this.lastHeartbeatAt = this.registeredAt
    // A node may send a little more than a driver: its frames carry its workers' whole frames.
    socket.maxFrameBytes = welcome.maxFrameBytes + RELAY_OVERHEAD_BYTES
    let agent: NodeAgent | undefined
    const objects = noObjects('a simulated node', () => agent)
    const workers = new NoopWorkers(this.counters, this.opts.taskDelayMs ?? 0)
    agent = new NodeAgent(this.nodeId, socket, workers, objects, toUnits({ CPU: this.cpus }), {
      ...(welcome.leaseKey && { leaseKey: welcome.leaseKey }),
      ...(this.opts.heartbeatMs !== undefined && { heartbeatMs: this.opts.heartbeatMs }),
    })
    this.agent = agent
    const a = agent
    // The agent's own handler, counted; and never left to throw into the socket's event handler.
    socket.onMessage = (m) => {
      this.counters.messagesIn++
      if (m.type === 'error') return this.problem(`coordinator: ${m.error.message}`)
      if (m.type === 'peer-recv')
        for (const x of m.msgs as { type?: unknown; tasks?: unknown[] }[]) {
          if (x.type !== 'push') continue
          this.counters.pushesIn++
          this.counters.tasksPushed += x.tasks?.length ?? 0
        }
      try {
        a.onMessage(m)
      } catch (e) {
        this.problem(`handling '${m.type}' threw: ${(e as Error).stack ?? e}`)
      }
    }
    a.onClose = (reason) => this.ended(reason)
  }

  /** Counts frames and messages each way, without changing what goes over the socket. */
  private instrument(socket: ControlSocket): void {
    const c = this.counters
    const raw = socket as unknown as { sendFrame(frame: Uint8Array): void; receive(bytes: Uint8Array): void }
    const sendFrame = raw.sendFrame.bind(socket)
    raw.sendFrame = (frame) => {
      c.framesOut++
      c.bytesOut += frame.byteLength
      sendFrame(frame)
    }
    const receive = raw.receive.bind(socket)
    raw.receive = (bytes) => {
      c.framesIn++
      c.bytesIn += bytes.byteLength
      try {
        receive(bytes)
      } catch (e) {
        this.problem(`a frame from the coordinator could not be handled: ${(e as Error).message}`)
      }
    }
    const send = socket.send.bind(socket)
    socket.send = (msg: ClientMessage) => {
      c.messagesOut++
      switch (msg.type) {
        case 'heartbeat': {
          const now = performance.now()
          c.heartbeatsSent++
          this.maxHeartbeatGapMs = Math.max(this.maxHeartbeatGapMs, now - this.lastHeartbeatAt)
          this.lastHeartbeatAt = now
          break
        }
        case 'peer-send':
          for (const m of msg.msgs) {
            const r = m as { type?: unknown; results?: unknown[] }
            if (r.type === 'results') c.resultsSent += r.results?.length ?? 0
          }
          break
        case 'task-results':
          c.resultsSent += msg.results.length
          break
        case 'task-events':
          for (const e of msg.events) if (e.state === 'RUNNING') c.runningEvents++
          break
      }
      send(msg)
    }
  }

  private problem(message: string): void {
    this.counters.errors++
    if (this.opts.onError) this.opts.onError(this, message)
    else console.warn(`[sim node ${this.nodeId.slice(0, 8)}] ${message}`)
  }

  private ended(reason: string): void {
    if (this.closedReason !== undefined) return
    this.closedReason = reason
    if (!this.stoppedByUs && reason.startsWith('declared dead')) this.declaredDead = true
    this.onClosed(reason)
  }
}
