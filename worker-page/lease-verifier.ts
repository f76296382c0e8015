import { BoundedSet } from '../sdk/bounded.ts'
import { type Lease, leaseSigningText } from '../sdk/protocol/index.ts'

/** How many checked leases are remembered (a lease is checked once, on its first push). */
const REMEMBERED = 10_000

const fromHex = (hex: string): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** Checks a lease an owner shows (the simulator gives a synchronous one, so a seeded run replays exactly). */
export interface LeaseCheck {
  verify(lease: Lease): boolean | Promise<boolean>
}

/**
 * Checks the leases owners show this node: each must be signed by the coordinator with this node's own key (HMAC-
 * SHA256, Web Crypto), so the node runs only work the coordinator placed here, without asking it per task.
 */
export class LeaseVerifier implements LeaseCheck {
  private readonly key: Promise<CryptoKey>
  private readonly good = new BoundedSet<string>(REMEMBERED)
  private readonly encoder = new TextEncoder()

  constructor(
    private readonly nodeId: string,
    keyHex: string,
  ) {
    this.key = crypto.subtle.importKey('raw', fromHex(keyHex), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'])
  }

  /** Whether this lease is for this node and signed by the coordinator. */
  async verify(lease: Lease): Promise<boolean> {
    if (lease.nodeId !== this.nodeId) return false
    const text = leaseSigningText(lease)
    const key = `${text}|${lease.sig}`
    if (this.good.has(key)) return true
    const ok = await crypto.subtle.verify('HMAC', await this.key, fromHex(lease.sig), this.encoder.encode(text))
    if (ok) this.good.add(key)
    return ok
  }
}
