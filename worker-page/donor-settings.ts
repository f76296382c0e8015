/**
 * What the donor chose on the /node page, kept in `sessionStorage`: the tab's own storage, as the token is. It
 * survives a reload (the tab rejoins as a new node with the same CPUs, still paused if it was) and belongs to this tab
 * only: two tabs of one profile are two nodes and may give different CPUs, and a pause never carries over to a tab
 * opened another day (localStorage would do both).
 */
export interface DonorSettings {
  cpus: number
  paused: boolean
  /** Give one CPU only while the tab is hidden or the machine runs on battery. */
  throttle: boolean
}

const KEY = 'shoal-node-settings'

/** The stored settings over the defaults (the URL's `?cpus`); anything stored that is not valid is ignored. */
export function loadSettings(defaults: DonorSettings): DonorSettings {
  let raw: unknown
  try {
    raw = JSON.parse(sessionStorage.getItem(KEY) ?? 'null')
  } catch {
    return defaults
  }
  if (!raw || typeof raw !== 'object') return defaults
  const r = raw as Partial<Record<keyof DonorSettings, unknown>>
  return {
    cpus: typeof r.cpus === 'number' && Number.isInteger(r.cpus) && r.cpus >= 1 ? r.cpus : defaults.cpus,
    paused: typeof r.paused === 'boolean' ? r.paused : defaults.paused,
    throttle: typeof r.throttle === 'boolean' ? r.throttle : defaults.throttle,
  }
}

export function saveSettings(s: DonorSettings): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(s))
  } catch {
    // Storage refused (a sandboxed frame): the settings hold until the tab closes.
  }
}

/** The most CPUs the input offers: what the machine has, twice over (as many as the URL asked, if more). */
export const maxCpusFor = (hardware: number, asked: number): number => Math.max(1, hardware * 2, Math.ceil(asked))

/** Why the node gives one CPU only now, or undefined: the tab is hidden, or the machine runs on battery. */
export function throttleReason(hidden: boolean, onBattery: boolean): string | undefined {
  if (hidden) return 'the tab is hidden'
  if (onBattery) return 'on battery'
  return undefined
}

interface BatteryLike extends EventTarget {
  charging: boolean
}

/**
 * Calls `changed(onBattery)` now and whenever the machine starts or stops running on battery. Where the browser has no
 * Battery Status API (Firefox, Safari), it never reports being on battery.
 */
export async function watchBattery(changed: (onBattery: boolean) => void): Promise<void> {
  const get = (navigator as { getBattery?: () => Promise<BatteryLike> }).getBattery
  if (!get) return changed(false)
  try {
    const battery = await get.call(navigator)
    const tell = () => changed(!battery.charging)
    battery.addEventListener('chargingchange', tell)
    tell()
  } catch {
    changed(false)
  }
}
