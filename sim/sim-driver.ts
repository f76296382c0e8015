import type { ActorHandleBase } from '../sdk/actor-handle.ts'
import type { ShoalError } from '../sdk/errors.ts'
import { type JobId, taskIdOfObject } from '../sdk/ids.ts'
import { Mesh } from '../sdk/mesh.ts'
import type { ObjectRef } from '../sdk/object-ref.ts'
import { driverPeerId } from '../sdk/peer-address.ts'
import { PROTOCOL_VERSION, type ServerMessage } from '../sdk/protocol/index.ts'
import type { Link, MemoryNetwork } from './network.ts'

/** A ref the driver made, and what became of it. */
export interface Submitted {
  ref: ObjectRef
  taskId: string
  kind: 'task' | 'create' | 'call' | 'put'
  /** Submission order within this driver. */
  seq: number
  actorId?: string
  /** Task ids this one takes as top-level ref arguments (their failure is its failure). */
  deps: string[]
  cancelled?: boolean
  settled?: { value?: unknown; error?: ShoalError }
}

/**
 * A driver of the simulated cluster: the real Mesh (task submitter, reference counter, object table) over a
 * simulated connection. It keeps every ref it makes (no garbage collection decides anything mid-run) and records how
 * each one ends.
 */
export class SimDriver {
  readonly link: Link
  mesh: Mesh | undefined
  readonly submitted: Submitted[] = []
  readonly actors: { handle: ActorHandleBase; actorId: string; maxConcurrency: number; creation: Submitted }[] = []
  /** How many times each object's value reached this driver: more than once breaks exactly-once. */
  readonly updates = new Map<string, number>()
  private seq = 0
  /** Its peer address: made from its name, so a seeded run is the same every time. */
  readonly peerId: string

  constructor(
    network: MemoryNetwork,
    readonly name: string,
  ) {
    this.link = network.connect(name)
    this.peerId = driverPeerId(
      [...name]
        .map((c) => c.charCodeAt(0).toString(16).padStart(2, '0'))
        .join('')
        .padEnd(54, '0')
        .slice(0, 54),
    )
    const transport = this.link.client
    transport.onMessage = (m: ServerMessage) => {
      if (m.type !== 'welcome' || this.mesh) return
      transport.maxFrameBytes = m.maxFrameBytes
      // No peer mesh in the simulation: every peer message goes through the coordinator's relay.
      const mesh = new Mesh(transport, 'sim://coordinator', m.jobId as JobId, m.namespace, { peerAddress: this.peerId })
      const deliver = transport.onMessage
      transport.onMessage = (msg) => {
        if (msg.type === 'objects') for (const o of msg.objects) this.updates.set(o.objectId, (this.updates.get(o.objectId) ?? 0) + 1)
        deliver(msg)
      }
      this.mesh = mesh
    }
    transport.send({ type: 'hello', reqId: 0, protocol: PROTOCOL_VERSION, role: 'driver', peerId: this.peerId })
  }

  get alive(): boolean {
    return !this.link.closed && !this.link.closing
  }

  /** Records a ref and settles it when its value or error arrives. */
  track(ref: ObjectRef, kind: Submitted['kind'], deps: string[] = [], actorId?: string): Submitted {
    const s: Submitted = { ref, taskId: taskIdOfObject(ref.id), kind, seq: this.seq++, deps, ...(actorId && { actorId }) }
    this.submitted.push(s)
    ;(this.mesh as Mesh).get(ref).then(
      (value) => void (s.settled = { value }),
      (error: ShoalError) => void (s.settled = { error }),
    )
    return s
  }
}
