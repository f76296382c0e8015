import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as v from 'valibot'
import { invalidText } from '../sdk/protocol/index.ts'

/**
 * Who may do what (docs/trust.md). A token names a role and, for a driver, its tenant:
 * - `admin`: everything (every tenant's work, the whole state API);
 * - `driver`: the jobs of its tenant only;
 * - `node`: may join as a trusted node.
 * Without any token configured (the local default) everyone is an admin of the one tenant `default` and every node is
 * trusted; the coordinator then listens on loopback only (see `checkExposure`).
 */
export type Role = 'admin' | 'driver' | 'node'

export interface Principal {
  role: Role
  tenant: string
}

/** What one tenant may hold on the coordinator at once. */
export interface TenantQuota {
  /** Tasks the coordinator tracks for the tenant (reported by its owners, or placed by the coordinator). */
  maxPendingTasks: number
  /** Bytes of the tenant's objects the cluster stores (inline values and large objects' sizes). */
  maxStoredBytes: number
}

export const DEFAULT_QUOTA: TenantQuota = { maxPendingTasks: 2_000_000, maxStoredBytes: 64 * 1024 ** 3 }

const tenantName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, _ . -'))
const QuotaSchema = v.strictObject({
  maxPendingTasks: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  maxStoredBytes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
})

export const AuthFileSchema = v.strictObject({
  tokens: v.pipe(
    v.array(
      v.pipe(
        v.strictObject({
          token: v.pipe(v.string(), v.minLength(16, 'a token must be at least 16 characters')),
          role: v.picklist(['admin', 'driver', 'node']),
          tenant: v.optional(tenantName),
        }),
        v.check((t) => t.role !== 'driver' || t.tenant !== undefined, 'a driver token must name its tenant'),
      ),
    ),
    v.minLength(1, 'list at least one token'),
  ),
  /** Per-tenant quotas; `*` is the default for tenants not listed. */
  quotas: v.optional(v.record(v.string(), QuotaSchema)),
})
export type AuthFile = v.InferOutput<typeof AuthFileSchema>

/** The tenant of an admin or a node token that names none, and of everyone when no auth is configured. */
export const DEFAULT_TENANT = 'default'

const digest = (s: string) => createHash('sha256').update(s).digest()

/**
 * The configured tokens. Lookups compare SHA-256 digests in constant time against every entry (no early exit), so
 * neither a token's bytes nor its position leak through timing.
 */
export class Credentials {
  private readonly entries: { digest: Buffer; principal: Principal }[]
  private readonly quotas: Map<string, TenantQuota>
  /**
   * Signs tickets (PeerJS ids, node ids) this coordinator issued: fresh per process, unless the control store kept
   * one from an earlier run (`useSecret`), so tickets given out before a restart still prove who holds them.
   */
  private secret: Buffer = randomBytes(32)

  private constructor(file: AuthFile | undefined) {
    this.entries = (file?.tokens ?? []).map((t) => ({
      digest: digest(t.token),
      principal: { role: t.role, tenant: t.tenant ?? DEFAULT_TENANT },
    }))
    this.quotas = new Map(
      Object.entries(file?.quotas ?? {}).map(([tenant, q]) => [tenant, { ...DEFAULT_QUOTA, ...(file?.quotas?.['*'] ?? {}), ...q }]),
    )
  }

  /** No tokens: the local default. */
  static open(): Credentials {
    return new Credentials(undefined)
  }

  /** `--token T`: one admin token (its length is the user's call: it is the shorthand for local and test use). */
  static fromToken(token: string): Credentials {
    if (!token) throw new Error('--token must not be empty')
    return new Credentials({ tokens: [{ token, role: 'admin' }] })
  }

  static from(file: unknown): Credentials {
    const parsed = v.safeParse(AuthFileSchema, file)
    if (!parsed.success) throw new Error(invalidText('auth file', parsed.issues))
    return new Credentials(parsed.output)
  }

  /** `--auth FILE`. */
  static fromFile(path: string): Credentials {
    let text: string
    try {
      text = readFileSync(path, 'utf8')
    } catch (e) {
      throw new Error(`cannot read the auth file ${path}: ${(e as Error).message}`)
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (e) {
      throw new Error(`the auth file ${path} is not JSON: ${(e as Error).message}`)
    }
    return Credentials.from(json)
  }

  /** Whether any token is configured (else everyone is an admin of the default tenant). */
  get required(): boolean {
    return this.entries.length > 0
  }

  /**
   * The principal a token stands for; `undefined` if it is not one of ours. Without tokens configured everyone is
   * the default tenant's admin.
   */
  authenticate(token: string | undefined): Principal | undefined {
    if (!this.required) return { role: 'admin', tenant: DEFAULT_TENANT }
    const d = digest(token ?? '')
    let found: Principal | undefined
    for (const e of this.entries) if (timingSafeEqual(e.digest, d) && !found) found = e.principal
    return token ? found : undefined
  }

  quotaOf(tenant: string): TenantQuota {
    return this.quotas.get(tenant) ?? this.quotas.get('*') ?? DEFAULT_QUOTA
  }

  /** A ticket for `id` (a PeerJS id this coordinator gave out): proves on the signaling socket that we issued it. */
  ticketFor(id: string): string {
    return createHmac('sha256', this.secret).update(`peer:${id}`).digest('hex')
  }

  /** The ticket secret, to keep in the control store. */
  get ticketSecret(): Uint8Array {
    return new Uint8Array(this.secret)
  }

  /** Takes the ticket secret an earlier run of this coordinator kept (32 bytes). */
  useSecret(secret: Uint8Array): void {
    if (secret.byteLength !== 32) throw new Error('a ticket secret is 32 bytes')
    this.secret = Buffer.from(secret)
  }

  checkTicket(id: string, ticket: string): boolean {
    return /^[0-9a-f]{64}$/.test(ticket) && timingSafeEqual(Buffer.from(this.ticketFor(id), 'hex'), Buffer.from(ticket, 'hex'))
  }
}

/** The token of an HTTP request: `Authorization: Bearer …`. */
export function bearerOf(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return m?.[1]
}

const LOOPBACK = new Set(['localhost', '::1', '[::1]'])
/** A loopback name or address (an IPv4 literal 127.x.y.z, not a domain that starts with `127.`). */
export const isLoopback = (host: string): boolean => LOOPBACK.has(host) || /^127(?:\.\d{1,3}){3}$/.test(host)

/**
 * Safe by default: a coordinator without tokens serves anyone who reaches it, so it listens on loopback only unless
 * told `insecure`. Returns the refusal, if any.
 */
export function exposureProblem(host: string, credentials: Credentials, insecure: boolean): string | undefined {
  if (isLoopback(host) || credentials.required || insecure) return undefined
  return (
    `refusing to listen on ${host} without credentials: anyone who reaches it could run code on every node and read every job. ` +
    'Give tokens with --auth FILE (roles admin, driver, node) or --token T (one admin token), or pass --insecure to insist.'
  )
}

/**
 * The browser origins allowed to open our WebSockets (a page elsewhere must not drive a user's coordinator with the
 * user's network position). No Origin header means not a browser (Node, CLI): allowed, the token decides. The
 * coordinator's own origin is always allowed; localhost too unless an allow-list is given.
 */
export function originAllowed(origin: string | undefined, host: string | undefined, allowed: readonly string[] | undefined): boolean {
  if (!origin) return true
  let u: URL
  try {
    u = new URL(origin)
  } catch {
    return false
  }
  if (host && u.host === host) return true // the coordinator's own pages
  if (!allowed) return isLoopback(u.hostname)
  return allowed.includes(u.origin) || allowed.includes('*')
}
