import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { type StateQuery, StateQuerySchema } from '../../sdk/protocol/index.ts'
import type { Cluster } from '../cluster.ts'
import type { Viewer } from '../tenancy.ts'

/** Parses `filter=key=value` / `filter=key!=value` query parameters (repeatable). */
function parseFilters(raw: string[]): StateQuery['filters'] {
  return raw.map((f) => {
    const m = /^([A-Za-z]+)(!=|=)(.*)$/.exec(f)
    if (!m) throw new Error(`bad filter '${f}': use key=value or key!=value`)
    return [m[1] as string, m[2] as '=' | '!=', m[3] as string]
  })
}

/**
 * The REST state API: what the dashboard and the CLI read (same data as `mesh.state`), and one admin action: lifting
 * a node's quarantine.
 */
export function stateApi(cluster: Cluster): Hono {
  const api = new Hono()
  const list = (resource: StateQuery['resource']) => (c: Context) => {
    try {
      const limit = c.req.query('limit')
      const q = v.parse(StateQuerySchema, {
        resource,
        filters: parseFilters(c.req.queries('filter') ?? []),
        ...(limit && { limit: Number(limit) }),
      })
      return c.json(cluster.query(q, c.get('viewer')))
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
    const row = cluster.taskRow(c.req.param('id'), c.get('viewer'))
    return row ? c.json(row) : c.json({ error: { code: 'NOT_FOUND', message: `no task ${c.req.param('id')}` } }, 404)
  })
  api.delete('/nodes/:id/quarantine', (c) => {
    const viewer: Viewer = c.get('viewer')
    const id = c.req.param('id')
    if (!viewer.admin) return c.json({ error: { code: 'FORBIDDEN', message: 'only an admin token may lift a quarantine' } }, 403)
    if (!cluster.releaseQuarantine(id)) return c.json({ error: { code: 'NOT_FOUND', message: `no quarantined node ${id}` } }, 404)
    return c.json({ nodeId: id, quarantined: null })
  })
  return api
}

/**
 * Prometheus text exposition of the headline gauges, as `viewer` may see them: cluster-wide gauges for an admin;
 * per-tenant gauges labelled with the tenant (a driver sees only its own).
 */
export function metrics(cluster: Cluster, viewer: Viewer): string {
  const s = cluster.status(viewer)
  const lines = [
    '# TYPE shoal_nodes gauge',
    `shoal_nodes{state="alive"} ${s.nodes.alive}`,
    `shoal_nodes{state="dead"} ${s.nodes.dead}`,
    '# TYPE shoal_resources_total gauge',
    ...Object.entries(s.resources.total).map(([k, n]) => `shoal_resources_total{resource="${label(k)}"} ${n}`),
    '# TYPE shoal_resources_used gauge',
    ...Object.entries(s.resources.used).map(([k, n]) => `shoal_resources_used{resource="${label(k)}"} ${n}`),
  ]
  if (viewer.admin)
    lines.push(
      '# TYPE shoal_tasks_pending gauge',
      `shoal_tasks_pending ${s.tasks.pending}`,
      '# TYPE shoal_objects gauge',
      `shoal_objects ${s.objects}`,
      // What data channels did not carry: with STUN/TURN working these stay near 0 (the relay is the VPS's bandwidth).
      '# TYPE shoal_relayed_peer_messages_total counter',
      `shoal_relayed_peer_messages_total ${cluster.relay.relayedMessages}`,
      '# TYPE shoal_relayed_object_bytes_total counter',
      `shoal_relayed_object_bytes_total ${cluster.transfers.relayedBytes}`,
    )
  const tenants = [...cluster.tenantGauges()].filter(([t]) => viewer.admin || t === viewer.tenant)
  lines.push(
    '# TYPE shoal_tenant_jobs_running gauge',
    ...tenants.map(([t, g]) => `shoal_tenant_jobs_running{tenant="${label(t)}"} ${g.jobs}`),
  )
  lines.push(
    '# TYPE shoal_tenant_tasks_pending gauge',
    ...tenants.map(([t, g]) => `shoal_tenant_tasks_pending{tenant="${label(t)}"} ${g.pending}`),
  )
  lines.push('# TYPE shoal_tenant_objects gauge', ...tenants.map(([t, g]) => `shoal_tenant_objects{tenant="${label(t)}"} ${g.objects}`))
  return `${lines.join('\n')}\n`
}

/** A Prometheus label value, escaped. */
const label = (v: string) => v.replace(/[\\"\n]/g, (ch) => (ch === '\n' ? '\\n' : `\\${ch}`))
