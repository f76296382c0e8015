import { ConnectionError, ProtocolError, ValidationError } from '../sdk/errors.ts'
import type { ObjectId } from '../sdk/ids.ts'
import type { ClientMessage, ClientMessageOf } from '../sdk/protocol/index.ts'
import type { ActorManager } from './actor-manager.ts'
import type { Admission } from './admission.ts'
import { type MessageHandler, receiveFrame } from './edge.ts'
import type { FunctionTable } from './gcs/functions.ts'
import type { NodeTable } from './gcs/nodes.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { LeaseManager } from './lease-manager.ts'
import type { NodeControls } from './node-controls.ts'
import type { ObjectRequests } from './object-requests.ts'
import type { ObjectTransfers } from './object-transfers.ts'
import type { PeerRelay } from './peer-relay.ts'
import type { PlacedTasks } from './placed-tasks.ts'
import type { Session } from './session.ts'
import type { SessionRegistry } from './sessions.ts'
import type { StateReader } from './state-query.ts'
import type { TaskRequests } from './task-requests.ts'
import type { Tenancy } from './tenancy.ts'

/** What a connection is, once it said hello. */
export type Role = 'driver' | 'node'

/** Who may send a message: connections of these roles, or (`hello` only) a connection that has not said hello yet. */
export type Senders = readonly Role[] | 'unadmitted'

export interface Route<M extends ClientMessage> {
  from: Senders
  handle(s: Session, msg: M): void
}

/** A route for every message a client may send: a type left out does not compile (and a unit test says which). */
export type MessageRoutes = { readonly [T in ClientMessage['type']]: Route<ClientMessageOf<T>> }

/** What the routes hand messages to. Routes check who sends and delegate; the rules live in these managers. */
export interface RouteContext extends MessageHandler {
  readonly admission: Admission
  readonly sessions: SessionRegistry
  readonly tenancy: Tenancy
  readonly functions: FunctionTable
  readonly nodes: NodeTable
  readonly objects: ObjectDirectory
  readonly objectRequests: ObjectRequests
  readonly transfers: ObjectTransfers
  readonly tasks: PlacedTasks
  readonly taskRequests: TaskRequests
  readonly leases: LeaseManager
  readonly actors: ActorManager
  readonly relay: PeerRelay
  readonly state: StateReader
  readonly nodeControls: NodeControls
  disconnected(s: Session): void
  log(line: string): void
}

const anyone: Senders = ['driver', 'node']
const drivers: Senders = ['driver']
const nodes: Senders = ['node']

/**
 * Hands `msg` to its route if `s` may send it; else throws the one refusal for its case. The caller answers what is
 * thrown (see Cluster.handle).
 */
export function routeMessage(routes: MessageRoutes, s: Session, msg: ClientMessage): void {
  const route = routes[msg.type] as Route<ClientMessage> | undefined
  if (!route) throw new ProtocolError(`no route for message type '${String(msg.type).slice(0, 40)}'`)
  if (route.from === 'unadmitted') {
    if (s.role) throw new ValidationError(`${msg.type} was already received on this connection`)
  } else {
    if (!s.role) throw new ConnectionError('say hello first')
    if (!route.from.includes(s.role)) throw new ValidationError(`'${msg.type}' is only for ${route.from.map((r) => `${r}s`).join(' and ')}`)
  }
  route.handle(s, msg)
}

const ok = (s: Session, reqId: number, value: unknown) => s.send({ type: 'reply', reqId, ok: true, value })

/** Every message type → who may send it → what handles it. */
export function messageRoutes(c: RouteContext): MessageRoutes {
  return {
    hello: { from: 'unadmitted', handle: (s, msg) => c.admission.hello(s, msg) },

    // Work: functions, tasks through the coordinator, leases of workers for the owner's own scheduling.
    'register-functions': {
      from: drivers,
      handle: (s, msg) => {
        for (const f of msg.functions) c.functions.put(s.jobId as string, f)
      },
    },
    submit: { from: drivers, handle: (s, msg) => c.taskRequests.submit(s, msg.tasks) },
    'task-events': { from: anyone, handle: (s, msg) => c.taskRequests.events(s, msg) },
    cancel: {
      from: drivers,
      handle: (s, msg) => {
        c.taskRequests.cancel(s, msg.objectId as ObjectId, msg.force)
        ok(s, msg.reqId, null)
      },
    },
    'task-results': {
      from: nodes,
      handle: (s, msg) => {
        c.tasks.onResults(s, msg.results)
        // What the tasks' workers let go at their end goes only now, after their results took what they contain.
        for (const r of msg.results) if (r.scope) c.objectRequests.endScope(s, r.scope)
      },
    },
    'lease-request': {
      from: drivers,
      handle: (s, msg) => {
        const address = c.sessions.addressOf(s)
        if (!address) throw new ValidationError('a driver must say its peerId in hello to hold leases')
        c.leases.request(s, address, msg)
      },
    },
    'lease-cancel': { from: anyone, handle: (s, msg) => c.leases.cancel(s, msg.shapeId) },
    'lease-return': { from: anyone, handle: (s, msg) => c.leases.giveBack(s, msg.leaseIds) },
    'lease-blocked': { from: nodes, handle: (s, msg) => c.leases.blocked(s, msg.leaseId, msg.blocked) },

    // Actors. Another tenant's actor is answered as no actor at all.
    'actor-lease-request': {
      from: drivers,
      handle: (s, msg) => c.actors.requestLease(s, msg.actorId, c.tenancy.sees(s, c.actors.jobOf(msg.actorId))),
    },
    'get-actor': {
      from: drivers,
      handle: (s, msg) => {
        const found: { handleId?: string } = c.actors.lookup(s.tenant, msg.name, msg.namespace)
        // A detached actor outlives its handles: the object they were counted through may be gone.
        if (found.handleId && !c.objects.has(found.handleId)) delete found.handleId
        ok(s, msg.reqId, found)
      },
    },
    'kill-actor': {
      from: drivers,
      handle: (s, msg) => {
        if (!c.tenancy.sees(s, c.actors.jobOf(msg.actorId))) throw new ValidationError(`no actor ${msg.actorId} exists on this coordinator`)
        c.actors.kill(msg.actorId, msg.noRestart)
        ok(s, msg.reqId, null)
      },
    },
    'actor-died': { from: nodes, handle: (s, msg) => c.actors.workerDied(msg.actorId, s.nodeId as string, msg.attempt, msg.reason) },

    // Objects: the directory, under tenancy and the tenant's quota, and their bytes.
    publish: { from: drivers, handle: (s, msg) => c.objectRequests.publish(s, msg.objects) },
    put: { from: drivers, handle: (s, msg) => c.objectRequests.put(s, msg) },
    'put-remote': { from: drivers, handle: (s, msg) => c.objectRequests.putRemote(s, msg) },
    'object-chunk': { from: anyone, handle: (s, msg) => c.objectRequests.chunk(s, msg) },
    subscribe: { from: anyone, handle: (s, msg) => c.objectRequests.subscribe(s, msg.objectIds) },
    release: { from: anyone, handle: (s, msg) => c.objectRequests.release(s, msg.objectIds) },
    free: {
      from: drivers,
      handle: (s, msg) => {
        c.objectRequests.free(s, msg.objectIds)
        ok(s, msg.reqId, null)
      },
    },
    borrow: { from: anyone, handle: (s, msg) => c.objectRequests.borrow(s, msg.objectIds) },
    unborrow: { from: anyone, handle: (s, msg) => c.objectRequests.unborrow(s, msg.objectIds) },
    'fetch-objects': { from: anyone, handle: (s, msg) => c.objectRequests.fetch(s, msg.objectIds) },
    'upload-failed': { from: anyone, handle: (s, msg) => c.transfers.onUploadFailed(s, msg.objectId as ObjectId, msg.reason) },
    'objects-stored': { from: nodes, handle: (s, msg) => c.transfers.onStored(s, msg.objects) },
    'objects-spilled': {
      from: nodes,
      handle: (s, msg) => {
        for (const id of msg.objectIds) c.objects.setSpilled(id as ObjectId, s.nodeId as string, msg.spilled)
        if (msg.log) c.log(`[node ${s.nodeId?.slice(0, 8)}] ${msg.log}`)
      },
    },
    // The jobs the task's job may see, by the one rule of tenancy (as a driver of its tenant would).
    'may-use': { from: nodes, handle: (s, msg) => ok(s, msg.reqId, c.tenancy.sameTenant(msg.jobId, msg.objectJobIds)) },

    // Nodes, and the channels they carry.
    heartbeat: {
      from: nodes,
      handle: (s, msg) => c.nodes.heartbeat(s.nodeId as string, msg.running, msg.workers, msg.storeUsed, msg.storeSpilled),
    },
    // The donor's controls on its /node page: about the sending node only.
    'node-update': { from: nodes, handle: (s, msg) => c.nodeControls.update(s, msg) },
    'node-drain': { from: nodes, handle: (s, msg) => c.nodeControls.drain(s, msg) },
    'peer-send': { from: anyone, handle: (s, msg) => c.relay.send(s, msg) },
    // A frame from one of a node's workers goes through the same edge checks as a socket's, on a channel session of
    // its own (made by its first frame), so the worker's messages are ordered with the node's.
    'relay-up': {
      from: nodes,
      handle: (s, msg) => {
        const sub = c.sessions.channel(s, msg.channel)
        if (sub) receiveFrame(c, sub, msg.frame, c.frameLimit(sub))
      },
    },
    'relay-close': {
      from: nodes,
      handle: (s, msg) => {
        for (const name of msg.channels) {
          const sub = s.relays.get(name)
          if (sub) c.disconnected(sub)
        }
      },
    },

    // The state API. Drivers only, as finding, killing and cancelling are: a node's session names no tenant of its own
    // (its tenant reads 'default'), so it would act on the default tenant's work.
    state: { from: drivers, handle: (s, msg) => ok(s, msg.reqId, c.state.query(msg.query, s)) },
  }
}
