import { takeToken } from '../sdk/page-token.ts'
import { parseSize } from '../sdk/size.ts'
import { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import type { NodeAgent } from './node/agent.ts'
import type { NodeActivity } from './node/ports.ts'
import type { PlasmaStore } from './object-store/plasma-store.ts'
import { startNode } from './start-node.ts'

/** The node page: reads its settings from the URL, registers, shows what it does, and rejoins if dropped. */
const token = takeToken()
const params = new URLSearchParams(location.search)
const address = params.get('address') ?? location.origin
const cpus = Number(params.get('cpus') ?? navigator.hardwareConcurrency ?? 2)
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
const redact = (text: string): string => (token ? text.split(token).join('…') : text)
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
    li.append(t, redact(e.text))
    frag.append(li)
  }
  pendingLog = []
  log.prepend(frag)
  while (log.childElementCount > LOG_LINES) log.lastElementChild?.remove()
}

if (!Number.isFinite(cpus) || cpus <= 0) {
  document.body.dataset.state = 'disconnected'
  $('state').textContent = 'bad ?cpus'
  throw new Error(`?cpus must be a positive number; got ${params.get('cpus')}`)
}

$('address').textContent = address
$('cpus').textContent = String(cpus)

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
    const node = await startNode({ address, cpus, objectStoreMemory, ...(token && { token }), ...(name && { name }) })
    const { agent } = node
    agent.onActivity = activity
    agent.onClose = (reason) => {
      document.body.dataset.state = 'disconnected'
      $('state').textContent = 'disconnected'
      global.peers?.stop()
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
  notice.textContent = `Not admitted: ${redact(reason)}. Reopen this page with ?token=<your token> to join.`
  notice.hidden = false
  activity({ kind: 'disconnected', text: `refused: ${reason}` })
}

setInterval(() => {
  drawLog()
  const a = global.agent
  if (!a) return
  $('workers').textContent = String(a.workerCount)
  $('running').textContent = String(a.stats.running)
  $('done').textContent = `${a.stats.finished} / ${a.stats.failed}`
}, 250)

void join()
