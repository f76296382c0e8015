import { createHmac } from 'node:crypto'
import type { IceTransportPolicy, RTCIceServerLike } from '../sdk/protocol/index.ts'

/** What `shoal start --ice-server … --turn-secret … --turn-ttl … --ice-transport-policy …` says. */
export interface IceOptions {
  /** `stun:`/`stuns:` and `turn:`/`turns:` URLs (RFC 7064/7065), e.g. `turn:turn.example.org:3478?transport=udp`. */
  servers?: string[]
  /** The TURN server's shared secret (coturn's `static-auth-secret`): credentials are minted per participant. */
  turnSecret?: string
  /** How long minted TURN credentials stay valid (default a day, as the TURN REST API draft suggests). */
  turnTtlSeconds?: number
  /** `relay` forces every data channel through TURN (locked-down networks, tests). Default `all`. */
  transportPolicy?: IceTransportPolicy
}

export const DEFAULT_TURN_TTL_SECONDS = 24 * 3600
/** At most this many ICE URLs: each costs every participant a gathering attempt per link. */
const MAX_ICE_SERVERS = 16

const ICE_URL = /^(stuns?|turns?):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:(\d{1,5}))?(\?transport=(udp|tcp))?$/

/** Why an ICE URL is not one a browser takes, or undefined if it is. */
export function iceUrlProblem(url: string): string | undefined {
  const m = ICE_URL.exec(url)
  if (!m) return `${JSON.stringify(url)} is not an ICE server URL (stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp], turns:…)`
  const [, scheme, , , port, query] = m
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `${url}: the port must be 1-65535`
  if (query && scheme?.startsWith('stun')) return `${url}: ?transport is for turn: and turns: URLs only`
  return undefined
}

const isTurn = (url: string) => url.startsWith('turn')

/** Checks the options once, at start-up: a bad URL or a TURN server without a secret is a clear error. */
export function checkIceOptions(o: IceOptions): void {
  const servers = o.servers ?? []
  if (servers.length > MAX_ICE_SERVERS) throw new Error(`at most ${MAX_ICE_SERVERS} --ice-server URLs`)
  for (const url of servers) {
    const problem = iceUrlProblem(url)
    if (problem) throw new Error(`--ice-server: ${problem}`)
  }
  const turn = servers.some(isTurn)
  if (turn && !o.turnSecret)
    throw new Error(
      "a turn: or turns: --ice-server needs --turn-secret (the TURN server's static-auth-secret), so the coordinator can mint credentials",
    )
  if (o.turnSecret !== undefined && !turn) throw new Error('--turn-secret is given but no --ice-server is a turn: or turns: URL')
  if (o.turnSecret !== undefined && o.turnSecret.length < 8) throw new Error('--turn-secret must be at least 8 characters')
  const ttl = o.turnTtlSeconds
  if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 60 || ttl > 7 * 24 * 3600))
    throw new Error('--turn-ttl must be a whole number of seconds from 60 to 604800 (a week)')
  if (o.transportPolicy === 'relay' && !turn)
    throw new Error('--ice-transport-policy relay needs a turn: or turns: --ice-server (no channel could open otherwise)')
}

/**
 * TURN credentials the TURN REST API way (coturn's `use-auth-secret`): the username is `expiry:participant` (expiry
 * in Unix seconds), the password base64(HMAC-SHA1(secret, username)). The TURN server recomputes the HMAC and refuses
 * an expired username, so no long-lived password ever reaches a page.
 */
export function mintTurnCredential(
  secret: string,
  participant: string,
  ttlSeconds: number,
  nowMs: number,
): { username: string; credential: string } {
  const username = `${Math.floor(nowMs / 1000) + ttlSeconds}:${participant}`
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') }
}

/** The ICE settings each participant's welcome carries: STUN as given, TURN with credentials minted for it. */
export class IceConfig {
  private readonly stun: string[]
  private readonly turn: string[]
  readonly transportPolicy: IceTransportPolicy

  constructor(
    private readonly o: IceOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    checkIceOptions(o)
    this.stun = (o.servers ?? []).filter((u) => !isTurn(u))
    this.turn = (o.servers ?? []).filter(isTurn)
    this.transportPolicy = o.transportPolicy ?? 'all'
  }

  /** The iceServers for one participant (a node id or a driver's peer id). */
  serversFor(participant: string): RTCIceServerLike[] {
    const out: RTCIceServerLike[] = []
    if (this.stun.length) out.push({ urls: this.stun })
    if (this.turn.length && this.o.turnSecret)
      out.push({
        urls: this.turn,
        ...mintTurnCredential(this.o.turnSecret, participant, this.o.turnTtlSeconds ?? DEFAULT_TURN_TTL_SECONDS, this.now()),
      })
    return out
  }
}
