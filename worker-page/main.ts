import { redact, takeToken } from '../sdk/page-token.ts'
import { parseSize } from '../sdk/size.ts'
import { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import { type DonorSettings, loadSettings, maxCpusFor, saveSettings, throttleReason, watchBattery } from './donor-settings.ts'
import type { NodeAgent } from './node/agent.ts'
import type { NodeActivity } from './node/ports.ts'
import type { PlasmaStore } from './object-store/plasma-store.ts'
import { type StartedNode, startNode } from './start-node.ts'

/** The node page: reads its settings from the URL, registers, shows what it does, and rejoins if dropped. */
const token = takeToken()
const params = new URLSearchParams(location.search)
const address = params.get('address') ?? location.origin
const askedCpus = Number(params.get('cpus') ?? navigator.hardwareConcurrency ?? 2)
const name = params.get('name') ?? undefined
const memoryHint = ((navigator as { deviceMemory?: number }).deviceMemory ?? 4) * 1024 ** 3
const objectStoreMemory = params.has('objectStoreMemory')
  ? parseSize(params.get('objectStoreMemory') as string, 'objectStoreMemory')
  : Math.floor(memoryHint * 0.3)

const $ = (id: string) => document.getElementById(id) as HTMLElement
const log = $('log')
const LOG_LINES = 200
let pendingLog: { at: Date; text: string }[] = []
/** Nothing the page shows carries the token's value, whatever echoes it (an error message, a task's failure). */
/** Activity is buffered and drawn a few times a second: two DOM writes per task would cost more than a no-op task. */
function activity(a: NodeActivity | { kind: string; text: string }): void {
  pendingLog.push({ at: new Date(), text: a.text })
  if (pendingLog.length > LOG_LINES) pendingLog = pendingLog.slice(-LOG_LINES)
}
function drawLog(): void {
  if (!pendingLog.length) return
  const frag = document.createDocumentFragment()
  for (const e of pendingLog.reverse()) {
    const li = document.createElement('li')
    const t = document.createElement('time')
    t.textContent = e.at.toLocaleTimeString()
    li.append(t, redact(e.text, token))
    frag.append(li)
  }
  pendingLog = []
  log.prepend(frag)
  while (log.childElementCount > LOG_LINES) log.lastElementChild?.remove()
}

if (!Number.isFinite(askedCpus) || askedCpus <= 0) {
  document.body.dataset.state = 'disconnected'
  $('state').textContent = 'bad ?cpus'
  throw new Error(`?cpus must be a positive number; got ${params.get('cpus')}`)
}

$('address').textContent = address

/** How long a Leave waits for running work before handing it back (the node's owners retry it elsewhere). */
const LEAVE_DEADLINE_MS = 60_000
const maxCpus = maxCpusFor(navigator.hardwareConcurrency ?? 2, askedCpus)
let settings: DonorSettings = loadSettings({ cpus: askedCpus, paused: false, throttle: false })
if (settings.cpus > maxCpus) settings = { ...settings, cpus: maxCpus }
let onBattery = false
/** The donor pressed Leave: a close after that is the end, not a drop to rejoin from. */
let leaving = false
let started: StartedNode | undefined

/** Why the node gives one CPU only now, if it does. */
const throttled = (): string | undefined => (settings.throttle ? throttleReason(document.hidden, onBattery) : undefined)
/** The CPUs the node gives now: the donor's choice, or one while throttled. */
const effectiveCpus = (): number => (throttled() ? Math.min(1, settings.cpus) : settings.cpus)
$('cpus').textContent = String(effectiveCpus())

/** What the page exposes as `window.shoalNode`, for people debugging a node (and for tests). */
interface ShoalNodeGlobal {
  agent?: NodeAgent
  store?: PlasmaStore
  peers?: PeerMesh
  nodeId?: string
}
const global: ShoalNodeGlobal = {}
;(window as unknown as { shoalNode: ShoalNodeGlobal }).shoalNode = global

async function join(attempt = 0): Promise<void> {
  try {
    const node = await startNode({
      address,
      cpus: effectiveCpus(),
      objectStoreMemory,
      ...(settings.paused && { paused: true }),
      ...(token && { token }),
      ...(name && { name }),
    })
    started = node
    const { agent } = node
    agent.onActivity = activity
    agent.onClose = (reason) => {
      document.body.dataset.state = 'disconnected'
      $('state').textContent = 'disconnected'
      global.peers?.stop()
      if (leaving) return left()
      if (isRefusal(reason)) return refused(reason)
      // A dropped node rejoins as a new node: the coordinator already retried its tasks elsewhere.
      if (!reason.includes('closed by client')) setTimeout(() => void join(1), 1000)
    }
    const nodeId = agent.nodeId
    global.agent = agent
    global.store = node.store
    global.nodeId = nodeId
    $('node-id').textContent = nodeId
    document.body.dataset.nodeId = nodeId
    document.body.dataset.state = 'registered'
    $('state').textContent = 'registered'
    showControls()
    const peers = new PeerMesh(nodeId, address, node.peerjsPath, node.iceServers, node.peerjsKey)
    global.peers = peers
    node.attachPeers(peers)
    peers.start().then(
      () => ($('peer').textContent = `joined as ${nodeId.slice(0, 8)}`),
      (e: Error) => ($('peer').textContent = `unavailable: ${e.message}`),
    )
  } catch (e) {
    document.body.dataset.state = 'disconnected'
    const message = (e as Error).message
    if (isRefusal(message)) return refused(message)
    $('state').textContent = 'cannot register'
    activity({ kind: 'disconnected', text: `cannot register: ${message}` })
    setTimeout(() => void join(attempt + 1), Math.min(10_000, 1000 * 2 ** attempt))
  }
}

/** The coordinator turned this node away for its token (it closes with 4001 and says why, naming the token). */
const isRefusal = (reason: string): boolean => /\btoken\b/i.test(reason)

/**
 * Says why the node is not admitted, and stops: asking again with the same token would be refused again, so the
 * page waits to be reopened with another.
 */
function refused(reason: string): void {
  document.body.dataset.state = 'disconnected'
  $('state').textContent = 'refused'
  const notice = $('notice')
  notice.textContent = `Not admitted: ${redact(reason, token)}. Reopen this page with ?token=<your token> to join.`
  notice.hidden = false
  activity({ kind: 'disconnected', text: `refused: ${reason}` })
}

// The donor's controls: every change is kept in the tab's storage and told to the coordinator at once.
const controls = $('controls') as HTMLFieldSetElement
const cpusInput = $('cpus-input') as HTMLInputElement
const pauseButton = $('pause') as HTMLButtonElement
const resumeButton = $('resume') as HTMLButtonElement
const throttleBox = $('throttle') as HTMLInputElement
const clearButton = $('clear') as HTMLButtonElement
cpusInput.max = String(maxCpus)
cpusInput.value = String(settings.cpus)
throttleBox.checked = settings.throttle

function change(next: Partial<DonorSettings>): void {
  settings = { ...settings, ...next }
  saveSettings(settings)
  apply()
}

/** Brings the node in line with the settings (CPUs given, paused) and shows them. */
function apply(): void {
  const cpus = effectiveCpus()
  $('cpus').textContent = String(cpus)
  const a = global.agent
  if (a && !leaving && document.body.dataset.state === 'registered') {
    if (Number.isInteger(cpus) && cpus !== a.cpus) a.setCpus(cpus)
    if (settings.paused !== a.paused) a.setPaused(settings.paused)
  }
  showControls()
}

function showControls(): void {
  const joined = document.body.dataset.state === 'registered' && !leaving
  controls.disabled = !joined
  pauseButton.disabled = !joined || settings.paused
  resumeButton.disabled = !joined || !settings.paused
  if (settings.paused) document.body.dataset.paused = ''
  else delete document.body.dataset.paused
  if (joined) $('state').textContent = settings.paused ? 'paused' : 'registered'
  const why = throttled()
  const status = settings.paused
    ? 'Paused: what runs here finishes, and no new work comes until you resume.'
    : why
      ? `Throttled to 1 CPU: ${why}.`
      : ''
  if (joined) $('donor-status').textContent = status
}

cpusInput.addEventListener('change', () => {
  const n = Number(cpusInput.value)
  if (!Number.isInteger(n) || n < 1 || n > maxCpus) {
    $('donor-status').textContent = `CPUs must be a whole number from 1 to ${maxCpus}.`
    cpusInput.value = String(settings.cpus)
    return
  }
  change({ cpus: n })
})
pauseButton.addEventListener('click', () => change({ paused: true }))
resumeButton.addEventListener('click', () => change({ paused: false }))
throttleBox.addEventListener('change', () => change({ throttle: throttleBox.checked }))
document.addEventListener('visibilitychange', () => apply())
void watchBattery((b) => {
  onBattery = b
  apply()
})

$('leave').addEventListener('click', () => {
  const a = global.agent
  if (!a || leaving) return
  leaving = true
  showControls()
  document.body.dataset.state = 'leaving'
  $('state').textContent = 'leaving'
  $('donor-status').textContent = 'Leaving: running work finishes, and the objects only this tab holds are copied to another node…'
  a.leave(LEAVE_DEADLINE_MS).then(
    ({ lost }) =>
      ($('donor-status').textContent = lost
        ? `Left. ${lost} object(s) could not be copied before the deadline.`
        : 'Left. Every task finished here or was handed back, and every object was copied elsewhere.'),
    (e: Error) => ($('donor-status').textContent = `Left without draining: ${e.message}`),
  )
})

/** The node left on its donor's word: it stays out (reload the page to join again); its stored data may go now. */
function left(): void {
  document.body.dataset.state = 'left'
  $('state').textContent = 'left'
  controls.disabled = true
  clearButton.disabled = false
  clearButton.title = ''
}

clearButton.addEventListener('click', () => {
  const node = started
  if (!node || !leaving) return
  clearButton.disabled = true
  node.store.destroy().then(
    () => ($('donor-status').textContent = 'Stored data cleared: this node\u2019s IndexedDB database and OPFS files are gone.'),
    (e: Error) => {
      clearButton.disabled = false
      $('donor-status').textContent = `Could not clear the stored data: ${e.message}`
    },
  )
})

const RUNNING_ROWS = 50
function drawLive(): void {
  const a = global.agent
  if (!a) return
  const live = a.live
  $('cpu-time').textContent = formatSeconds(live.cpuMs / 1000)
  const store = global.store
  if (store) {
    $('objects').textContent = String(store.objectCount)
    $('bytes').textContent = formatBytes(store.used + store.spilledBytes)
  }
  const peers = global.peers?.openPeers ?? []
  $('peers').textContent = String(peers.length)
  $('peers').title = peers.join('\n')
  const now = performance.now()
  const rows = live.running.slice(0, RUNNING_ROWS).map((r) => {
    const tr = document.createElement('tr')
    for (const text of [redact(r.name, token), r.jobId, formatSeconds((now - r.since) / 1000)]) {
      const td = document.createElement('td')
      td.textContent = text
      tr.append(td)
    }
    return tr
  })
  $('running-now').replaceChildren(...rows)
}

const formatSeconds = (s: number): string => (s < 10 ? `${s.toFixed(1)} s` : s < 3600 ? `${Math.round(s)} s` : `${(s / 3600).toFixed(1)} h`)
function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`
}

setInterval(() => {
  drawLog()
  const a = global.agent
  if (!a) return
  $('workers').textContent = String(a.workerCount)
  $('running').textContent = String(a.stats.running)
  $('done').textContent = `${a.stats.finished} / ${a.stats.failed}`
  drawLive()
}, 250)

void join()
