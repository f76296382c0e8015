import type { Resources } from '../../sdk/protocol/index.ts'

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '—'
  let value = n
  let unit = 0
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${BYTE_UNITS[unit]}`
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '—'
  const d = Math.max(0, ms)
  if (d < 1000) return `${Math.round(d)} ms`
  if (d < 60_000) return `${(d / 1000).toFixed(d < 10_000 ? 2 : 1)} s`
  const s = Math.floor(d / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
}

/** Wall-clock time of day for a ms-since-epoch timestamp; the date too when it is not today. */
export function formatTime(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '—'
  const t = new Date(ms)
  const time = t.toLocaleTimeString(undefined, { hour12: false })
  return t.toDateString() === new Date().toDateString() ? time : `${t.toLocaleDateString()} ${time}`
}

/** IDs are long hex strings; their first 8 digits are what people compare at a glance, as in Ray's dashboard. */
export function shortId(id: string | null | undefined): string {
  return id ? id.slice(0, 8) : '—'
}

/** Renders `{CPU: 64, GPU: 1}` as `{CPU: 64, GPU: 1}` — the way users wrote it in `options()`. */
export function formatResources(r: Resources | null | undefined): string {
  if (!r) return '{}'
  const parts = Object.entries(r).map(([k, v]) => `${k}: ${formatNumber(v)}`)
  return `{${parts.join(', ')}}`
}

export function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/\.?0+$/, '')
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`
}
