import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConnectionError, ValidationError } from '../sdk/errors.ts'
import { type ClientMessage, ClientMessageSchema } from '../sdk/protocol/index.ts'
import { Cluster } from './cluster.ts'
import { type MessageRoutes, messageRoutes, type Role, type RouteContext, routeMessage } from './message-routes.ts'
import { Session } from './session.ts'
import { driver, node, tick } from './test-harness.ts'

/** Every message type a client may send, read from the schema that validates them at the edge. */
const clientTypes = ClientMessageSchema.options.map((o) => o.entries.type.literal).sort()

/** The real table's senders, with handlers that only count their calls. */
function spiedRoutes() {
  const handled = vi.fn()
  // The table is built without touching its context: handlers reach it only when called.
  const real = messageRoutes({} as RouteContext)
  const routes = Object.fromEntries(
    Object.entries(real).map(([t, r]) => [t, { from: r.from, handle: handled }]),
  ) as unknown as MessageRoutes
  return { routes, handled }
}

const session = (role?: Role) => {
  const s = new Session(
    () => {},
    () => {},
  )
  s.role = role
  return s
}
const message = (type: string) => ({ type }) as ClientMessage

let cluster: Cluster | undefined
afterEach(() => cluster?.close())

describe('message routes', () => {
  it('route every message type of the client protocol (a new type without a route fails here)', () => {
    expect(clientTypes.length).toBeGreaterThan(30)
    expect(Object.keys(messageRoutes({} as RouteContext)).sort()).toEqual(clientTypes)
  })

  it('keep the per-role rules: what only drivers and only nodes may send', () => {
    const { routes } = spiedRoutes()
    const only = (role: Role) =>
      clientTypes.filter((t) => {
        const from = routes[t as ClientMessage['type']].from
        return from !== 'unadmitted' && from.length === 1 && from[0] === role
      })
    expect(only('driver')).toEqual(
      [
        'actor-lease-request',
        'cancel',
        'free',
        'get-actor',
        'kill-actor',
        'lease-request',
        'publish',
        'put',
        'put-remote',
        'register-functions',
        'state',
        'submit',
      ].sort(),
    )
    expect(only('node')).toEqual(
      [
        'actor-died',
        'heartbeat',
        'lease-blocked',
        'may-use',
        'node-drain',
        'node-update',
        'objects-spilled',
        'objects-stored',
        'relay-close',
        'relay-up',
        'task-results',
      ].sort(),
    )
  })

  it('refuse a message from a role not allowed, with the one error, before its handler runs', () => {
    const { routes, handled } = spiedRoutes()
    let refused = 0
    for (const type of clientTypes) {
      const from = routes[type as ClientMessage['type']].from
      if (from === 'unadmitted') continue
      for (const role of ['driver', 'node'] as const) {
        const send = () => routeMessage(routes, session(role), message(type))
        if (from.includes(role)) continue
        expect(send).toThrow(ValidationError)
        expect(send).toThrow(`'${type}' is only for ${role === 'driver' ? 'nodes' : 'drivers'}`)
        refused++
      }
    }
    expect(refused).toBe(23)
    expect(handled).not.toHaveBeenCalled()
  })

  it('take only hello before hello, and hello only once', () => {
    const { routes, handled } = spiedRoutes()
    for (const type of clientTypes.filter((t) => t !== 'hello')) {
      expect(() => routeMessage(routes, session(), message(type))).toThrow(ConnectionError)
      expect(() => routeMessage(routes, session(), message(type))).toThrow('say hello first')
    }
    expect(() => routeMessage(routes, session('driver'), message('hello'))).toThrow('hello was already received on this connection')
    expect(handled).not.toHaveBeenCalled()
    routeMessage(routes, session(), message('hello'))
    routeMessage(routes, session('node'), message('heartbeat'))
    expect(handled).toHaveBeenCalledTimes(2)
  })

  it('refuse a type with no route in one place', () => {
    const { routes } = spiedRoutes()
    expect(() => routeMessage(routes, session('driver'), message('no-such-type'))).toThrow("no route for message type 'no-such-type'")
  })

  it('answer a refused message on the connection: a reply to a request, else an error', async () => {
    cluster = new Cluster({ log: () => {}, monitor: false })
    const n = await node(cluster, 1)
    const d = await driver(cluster)
    n.send({ type: 'submit', tasks: [] })
    d.send({ type: 'may-use', reqId: 7, jobId: d.jobId, objectJobIds: [] })
    await tick()
    expect(n.of('error').map((m) => m.error.message)).toEqual(["'submit' is only for drivers"])
    expect(d.of('reply')).toMatchObject([{ reqId: 7, ok: false, error: { message: "'may-use' is only for nodes" } }])
  })
})
