import { Hono } from 'hono'
import * as v from 'valibot'
import { type StateQuery, StateQuerySchema } from '../../sdk/protocol/index.ts'
import type { Cluster } from '../cluster.ts'

/** Parses `filter=key=value` / `filter=key!=value` query parameters (repeatable). */
function parseFilters(raw: string[]): StateQuery['filters'] {
  return raw.map((f) => {
    const m = /^([A-Za-z]+)(!=|=)(.*)$/.exec(f)
    if (!m) throw new Error(`bad filter '${f}': use key=value or key!=value`)
    return [m[1] as string, m[2] as '=' | '!=', m[3] as string]
  })
}

/** The REST state API (read-only): what the dashboard and the CLI read. Same data as `mesh.state`. */
export function stateApi(cluster: Cluster): Hono {
  const api = new Hono()
  const list =
    (resource: StateQuery['resource']) =>
    (c: {
      req: { queries(k: string): string[] | undefined; query(k: string): string | undefined }
      json(b: unknown, s?: number): Response
    }) => {
      try {
        const limit = c.req.query('limit')
        const q = v.parse(StateQuerySchema, {
          resource,
          filters: parseFilters(c.req.queries('filter') ?? []),
          ...(limit && { limit: Number(limit) }),
        })
        return c.json(cluster.query(q))
      } catch (e) {
        return c.json({ error: { code: 'VALIDATION', message: (e as Error).message } }, 400)
      }
    }
  api.get('/tasks', list('tasks'))
  api.get('/nodes', list('nodes'))
  api.get('/jobs', list('jobs'))
  api.get('/actors', list('actors'))
  api.get('/objects', list('objects'))
  api.get('/summary/tasks', list('summary-tasks'))
  api.get('/status', list('status'))
  api.get('/tasks/:id', (c) => {
    const row = cluster.events.get(c.req.param('id'))
    return row ? c.json(row) : c.json({ error: { code: 'NOT_FOUND', message: `no task ${c.req.param('id')}` } }, 404)
  })
  return api
}

/** Prometheus text exposition of the headline gauges. */
export function metrics(cluster: Cluster): string {
  const s = cluster.status()
  const lines = [
    '# TYPE shoal_nodes gauge',
    `shoal_nodes{state="alive"} ${s.nodes.alive}`,
    `shoal_nodes{state="dead"} ${s.nodes.dead}`,
    '# TYPE shoal_tasks_pending gauge',
    `shoal_tasks_pending ${s.tasks.pending}`,
    '# TYPE shoal_objects gauge',
    `shoal_objects ${s.objects}`,
    '# TYPE shoal_resources_total gauge',
    ...Object.entries(s.resources.total).map(([k, n]) => `shoal_resources_total{resource="${k}"} ${n}`),
    '# TYPE shoal_resources_used gauge',
    ...Object.entries(s.resources.used).map(([k, n]) => `shoal_resources_used{resource="${k}"} ${n}`),
  ]
  return `${lines.join('\n')}\n`
}
