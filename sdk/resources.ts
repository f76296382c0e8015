/**
 * Resource arithmetic, shared by the coordinator's scheduler and the node (Ray shares its ResourceSet between the
 * GCS and the raylet). Quantities are counted in fixed point, 1/10,000 of a unit as Ray's FixedPoint, so a hundred
 * tasks of 0.1 CPU give back exactly what they took: floating point would leave 3.9999999999999996.
 */

/** Quantities as users write them: `{ CPU: 0.5, custom: 2 }`. */
export type Resources = Record<string, number>
/** Ray's RESOURCE_UNIT_SCALING. */
export const RESOURCE_UNITS = 10_000

/** A resource set in whole units of 1/10,000 (integers only). */
export type ResourceUnits = Record<string, number>

/** Converts user quantities to units (rounded to the nearest 1/10,000, as Ray's FixedPoint does). */
export function toUnits(r: Resources): ResourceUnits {
  const out: ResourceUnits = {}
  for (const k in r) {
    const u = Math.round((r[k] as number) * RESOURCE_UNITS)
    if (u !== 0) out[k] = u
  }
  return out
}

/** Converts units back to quantities for people and the state API. */
export function fromUnits(u: ResourceUnits): Resources {
  const out: Resources = {}
  for (const k in u) out[k] = (u[k] as number) / RESOURCE_UNITS
  return out
}

/** Why a quantity cannot be used, in Ray's words, or undefined if it can. */
export function quantityProblem(name: string, quantity: number): string | undefined {
  if (!Number.isFinite(quantity)) return `the quantity of resource ${name} must be a finite number`
  if (quantity < 0) return `the quantity of resource ${name} cannot be negative`
  if (quantity !== 0 && Math.round(quantity * RESOURCE_UNITS) === 0)
    return `the precision of the fractional quantity of resource ${name} cannot go beyond 0.0001`
  return undefined
}

export function fits(req: ResourceUnits, have: ResourceUnits): boolean {
  for (const k in req) if ((req[k] as number) > (have[k] ?? 0)) return false
  return true
}

export function allocate(req: ResourceUnits, from: ResourceUnits): void {
  for (const k in req) from[k] = (from[k] ?? 0) - (req[k] as number)
}

export function release(req: ResourceUnits, to: ResourceUnits): void {
  for (const k in req) to[k] = (to[k] ?? 0) + (req[k] as number)
}

/** What `req` asks for beyond what `have` holds (for "cannot be scheduled" messages). */
export function shortfall(req: ResourceUnits, have: ResourceUnits): ResourceUnits {
  const out: ResourceUnits = {}
  for (const k in req) if ((req[k] as number) > (have[k] ?? 0)) out[k] = (req[k] as number) - (have[k] ?? 0)
  return out
}

/** `{CPU: 8}` as Ray prints a resource request: `{CPU: 8, memory: 0.5}`. */
export function formatResources(u: ResourceUnits): string {
  const parts = Object.entries(fromUnits(u)).map(([k, v]) => `${k}: ${v}`)
  return `{${parts.join(', ')}}`
}
