import type { IceTransportPolicy } from '../protocol/index.ts'

/** What of an RTCPeerConnection the watch reads: the browser's, or node-datachannel's polyfill (no candidate errors). */
interface WatchedConnection {
  readonly iceConnectionState: string
  readonly iceGatheringState: string
  readonly remoteDescription: unknown
  addEventListener(type: string, listener: (ev: Event) => void): void
}
type CandidateEvent = Event & { candidate?: { candidate?: string; type?: string | null } | null }
type CandidateErrorEvent = Event & { url?: string; errorCode?: number; errorText?: string }

/** Candidate errors kept per connection (a TURN server that refuses answers once per URL and address family). */
const MAX_ERRORS = 4

/**
 * What ICE did on one peer connection, to say why its data channel did not open: the local candidates gathered by
 * type (none under the relay policy means no TURN allocation), the STUN/TURN servers' errors (a wrong TURN secret is
 * `401 Unauthorized`), and the states it stopped in.
 */
export class IceWatch {
  private readonly local = new Map<string, number>()
  private readonly errors: string[] = []

  constructor(
    private readonly pc: WatchedConnection,
    private readonly policy: IceTransportPolicy,
  ) {
    pc.addEventListener('icecandidate', (ev) => {
      const c = (ev as CandidateEvent).candidate
      if (!c?.candidate) return
      const type = c.type ?? /\btyp (\w+)/.exec(c.candidate)?.[1] ?? 'unknown'
      this.local.set(type, (this.local.get(type) ?? 0) + 1)
    })
    pc.addEventListener('icecandidateerror', (ev) => {
      const e = ev as CandidateErrorEvent
      const line = `${e.url ?? 'an ICE server'} answered ${e.errorCode ?? '?'}${e.errorText ? ` ${e.errorText}` : ''}`
      if (this.errors.length < MAX_ERRORS && !this.errors.includes(line)) this.errors.push(line)
    })
  }

  /**
   * Why no channel opened, if ICE is to blame: the other end answered the offer (signaling worked) or a STUN/TURN
   * server refused us. Undefined when the peer never answered (it is gone: not a network problem).
   */
  failure(): string | undefined {
    if (!this.pc.remoteDescription && !this.errors.length) return undefined
    const gathered = [...this.local].map(([type, n]) => `${n} ${type}`).join(', ') || 'none'
    const policy = this.policy === 'relay' ? ' (relay only: TURN candidates)' : ''
    const errors = this.errors.length ? `; ${this.errors.join('; ')}` : ''
    return `ICE ${this.pc.iceConnectionState}, gathering ${this.pc.iceGatheringState}, local candidates${policy}: ${gathered}${errors}`
  }
}
