import { ValidationError } from './errors.ts'

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
}

/**
 * Parses a size in bytes or with a unit: `1048576`, `96MiB`, `1GiB`, `500MB`, `1.5 GiB`.
 * @example parseSize('96MiB') // 100663296
 */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return Math.floor(input)
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input)
    const unit = UNITS[(m?.[2] || 'b').toLowerCase()]
    if (m && unit) return Math.floor(Number(m[1]) * unit)
  }
  throw new ValidationError(`${what} must be a number of bytes or a size like 96MiB, 1GiB or 500MB; got ${JSON.stringify(input)}`)
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`
}
