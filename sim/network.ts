import type { Cluster } from '../coordinator/cluster.ts'
import { receiveFrame } from '../coordinator/edge.ts'
import { Session } from '../coordinator/session.ts'
import { FramedTransport } from '../sdk/transport/framed.ts'
import type { Rng } from './rng.ts'

/**
 * One simulated connection between a client and the coordinator: two FIFO queues of frames, as a WebSocket keeps
 * order per direction. Frames wait in them until the simulation delivers them, one at a time.
 */
export class Link {
  readonly toServer: Uint8Array[] = []
  readonly toClient: Uint8Array[] = []
  closed = false
  /** A graceful close under way: what was sent before it is still delivered, then the close. */
  closing: { reason: string; byClient: boolean } | undefined
  readonly session: Session
  readonly client: MemoryTransport

  constructor(
    readonly name: string,
    private readonly network: MemoryNetwork,
    private readonly cluster: Cluster,
  ) {
    this.session = new Session(
      (bytes) => {
        if (!this.closed && !this.closing) this.toClient.push(bytes.slice())
      },
      (_code, reason) => network.closeGracefully(this, reason, false),
    )
    this.client = new MemoryTransport(this, network)
  }

  /** Delivers the oldest frame one way; once a closing link has delivered what it had, the close itself. */
  deliver(toServer: boolean): void {
    if (this.closed) return
    const frame = (toServer ? this.toServer : this.toClient).shift()
    if (frame) {
      if (toServer) receiveFrame(this.cluster, this.session, frame, this.cluster.frameLimit(this.session))
      else this.client.deliver(frame)
      return
    }
    const c = this.closing
    if (c && !(c.byClient ? this.toServer.length : this.toClient.length)) this.network.close(this, c.reason)
  }

  /** Frames waiting, plus one for a close waiting to be delivered. */
  get pending(): number {
    return this.toServer.length + this.toClient.length + (this.closing && !this.closed ? 1 : 0)
  }
}

/** The client's end of a Link: what a Mesh or a NodeAgent talks through in the simulation. */
export class MemoryTransport extends FramedTransport {
  constructor(
    private readonly link: Link,
    private readonly network: MemoryNetwork,
  ) {
    super()
  }

  deliver(frame: Uint8Array): void {
    this.receive(frame)
  }

  /** The other side closed the connection. */
  lost(reason: string): void {
    this.closeWith(reason, true)
  }

  protected sendFrame(frame: Uint8Array): void {
    if (!this.link.closed && !this.link.closing) this.link.toServer.push(frame.slice())
  }

  protected closeChannel(reason: string): void {
    this.network.closeGracefully(this.link, reason, true)
  }
}

/**
 * Every connection of a simulated cluster. Delivery is up to the simulation: `deliverOne` picks a random connection
 * and direction and delivers its oldest frame, so frames of different connections interleave in every order the
 * real network allows, and those of one connection never overtake each other.
 */
export class MemoryNetwork {
  readonly links: Link[] = []

  constructor(private readonly cluster: Cluster) {}

  connect(name: string): Link {
    const link = new Link(name, this, this.cluster)
    this.links.push(link)
    return link
  }

  get pending(): number {
    let n = 0
    for (const l of this.links) n += l.pending
    return n
  }

  /** Delivers one frame, chosen at random among the connections that have one waiting. Returns false if none had. */
  deliverOne(rng: Rng): boolean {
    const ready = this.links.filter((l) => !l.closed && l.pending > 0)
    if (!ready.length) return false
    const link = rng.pick(ready)
    link.deliver(link.toServer.length > 0 && (link.toClient.length === 0 || rng.chance(0.5)))
    return true
  }

  /** A close by one side: what that side sent before is delivered first (TCP order), then the other side learns. */
  closeGracefully(link: Link, reason: string, byClient: boolean): void {
    if (link.closed || link.closing) return
    link.closing = { reason, byClient }
    // The side that closed takes no more frames from the other.
    if (byClient) link.toClient.length = 0
    else link.toServer.length = 0
  }

  /** Closes a connection at once, as a dropped socket or a crashed tab: frames in flight are lost, both ends learn. */
  close(link: Link, reason: string): void {
    if (link.closed) return
    link.closed = true
    link.toServer.length = 0
    link.toClient.length = 0
    this.cluster.disconnected(link.session)
    link.client.lost(reason)
  }
}
