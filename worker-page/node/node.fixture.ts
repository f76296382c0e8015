import { functionIdOf } from '../../sdk/ids.ts'
import type {
  BatchItem,
  ClientMessage,
  ExecResult,
  ExecTask,
  FunctionDef,
  Lease,
  PeerMessage,
  PushedTask,
  TaskResult,
} from '../../sdk/protocol/index.ts'
import { TaskEventReporter } from '../../sdk/task-event-reporter.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import type { LeaseCheck } from '../lease-verifier.ts'
import { TenancyCheck } from '../tenancy-check.ts'
import { LeaseAdmission } from './admission.ts'
import { Functions } from './functions.ts'
import { noObjects } from './no-objects.ts'
import type { NodeObjects, NodeWorkers, WorkerSlot } from './ports.ts'
import { WorkerRuns } from './worker-runs.ts'

/*
 * The node page's parts in Node, without a browser: workers that run nothing until the test ends their work, and a
 * record of what the parts send to owners and to the coordinator.
 */

export const NODE = 'n0'
export const OWNER = 'owner-1'
export const JOB = 'job1'

/** Work handed to a fake worker: it ends when the test calls `end`. */
export interface Handed {
  w: WorkerSlot
  kind: 'run' | 'many' | 'create' | 'call'
  tasks: ExecTask[]
  ended?: boolean
  /** Ends the work with these results (default: every task returns a value; see `ok`). */
  end(results?: ExecResult[]): void
}

/** Workers that run nothing: each piece of work waits in `handed` until the test ends it. */
export class FakeWorkers implements NodeWorkers {
  slots: WorkerSlot[] = []
  terminated: WorkerSlot[] = []
  handed: Handed[] = []
  runMany?: NodeWorkers['runMany']
  onBatchResults?: (w: WorkerSlot, from: number, results: ExecResult[]) => void
  onCrash: (w: WorkerSlot, reason: string) => void = () => {}
  onRelay: (channel: string, frame: Uint8Array) => void = () => {}
  onChannelsClosed: (channels: string[]) => void = () => {}
  private n = 0

  constructor(opts: { batches?: boolean } = {}) {
    if (opts.batches !== false)
      this.runMany = (w, ts) =>
        new Promise((resolve) => this.hand(w, 'many', ts, (results) => resolve({ from: 0, results: results ?? ts.map(() => ok()) })))
  }

  get size(): number {
    return this.slots.length
  }

  /** The task ids of the work handed so far, one list per message to a worker. */
  get messages(): string[][] {
    return this.handed.map((h) => h.tasks.map((t) => t.taskId))
  }

  /** The work handed and not ended yet. */
  get pending(): Handed[] {
    return this.handed.filter((h) => !h.ended)
  }

  acquire(jobId: string, taskId: string): WorkerSlot {
    const w: WorkerSlot = { id: `w${this.n++}`.padEnd(8, '0'), busy: true, jobId, taskId }
    this.slots.push(w)
    return w
  }
  spawnForActor(actorId: string, jobId: string): WorkerSlot {
    const w: WorkerSlot = { id: `a${this.n++}`.padEnd(8, '0'), busy: true, jobId, actorId }
    this.slots.push(w)
    return w
  }
  release(w: WorkerSlot): void {
    w.busy = false
  }
  terminate(w: WorkerSlot): void {
    this.terminated.push(w)
    this.slots = this.slots.filter((x) => x !== w)
  }
  terminateAll(): void {
    for (const w of [...this.slots]) this.terminate(w)
  }
  retire(): void {}
  run(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return new Promise((resolve) => this.hand(w, 'run', [t], (r) => resolve(r?.[0] ?? ok())))
  }
  createActor(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return new Promise((resolve) => this.hand(w, 'create', [t], (r) => resolve(r?.[0] ?? ok())))
  }
  callActor(w: WorkerSlot, t: ExecTask): Promise<ExecResult> {
    return new Promise((resolve) => this.hand(w, 'call', [t], (r) => resolve(r?.[0] ?? ok())))
  }
  deliver(): void {}

  private hand(w: WorkerSlot, kind: Handed['kind'], ts: (ExecTask | BatchItem)[], end: (r?: ExecResult[]) => void): void {
    const h: Handed = {
      w,
      kind,
      tasks: ts,
      end: (r) => {
        h.ended = true
        end(r)
      },
    }
    this.handed.push(h)
  }
}

/** A task's value as its worker returns it; `ms`: how long it ran (by default too long for batches; see batch-policy.ts). */
export const ok = (ms = 10): ExecResult => ({ ok: true, returns: [new Uint8Array([1])], ms })

export const objects: NodeObjects = noObjects('the test node', () => undefined)

export const fn = (name: string): FunctionDef => {
  const source = `function ${name}() { return 1 }`
  return { functionId: functionIdOf(source), name, kind: 'function', source }
}

export const lease = (leaseId: string, extra: Partial<Lease> = {}): Lease =>
  ({ leaseId, nodeId: NODE, owner: OWNER, jobId: JOB, units: { CPU: 10_000 }, sig: `sig-${leaseId}`, ...extra }) as Lease

export const task = (taskId: string, f: FunctionDef, extra: Partial<PushedTask> = {}): PushedTask =>
  ({
    taskId,
    attempt: 0,
    functionId: f.functionId,
    name: taskId,
    funcName: f.name,
    args: [new Uint8Array([0])],
    numReturns: 1,
    ...extra,
  }) as PushedTask

/** Accepts a lease whose signature is `sig-<leaseId>`, synchronously (as the simulator's check does). */
export const signedBySig: LeaseCheck = { verify: (l) => l.sig === `sig-${l.leaseId}` }

/** Lets the turn end: results collected during it are sent. */
export const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

/** The parts every push path needs, with what they send recorded. */
export function nodeParts(opts: { batches?: boolean; verifier?: LeaseCheck } = {}) {
  const workers = new FakeWorkers(opts)
  const toPeers: { to: string; msg: PeerMessage; route: Route }[] = []
  const toCoordinator: ClientMessage[] = []
  const send = (m: ClientMessage) => void toCoordinator.push(m)
  const sendTo = (to: string, msg: PeerMessage, route: Route) => void toPeers.push({ to, msg, route })
  const stats = { running: 0, finished: 0, failed: 0 }
  const runs = new WorkerRuns(NODE, workers, objects, new TaskEventReporter(send), new TenancyCheck(send), stats, () => {}, sendTo)
  const admission = new LeaseAdmission(NODE, opts.verifier ?? signedBySig, sendTo)
  return {
    workers,
    runs,
    stats,
    admission,
    functions: new Functions(),
    send,
    toPeers,
    toCoordinator,
    /** The results sent to owners, in order, with the way each went. */
    results: (): (TaskResult & { route: Route })[] =>
      toPeers.flatMap(({ msg, route }) => (msg.type === 'results' ? msg.results.map((r) => ({ ...r, route })) : [])),
  }
}
