import { ValidationError } from '../sdk/errors.ts'
import { parsePeerAddress, taskConnectionAddress } from '../sdk/peer-address.ts'
import { Session } from './session.ts'

const NONE: ReadonlySet<Session> = new Set()

/** How many worker channels one node may carry (a worker per CPU, and per job it ran). */
const MAX_RELAY_CHANNELS = 4096

/**
 * Who is connected, and where: nodes by their id, drivers by their peer id, the worker channels each node carries
 * and those that host an actor. Bookkeeping only: what a connection takes with it when it closes is fate-sharing.ts'.
 */
export class SessionRegistry {
  private readonly nodes = new Map<string, Session>()
  /** Drivers by their peer id: owners of leases (results find them by it), and pages serving their own large puts. */
  private readonly peers = new Map<string, Session>()
  /** The channels of the workers that host each actor: they end with the actor's incarnation. */
  private readonly actorChannels = new Map<string, Set<Session>>()

  /** @param closed what a worker channel's close does (its session is made here). */
  constructor(private readonly closed: (s: Session) => void) {}

  node(nodeId: string): Session | undefined {
    return this.nodes.get(nodeId)
  }

  /** Every node's session. */
  allNodes(): IterableIterator<Session> {
    return this.nodes.values()
  }

  /** Who holds objects at `location`: a node (by its id) or a driver serving its own puts (by its peer id). */
  holder(location: string): Session | undefined {
    return this.nodes.get(location) ?? this.peers.get(location)
  }

  addNode(nodeId: string, s: Session): void {
    this.nodes.set(nodeId, s)
  }

  /** Forgets a node's session and returns it (the node is dead). */
  dropNode(nodeId: string): Session | undefined {
    const s = this.nodes.get(nodeId)
    this.nodes.delete(nodeId)
    return s
  }

  /** `s` is a driver at `peerId` from now on; the id must be free. */
  addPeer(peerId: string, s: Session): void {
    if (this.peers.has(peerId)) throw new ValidationError('that peerId is taken by another connection')
    s.peerId = peerId
    this.peers.set(peerId, s)
  }

  dropPeer(peerId: string): void {
    this.peers.delete(peerId)
  }

  /** `s`, a worker's channel, hosts `actorId`: it ends with the actor's incarnation (see `actorChannelsOf`). */
  hostsActor(s: Session, actorId: string): void {
    s.actorId = actorId
    let set = this.actorChannels.get(actorId)
    if (!set) this.actorChannels.set(actorId, (set = new Set()))
    set.add(s)
  }

  /** The channels of the workers that host `actorId` now. */
  actorChannelsOf(actorId: string): ReadonlySet<Session> {
    return this.actorChannels.get(actorId) ?? NONE
  }

  forgetActor(actorId: string): void {
    this.actorChannels.delete(actorId)
  }

  /**
   * The session of one of `node`'s workers' channels, made by its first frame; undefined for a channel that was
   * ended (a late frame of its worker is dropped).
   */
  channel(node: Session, channel: string): Session | undefined {
    if (node.endedRelays.has(channel)) return undefined
    let sub = node.relays.get(channel)
    if (!sub) {
      if (node.relays.size >= MAX_RELAY_CHANNELS)
        throw new ValidationError(`a node may carry at most ${MAX_RELAY_CHANNELS} worker channels`)
      sub = new Session(
        (bytes) => node.send({ type: 'relay-down', channel, frame: bytes }),
        () => this.closed(sub as Session),
      )
      sub.carrier = { node, channel }
      node.relays.set(channel, sub)
    }
    return sub
  }

  /** `s` closed: it is no longer one of its node's channels, nor one of its actor's. */
  unlink(s: Session): void {
    s.relays.clear()
    if (s.carrier) {
      s.carrier.node.relays.delete(s.carrier.channel)
      s.carrier.node.endedRelays.add(s.carrier.channel)
    }
    if (s.actorId) this.actorChannels.get(s.actorId)?.delete(s)
  }

  /** The session at a peer address: a node (its id), a driver (its `d-…` id), or a task's connection (`node/worker/job`). */
  at(address: string): Session | undefined {
    const a = parsePeerAddress(address)
    if (a.kind === 'driver') return this.peers.get(a.peerId)
    if (a.kind === 'node') return this.nodes.get(a.nodeId)
    return this.nodes.get(a.nodeId)?.relays.get(a.channel)
  }

  /** The peer address of `s` (see `at`), if it has one. */
  addressOf(s: Session): string | undefined {
    if (s.role === 'node') return s.nodeId
    if (s.carrier) return taskConnectionAddress(s.carrier.node.nodeId as string, s.carrier.channel)
    return s.peerId
  }
}
