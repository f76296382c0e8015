import { ValidationError } from '../sdk/errors.ts'
import { type ObjectId, objectIdOf, type TaskId } from '../sdk/ids.ts'
import { isNodeAddress } from '../sdk/peer-address.ts'
import type { Lease } from '../sdk/protocol/index.ts'
import {
  type ClientMessageOf,
  leavesObjects,
  type PeerMessageOf,
  parsePeerMessage,
  parseResent,
  type TaskResult,
} from '../sdk/protocol/index.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { Session } from './session.ts'

/**
 * The relay for peer messages between owners and nodes that have no direct channel (or must stay in order with what
 * the sender told the coordinator). The coordinator vouches for the sender's address. An owner may write only to
 * nodes; a node only to the owners of its leases, and only results. Results that leave objects the coordinator must
 * count (large or ref-holding returns, a task that used its own connection) are entered in the object directory here,
 * for their owner, before the owner sees them; then what the task's worker let go at its end is released.
 */
export class PeerRelay {
  /**
   * Peer messages relayed that a data channel could have carried (diagnostics, /metrics): not results that leave
   * objects, which come here by design so the directory knows of them before their owner does.
   */
  relayedMessages = 0

  constructor(
    private readonly deps: {
      objects: ObjectDirectory
      /** A worker lease or an actor lease given out now: a node's results under it go to its owner only. */
      leaseOf(leaseId: string): { lease: Lease; nodeId: string } | undefined
      /** The session at a peer address: a node, a driver, or a task's connection on a node. */
      sessionAt(address: string): Session | undefined
      addressOf(s: Session): string | undefined
      /** What a task's worker let go when it ended, on the node's channel for that worker. */
      endScope(node: Session, scope: NonNullable<TaskResult['scope']>): void
    },
  ) {}

  send(from: Session, msg: ClientMessageOf<'peer-send'>): void {
    const fromAddress = this.deps.addressOf(from)
    if (!fromAddress) throw new ValidationError('this connection has no peer address (say peerId in hello)')
    const to = this.deps.sessionAt(msg.to)
    if (from.role === 'node') return this.fromNode(from, fromAddress, msg.to, to, msg.msgs)
    if (!isNodeAddress(msg.to)) throw new ValidationError('peer messages from a driver or task go to nodes only')
    // A task's connection on a node has no data channel of its own: its messages always come this way.
    if (!from.carrier) this.relayedMessages += msg.msgs.length
    if (to && !to.closed) to.send({ type: 'peer-recv', from: fromAddress, msgs: msg.msgs })
  }

  private fromNode(node: Session, nodeAddress: string, toAddress: string, to: Session | undefined, raw: unknown[]): void {
    const out: unknown[] = []
    for (const m of raw) {
      const resent = parseResent(m)
      if (resent && 'problem' in resent) throw new ValidationError(`a resent peer message was refused: ${resent.problem}`)
      const parsed = parsePeerMessage(resent ? resent.resent.msg : m)
      if ('problem' in parsed) throw new ValidationError(`a peer message was refused: ${parsed.problem}`)
      if (parsed.msg.type !== 'results') throw new ValidationError(`a node may relay only results, not '${parsed.msg.type}'`)
      const results = parsed.msg
      const lease = this.deps.leaseOf(results.leaseId)
      // Only the node of the lease may answer under it, and only to its owner.
      const deliverable = !!lease && lease.nodeId === node.nodeId && lease.lease.owner === toAddress && !!to && !to.closed
      if (resent) {
        // Results first sent on a direct link that closed: only plain values ever go that way, so nothing to count.
        if (results.registered || results.results.some(leavesObjects))
          throw new ValidationError('a resent result may not leave objects (those go through the coordinator first)')
        if (deliverable) out.push(resent.resent)
        this.relayedMessages++
        continue
      }
      if (deliverable && lease && to) {
        // Only results that leave objects the coordinator must count are entered in the directory; plain inline
        // values (relayed only because no direct link opened) go to the owner as they are, and cost nothing here.
        const counted = results.results.filter(leavesObjects)
        const plain = counted.length === results.results.length ? [] : results.results.filter((r) => !leavesObjects(r))
        if (counted.length) {
          const msg = { ...results, results: counted }
          this.register(to, lease.lease.jobId, node.nodeId as string, msg)
          out.push(msg)
        }
        if (plain.length) {
          out.push({ type: 'results', leaseId: results.leaseId, results: plain })
          this.relayedMessages++
        }
      } else this.discard(node, results.results)
      // What the tasks' workers let go at their end goes only now, after their results took what they contain.
      for (const r of results.results) if (r.scope) this.deps.endScope(node, r.scope)
    }
    if (out.length && to) to.send({ type: 'peer-recv', from: nodeAddress, msgs: out })
  }

  /** Enters the returns of successful results in the directory, owned by the owner, and marks the message so. */
  private register(owner: Session, jobId: string, nodeId: string, msg: PeerMessageOf<'results'>): void {
    const { objects } = this.deps
    for (const r of msg.results) {
      if (!r.ok) continue
      r.returns.forEach((x, i) => {
        const id = objectIdOf(r.taskId as TaskId, i + 1)
        const nested = i === 0 && r.nestedRefs?.length ? { nested: r.nestedRefs as ObjectId[] } : {}
        objects.create(id, jobId, owner)
        // The owner takes the value from the result itself: the directory tells only others.
        if (x instanceof Uint8Array) objects.resolve(id, { data: x, ...nested }, false)
        else objects.resolve(id, { size: x.stored, location: nodeId, ...nested }, false)
      })
    }
    msg.registered = true
  }

  /** Results nobody takes (the lease ended, its owner left): their large returns would stay in the node's store. */
  private discard(node: Session, results: readonly TaskResult[]): void {
    const orphans: string[] = []
    for (const r of results) {
      if (!r.ok) continue
      r.returns.forEach((x, i) => {
        const id = objectIdOf(r.taskId as TaskId, i + 1)
        if (!(x instanceof Uint8Array) && !this.deps.objects.read(id)?.locations?.has(node.nodeId as string)) orphans.push(id)
      })
    }
    if (orphans.length) node.send({ type: 'delete-objects', objectIds: orphans })
  }
}
