import { decodeFrames, encodeValue } from '../sdk/codec.ts'
import { functionIdOf, type JobId, newTaskId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { newDriverPeerId } from '../sdk/peer-address.ts'
import type { Assignment, ClientMessage, Lease, ObjectUpdate, ServerMessage, TaskResult, TaskSpec } from '../sdk/protocol/index.ts'
import { PROTOCOL_VERSION } from '../sdk/protocol/index.ts'
import { taskSpec } from '../sdk/task-spec.fixture.ts'
import type { Cluster } from './cluster.ts'
import { Session } from './session.ts'

/**
 * Drives a Cluster with in-memory sessions: no sockets, no browser. For unit tests of the coordinator's rules.
 * Messages are flushed per microtask, so tests `await tick()` after acting.
 */
export class FakeConn {
  readonly received: ServerMessage[] = []
  readonly session: Session
  closed: { code: number; reason: string } | undefined
  constructor(readonly cluster: Cluster) {
    this.session = new Session(
      (b) => this.received.push(...(decodeFrames(b) as ServerMessage[])),
      (code, reason) => {
        this.closed = { code, reason }
        cluster.disconnected(this.session)
      },
    )
  }
  send(msg: ClientMessage): void {
    this.cluster.handle(this.session, msg)
  }
  of<T extends ServerMessage['type']>(type: T): Extract<ServerMessage, { type: T }>[] {
    return this.received.filter((m) => m.type === type) as Extract<ServerMessage, { type: T }>[]
  }
  objects(): ObjectUpdate[] {
    return this.of('objects').flatMap((m) => m.objects)
  }
  assignments(): Assignment[] {
    return this.of('assign').flatMap((m) => m.tasks)
  }
  disconnect(): void {
    this.cluster.disconnected(this.session)
  }
}

export const tick = () => new Promise((r) => setTimeout(r, 0))

export async function driver(
  cluster: Cluster,
  extra: Partial<Extract<ClientMessage, { type: 'hello' }>> = {},
): Promise<FakeConn & { jobId: JobId; peerId: string }> {
  const c = new FakeConn(cluster)
  const peerId = newDriverPeerId()
  c.send({ type: 'hello', reqId: 1, protocol: PROTOCOL_VERSION, role: 'driver', peerId, ...extra })
  await tick()
  const w = c.of('welcome')[0]
  return Object.assign(c, { jobId: w?.jobId as JobId, peerId })
}

export async function node(cluster: Cluster, cpus: number, resources: Record<string, number> = {}): Promise<FakeConn & { nodeId: string }> {
  const c = new FakeConn(cluster)
  c.send({
    type: 'hello',
    reqId: 1,
    protocol: PROTOCOL_VERSION,
    role: 'node',
    node: { resources: { CPU: cpus, ...resources }, objectStoreMemory: 1e6 },
  })
  await tick()
  return Object.assign(c, { nodeId: c.of('welcome')[0]?.nodeId as string })
}

const SOURCE = 'function f(x) { return x }'
/** A task spec for `f`, registering `f` on first use. */
export function task(d: FakeConn & { jobId: JobId }, over: Partial<TaskSpec> = {}): TaskSpec & { returnId: string } {
  const functionId = functionIdOf(SOURCE)
  d.send({ type: 'register-functions', functions: [{ functionId, name: 'f', kind: 'function', source: SOURCE }] })
  const spec = taskSpec(d.jobId, functionId, over)
  return Object.assign(spec, { returnId: objectIdOf(spec.taskId as TaskId, 1) })
}

export const ok = (a: Assignment) => ({ taskId: a.taskId, attempt: a.attempt, ok: true as const, returns: [encodeValue(a.attempt, 'r')] })
export const userError = (a: Assignment, name = 'Error') => ({
  taskId: a.taskId,
  attempt: a.attempt,
  ok: false as const,
  error: { name: 'TaskError', code: 'TASK_ERROR', message: 'boom', data: { remoteName: name } },
  userError: true,
})

/** Submits specs made by `task` (without their test-only `returnId`). */
export function submit(d: FakeConn, tasks: (TaskSpec & { returnId: string })[]): void {
  d.send({ type: 'submit', tasks: tasks.map(({ returnId: _, ...spec }) => spec) })
}

let shapes = 0
/** Asks for `count` leases of one shape and returns the shape's id (grants arrive as `lease-granted`). */
export function requestLeases(
  d: FakeConn,
  resources: Record<string, number> = { CPU: 1 },
  count = 1,
  strategy: Extract<ClientMessage, { type: 'lease-request' }>['strategy'] = 'DEFAULT',
): string {
  const shapeId = `s${++shapes}`
  const head = { taskId: newTaskId('00000000' as JobId), name: 'f' }
  d.send({ type: 'lease-request', shapeId, resources, strategy, count, head })
  return shapeId
}

/** The leases granted to `d` so far (of one shape, if given). */
export const leasesOf = (d: FakeConn, shapeId?: string): Lease[] =>
  d
    .of('lease-granted')
    .filter((g) => !shapeId || g.shapeId === shapeId)
    .map((g) => g.lease)

/** A node's results under a lease, sent through the coordinator's relay to the lease's owner. */
export function relayResults(n: FakeConn, lease: Lease, results: TaskResult[]): void {
  n.send({ type: 'peer-send', to: lease.owner, msgs: [{ type: 'results', leaseId: lease.leaseId, results }] })
}
