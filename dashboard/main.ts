import { takeToken } from '../sdk/page-token.ts'
import type { ActorRow, JobRow, NodeRow, TaskRow, TaskSummary } from '../sdk/state-api.ts'
import { ActorsView } from './views/actors.ts'
import { errorText, getJson, isUnauthorized, isUnreachable } from './views/api.ts'
import { byId } from './views/dom.ts'
import { formatTime } from './views/format.ts'
import { JobsView } from './views/jobs.ts'
import { NodesView } from './views/nodes.ts'
import { Poller } from './views/poller.ts'
import { statusLine } from './views/status.ts'
import { TaskSummaryView } from './views/task-summary.ts'
import { TasksView } from './views/tasks.ts'

// First, before any request: the token leaves the address bar, and every request carries it.
const token = takeToken()

const POLL_MS = 1000
const TIMEOUT_MS = 4000

const statusEl = byId('cluster-status', HTMLElement)
const liveEl = byId('live', HTMLElement)
const banner = byId('offline-banner', HTMLElement)
const authBanner = byId('auth-banner', HTMLElement)
const mainEl = byId('main', HTMLElement)

const nodes = new NodesView()
const jobs = new JobsView()
const summary = new TaskSummaryView()
const actors = new ActorsView()
const tasks = new TasksView(() => poller.now())

let lastSuccess: number | null = null

/** One endpoint's answer or why there is none, so one failing route does not blank the others. */
type Result<T> = { ok: true; value: T } | { ok: false; error: unknown }

async function load<T>(path: string, signal: AbortSignal): Promise<Result<T>> {
  try {
    return { ok: true, value: await getJson<T>(path, signal, token) }
  } catch (error) {
    return { ok: false, error }
  }
}

interface Sink<T> {
  render(value: T): void
  fail(message: string): void
}

function apply<T>(result: Result<T>, sink: Sink<T>): void {
  if (!result.ok) {
    if (!isUnreachable(result.error)) sink.fail(errorText(result.error))
    return
  }
  try {
    sink.render(result.value)
  } catch (err) {
    // A response of an unexpected shape breaks its own section only, not the ones rendered after it.
    sink.fail(`Unexpected response: ${errorText(err)}`)
  }
}

const statusSink: Sink<unknown> = {
  render: (s) => {
    statusEl.textContent = statusLine(s) || 'Cluster is up.'
  },
  fail: (message) => {
    statusEl.textContent = message
  },
}

async function tick(signal: AbortSignal): Promise<void> {
  // While the coordinator is away or refuses us, probe one route instead of six: each failed fetch is an error line
  // in the console.
  if (!banner.hidden || !authBanner.hidden) {
    const probe = await load<unknown>('/api/status', signal)
    if (!probe.ok && isUnreachable(probe.error)) {
      showUnreachable(errorText(probe.error))
      return
    }
    if (!probe.ok && isUnauthorized(probe.error)) {
      showUnauthorized(errorText(probe.error))
      return
    }
  }
  const tasksUrl = tasks.url()
  const [status, nodeRows, jobRows, summaryData, taskRows, actorRows] = await Promise.all([
    load<unknown>('/api/status', signal),
    load<NodeRow[]>('/api/nodes', signal),
    load<JobRow[]>('/api/jobs', signal),
    load<TaskSummary>('/api/summary/tasks', signal),
    load<TaskRow[]>(tasksUrl, signal),
    load<ActorRow[]>('/api/actors', signal),
  ])
  const all = [status, nodeRows, jobRows, summaryData, taskRows, actorRows]
  // Only when nothing answered is the coordinator gone; a single failing route is that section's problem.
  if (all.every((r) => !r.ok && isUnreachable(r.error))) {
    showUnreachable(status.ok ? 'no answer' : errorText(status.error))
    return
  }
  // A missing or refused token is refused by every route: one line says how to get in, not the same error six times.
  // (If only some routes refuse, e.g. for a token's role, those sections say so themselves.)
  if (!status.ok && all.every((r) => !r.ok && isUnauthorized(r.error))) {
    showUnauthorized(errorText(status.error))
    return
  }
  showReachable()

  apply(status, statusSink)
  apply(nodeRows, nodes)
  apply(jobRows, jobs)
  apply(summaryData, summary)
  apply(taskRows, { render: (rows) => tasks.render(tasksUrl, rows), fail: (m) => tasks.fail(m) })
  apply(actorRows, actors)
}

function showUnreachable(reason: string): void {
  const since = lastSuccess === null ? 'No data received yet.' : `Showing data from ${formatTime(lastSuccess)}.`
  banner.textContent = `Coordinator unreachable (${reason}) — retrying every second. ${since}`
  banner.hidden = false
  authBanner.hidden = true
  mainEl.classList.add('stale')
  liveEl.textContent = 'offline'
  liveEl.className = 'live live-offline'
}

/** The coordinator is there but will not show us the state: say how to get in, not that it is gone. */
function showUnauthorized(message: string): void {
  authBanner.textContent = message
  authBanner.hidden = false
  banner.hidden = true
  mainEl.classList.add('stale')
  if (lastSuccess === null) statusEl.textContent = 'No access to this coordinator.'
  liveEl.textContent = 'no access'
  liveEl.className = 'live live-offline'
}

function showReachable(): void {
  lastSuccess = Date.now()
  banner.hidden = true
  authBanner.hidden = true
  mainEl.classList.remove('stale')
  liveEl.textContent = `live · ${formatTime(lastSuccess)}`
  liveEl.className = 'live live-ok'
}

const poller = new Poller({ intervalMs: POLL_MS, timeoutMs: TIMEOUT_MS, tick })

document.addEventListener('visibilitychange', () => {
  if (document.hidden && banner.hidden && authBanner.hidden) {
    liveEl.textContent = 'paused'
    liveEl.className = 'live live-paused'
  }
})

poller.start()
