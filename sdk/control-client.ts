import { ConnectionError, fromWireError } from './errors.ts'
import type { DriverBound, ReplyTo, RequestMessage } from './protocol/index.ts'
import type { FramedTransport } from './transport/framed.ts'

/** What a driver does with each message the coordinator sends it (replies are the client's own). */
export type DriverHandlers = {
  readonly [T in Exclude<DriverBound['type'], 'reply' | 'welcome'>]: (msg: Extract<DriverBound, { type: T }>) => void
}

/**
 * A driver's end of the control channel to the coordinator (Ray's core worker ↔ GCS client): requests and their
 * typed replies, each message of the coordinator to its handler, and one shutdown, whether the driver closed or the
 * channel was lost. A driver is sent only DriverBound messages (the coordinator sends NodeBound ones to nodes only);
 * anything else is ignored.
 */
export class ControlClient {
  private nextReqId = 1
  private readonly requests = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  private closed: string | undefined
  /** Runs before a request goes out (what this turn queued goes first, so the reply sees it). */
  beforeRequest: (msg: RequestMessage) => void = () => {}

  constructor(
    readonly transport: FramedTransport,
    private readonly handlers: DriverHandlers,
    /** The channel was lost (not closed by the driver): everything waiting must end. */
    lost: (reason: string) => void,
  ) {
    transport.onMessage = (m) => this.dispatch(m as DriverBound)
    transport.onClose = (reason) => {
      if (!this.closed) lost(reason)
    }
  }

  /** Why this client is closed, if it is. */
  get closedReason(): string | undefined {
    return this.closed
  }

  /** Sends `msg` with a fresh `reqId`; resolves with the reply's value, or rejects with its error. */
  request<M extends RequestMessage>(msg: M): Promise<ReplyTo<M>> {
    this.assertOpen()
    this.beforeRequest(msg)
    const reqId = this.nextReqId++
    return new Promise((resolve, reject) => {
      this.requests.set(reqId, { resolve: resolve as (v: unknown) => void, reject })
      this.transport.send({ ...msg, reqId })
    })
  }

  assertOpen(): void {
    if (this.closed) throw new ConnectionError(`this connection is closed (${this.closed})`)
  }

  /** Marks the client closed and fails every request waiting with `err`. False if it was closed already. */
  shutDown(reason: string, err: ConnectionError): boolean {
    if (this.closed) return false
    this.closed = reason
    for (const r of this.requests.values()) r.reject(err)
    this.requests.clear()
    return true
  }

  private dispatch(msg: DriverBound): void {
    if (msg.type === 'reply') {
      const r = this.requests.get(msg.reqId)
      if (!r) return
      this.requests.delete(msg.reqId)
      if (msg.ok) r.resolve(msg.value)
      else r.reject(fromWireError(msg.error))
      return
    }
    if (msg.type === 'welcome') return // answered during the handshake (connect.ts)
    const handle = this.handlers[msg.type] as ((m: DriverBound) => void) | undefined
    handle?.(msg)
  }
}
