import { TaskCancelledError } from '../sdk/errors.ts'
import type { ActorManager } from './actor-manager.ts'
import type { FunctionTable } from './gcs/functions.ts'
import type { JobTable } from './gcs/jobs.ts'
import type { NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { TaskEvents } from './gcs/task-events.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { ObjectRequests } from './object-requests.ts'
import type { ObjectTransfers } from './object-transfers.ts'
import type { PlacedTasks } from './placed-tasks.ts'
import type { Session } from './session.ts'
import type { SessionRegistry } from './sessions.ts'

export interface FateSharingDeps {
  sessions: SessionRegistry
  nodes: NodeTable
  jobs: JobTable
  functions: FunctionTable
  objects: ObjectDirectory
  events: TaskEvents
  tasks: PlacedTasks
  leases: LeaseManager
  actors: ActorManager
  transfers: ObjectTransfers
  objectRequests: ObjectRequests
  log: (line: string) => void
}

/**
 * What ends with a connection, as Ray's owners share fate with what they own: a node's close is its death (its
 * workers' channels close with it); a job root's close ends the job; any driver's close (a worker's channel too) lets
 * go of every object it owned or borrowed, and ends the tasks, leases and actors it made.
 */
export class FateSharing {
  constructor(private readonly deps: FateSharingDeps) {}

  /** A connection closed (its socket, its node's, or its worker's channel). Only its first close counts. */
  disconnected(s: Session): void {
    if (s.closed) return
    s.closed = true
    const { sessions, objects, events, tasks, leases, actors, transfers } = this.deps
    for (const sub of s.relays.values()) this.disconnected(sub)
    sessions.unlink(s)
    this.deps.objectRequests.dropBorrowed(s)
    if (s.role === 'node' && s.nodeId) this.nodeDied(s.nodeId, 'its connection closed (tab closed or network lost)')
    if (s.role === 'driver') {
      // Fate sharing, as Ray's owners: what this connection submitted and created ends with it (a job's driver, or
      // the worker of a task that submitted tasks and made actors); then it holds nothing any more.
      const why = s.isJobRoot ? 'cancelled because its job ended' : 'cancelled because the task that submitted it ended with its worker'
      tasks.ownerGone(s)
      leases.ownerGone(s)
      actors.callerGone(s)
      events.ownerGone(s, (taskId) => new TaskCancelledError(taskId, why).toWire())
      actors.ownerGone(s, s.isJobRoot ? 'its job ended (the driver disconnected)' : 'its owner (the worker of the task that made it) died')
      transfers.dropUploads(s)
      if (s.peerId) {
        sessions.dropPeer(s.peerId)
        transfers.onHolderGone(s.peerId)
      }
      objects.ownerDied(s, s.isJobRoot ? `its driver (job ${s.jobId})` : `the worker that made it (job ${s.jobId})`)
      if (s.isJobRoot && s.jobId) {
        events.jobEnded(s.jobId, (taskId) => new TaskCancelledError(taskId, why).toWire())
        this.endJob(s.jobId)
      }
    }
  }

  /** A node is dead (silent, or its connection closed): what it held is lost, what ran there fails or retries. */
  nodeDied(nodeId: string, reason: string): void {
    if (!this.deps.nodes.markDead(nodeId, reason)) return
    this.deps.log(`[coordinator] node ${nodeId.slice(0, 8)} is DEAD: ${reason}`)
    const s = this.deps.sessions.dropNode(nodeId)
    if (s && !s.closed) s.close(4002, `declared dead: ${reason}`)
    const lost = this.deps.objects.removeNode(nodeId)
    if (lost.length) this.deps.log(`[coordinator] ${lost.length} object(s) lost with node ${nodeId.slice(0, 8)}`)
    this.deps.transfers.onNodeDead(nodeId)
    this.deps.leases.onNodeDead(nodeId)
    this.deps.tasks.onNodeDead(nodeId)
  }

  /**
   * An actor's incarnation ended (killed, died, restarting): its worker's channel ends with it at once, and what
   * that worker owned shares its fate, before any later call can reach what it made.
   */
  incarnationEnded(actorId: string): void {
    for (const sub of this.deps.sessions.actorChannelsOf(actorId)) this.disconnected(sub)
    this.deps.sessions.forgetActor(actorId)
  }

  /** A worker of an ended job that owned things owns nothing any more: it can go now. */
  ownerEmpty(owner: Session): void {
    const carrier = owner.carrier
    if (!carrier || this.deps.jobs.get(owner.jobId ?? '')?.state === 'RUNNING') return
    carrier.node.send({ type: 'retire-workers', channels: [carrier.channel] })
  }

  /**
   * The job's driver left. Its own tasks, actors and objects went with it (above); the nodes retire the job's idle
   * workers, whose channels then close and take what they owned too. Detached actors, and what they own, live on.
   */
  private endJob(jobId: string): void {
    this.deps.jobs.finish(jobId)
    if (!this.deps.actors.hasLiveDetached(jobId)) this.deps.functions.forgetStored(jobId)
    for (const n of this.deps.sessions.allNodes()) {
      const idle = [...n.relays].filter(([, sub]) => sub.jobId === jobId && !this.deps.objects.owns(sub)).map(([c]) => c)
      n.send({ type: 'retire-workers', jobId, channels: idle })
    }
  }
}
