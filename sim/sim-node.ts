import { createHmac } from 'node:crypto'
import type { ExecResult, ExecTask } from '../sdk/protocol/index.ts'
import { type Lease, leaseSigningText, PROTOCOL_VERSION, RELAY_OVERHEAD_BYTES, type ServerMessage } from '../sdk/protocol/index.ts'
import { type ResourceUnits, toUnits } from '../sdk/resources.ts'
import { NodeAgent } from '../worker-page/node/agent.ts'
import { noObjects } from '../worker-page/node/no-objects.ts'
import type { NodeObjects, NodeWorkers, WorkerSlot } from '../worker-page/node/ports.ts'
import type { Link, MemoryNetwork } from './network.ts'
import { SimulatedWorkerSlots } from './worker-slots.ts'

/** Something a simulated worker is doing; it ends when the simulation says so. */
export interface Execution {
  kind: 'task' | 'create' | 'call'
  node: SimNode
  slot: WorkerSlot
  task: ExecTask & { method?: string }
  resolve(r: ExecResult): void
}

/**
 * The node's workers, simulated: nothing runs until the simulation completes an execution (with a value, an
 * exception, or a crash of the worker). Everything else — the node's queues, actors, resource counts, results — is
 * the real NodeAgent's.
 */
class SimWorkers extends SimulatedWorkerSlots implements NodeWorkers {
  executions: Execution[] = []

  constructor(private readonly node: SimNode) {
    super()
  }

  protected override forget(w: WorkerSlot): void {
    this.executions = this.executions.filter((e) => e.slot !== w)
  }

  run(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return this.start('task', w, t)
  }

  onBatchResults: (w: WorkerSlot, from: number, results: ExecResult[]) => void = () => {}

  /**
   * A batch runs its tasks one after another in the worker; each result goes ahead as soon as it is in (the real
   * worker sends what finished every few ms: this is one of the orders that allows). A crash mid-batch abandons the
   * rest, as a terminated worker's.
   */
  async runMany(w: WorkerSlot, ts: ExecTask[]): Promise<{ from: number; results: ExecResult[] }> {
    const kind = (t: ExecTask) => ('method' in t ? 'call' : 'task')
    for (let i = 0; i < ts.length - 1; i++) this.onBatchResults(w, i, [await this.start(kind(ts[i] as ExecTask), w, ts[i] as ExecTask)])
    const last = ts[ts.length - 1] as ExecTask
    return { from: ts.length - 1, results: [await this.start(kind(last), w, last)] }
  }

  createActor(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return this.start('create', w, t)
  }

  callActor(w: WorkerSlot, t: ExecTask & { method: string }): Promise<ExecResult> {
    return this.start('call', w, t)
  }

  /** The worker dies mid-execution (the simulation's `self.close()`). */
  crash(w: WorkerSlot): void {
    this.onCrash(w, 'simulated worker crash')
    this.terminate(w)
  }

  private start(kind: Execution['kind'], slot: WorkerSlot, task: ExecTask): Promise<ExecResult> {
    return new Promise((resolve) => {
      const e: Execution = { kind, node: this.node, slot, task, resolve }
      this.executions.push(e)
      this.node.onStart(e)
    })
  }
}

/**
 * A node of the simulated cluster: the real NodeAgent, speaking the real protocol over a simulated connection, with
 * simulated workers. It registers with a hello, as a browser node does.
 */
export class SimNode {
  readonly link: Link
  readonly workers: SimWorkers
  readonly total: ResourceUnits
  agent: NodeAgent | undefined
  nodeId: string | undefined
  /** A frozen node sends no heartbeats and finishes nothing (a tab stuck in a long loop, or suspended). */
  frozen = false

  constructor(
    network: MemoryNetwork,
    readonly name: string,
    readonly cpus: number,
    /** Told when an execution starts (the simulation checks what runs where). */
    readonly onStart: (e: Execution) => void,
    /** Told of every message the node receives (the simulation's trace). */
    readonly onReceive: (m: ServerMessage) => void = () => {},
  ) {
    this.link = network.connect(name)
    this.workers = new SimWorkers(this)
    this.total = toUnits({ CPU: cpus })
    const transport = this.link.client
    transport.onMessage = (m: ServerMessage) => {
      if (m.type !== 'welcome' || this.agent) return
      this.nodeId = m.nodeId as string
      transport.maxFrameBytes = m.maxFrameBytes + RELAY_OVERHEAD_BYTES
      // Leases are checked synchronously here (Web Crypto would resolve on another thread, out of the seed's order).
      const key = Buffer.from(m.leaseKey ?? '', 'hex')
      const nodeId = this.nodeId
      const verifier = {
        verify: (l: Lease) => l.nodeId === nodeId && createHmac('sha256', key).update(leaseSigningText(l)).digest('hex') === l.sig,
      }
      const agent = new NodeAgent(
        this.nodeId,
        transport,
        this.workers,
        noObjects('a simulated node', () => undefined),
        this.total,
        { heartbeatMs: 0, verifier },
      )
      this.agent = agent
      transport.onMessage = (msg) => {
        this.onReceive(msg)
        agent.onMessage(msg)
      }
    }
    transport.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'node',
      node: { resources: { CPU: cpus }, objectStoreMemory: 1 << 20, name },
    })
  }

  get alive(): boolean {
    return !this.link.closed
  }

  get executions(): Execution[] {
    return this.workers.executions
  }

  /** Ends an execution with a result (it leaves the list first, so the node's reply sees it gone). */
  complete(e: Execution, r: ExecResult): void {
    this.workers.executions = this.workers.executions.filter((x) => x !== e)
    e.resolve(r)
  }
}
