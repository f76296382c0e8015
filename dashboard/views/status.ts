import { formatBytes, formatDuration, formatNumber, formatTime } from './format.ts'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

const isRecord = (v: Json | undefined): v is { [key: string]: Json } => typeof v === 'object' && v !== null && !Array.isArray(v)
const isNumberMap = (v: Json | undefined): v is { [key: string]: number } =>
  isRecord(v) && Object.values(v).every((x) => typeof x === 'number')

/**
 * The one-line cluster summary under the title, from `GET /api/status`. The route's shape is the coordinator's to
 * choose, so this reads any JSON object: scalars as `key value`, `{ total, available }` resource maps as
 * `CPU 2/4 used`, other flat maps as `3 alive, 0 dead`. Byte counts are recognised by their key.
 */
export function statusLine(status: unknown): string {
  if (typeof status === 'string') return status
  if (!isRecord(status as Json)) return ''
  return describe(status as { [key: string]: Json })
}

function describe(obj: { [key: string]: Json }): string {
  const parts: string[] = []
  for (const [key, value] of Object.entries(obj)) {
    const part = describeEntry(key, value)
    if (part) parts.push(part)
  }
  return parts.join(' · ')
}

function describeEntry(key: string, value: Json): string {
  const label = humanize(key)
  if (value === null) return ''
  if (typeof value === 'number') return `${label} ${scalar(key, value)}`
  if (typeof value === 'string') return `${label} ${value}`
  if (typeof value === 'boolean') return value ? label : ''
  if (Array.isArray(value)) return `${label} ${value.length}`
  const total = value.total ?? value.resources
  const available = value.available ?? value.availableResources
  if (isNumberMap(total) && isNumberMap(available)) {
    const used = Object.entries(total).map(([res, t]) => {
      const u = t - (available[res] ?? t)
      return isBytes(res) ? `${formatBytes(u)}/${formatBytes(t)} ${res}` : `${formatNumber(u)}/${formatNumber(t)} ${res}`
    })
    return `${label}: ${used.join(', ')} used`
  }
  if (typeof value.used === 'number' && (typeof value.total === 'number' || typeof value.capacity === 'number')) {
    const cap = (typeof value.total === 'number' ? value.total : value.capacity) as number
    const fmt = (n: number) => (isBytes(key) ? formatBytes(n) : formatNumber(n))
    return `${label} ${fmt(value.used)} / ${fmt(cap)}`
  }
  if (isNumberMap(value)) {
    const inner = Object.entries(value).map(([k, n]) => `${scalar(k, n)} ${humanize(k)}`)
    return inner.length ? `${label}: ${inner.join(', ')}` : ''
  }
  const nested = describe(value)
  return nested ? `${label}: ${nested}` : ''
}

function scalar(key: string, n: number): string {
  if (isBytes(key)) return formatBytes(n)
  if (/uptime|duration|elapsed/i.test(key)) return formatDuration(n)
  if (/time$|^since$|at$/i.test(key) && n > 1e12) return formatTime(n)
  return formatNumber(n)
}

const isBytes = (key: string) => /bytes|memory|objectstore|object_store|storeused|^size$/i.test(key)

/** `objectStoreUsed` → `object store used`, `alive_nodes` → `alive nodes`. */
function humanize(key: string): string {
  return key
    .replace(/[_-]+/g, ' ')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .replace(/\bcpu\b/g, 'CPU')
    .replace(/\bgpu\b/g, 'GPU')
}
