import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { createNodeWebSocket } from '@hono/node-ws'
import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { mountPeerSignaling } from './peerjs.ts'

interface Msg {
  type: string
  src?: string
  dst?: string
  payload?: { msg?: string; sdp?: string }
}

const events: { type: 'open' | 'close'; peerId: string }[] = []
const eventWaiters = new Set<() => void>()
const app = new Hono()
const { injectWebSocket, upgradeWebSocket } = createNodeWebSocket({ app })
const signaling = mountPeerSignaling(app, '/peerjs', upgradeWebSocket, {
  expireMs: 300,
  onEvent: (e) => {
    events.push(e)
    for (const wake of eventWaiters) wake()
  },
})
let server: ReturnType<typeof serve>
let port = 0
const sockets: WebSocket[] = []

async function waitEvent(type: 'open' | 'close', peerId: string) {
  while (!events.some((e) => e.type === type && e.peerId === peerId)) {
    await new Promise<void>((r) => eventWaiters.add(r))
  }
}

// A fake peer speaking the wire protocol, with the exact URL peerjs@1.5.5 builds for path '/peerjs'.
function connect(id: string, { key = 'shoal', token = 'tok' } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/peerjs/peerjs?key=${key}&id=${id}&token=${token}&version=1.5.5`)
  sockets.push(ws)
  const inbox: Msg[] = []
  const waiters = new Set<() => void>()
  let isClosed = false
  const wakeAll = () => {
    for (const w of waiters) w()
    waiters.clear()
  }
  ws.on('message', (d) => {
    inbox.push(JSON.parse(String(d)))
    wakeAll()
  })
  const closed = new Promise<void>((r) =>
    ws.once('close', () => {
      isClosed = true
      wakeAll()
      r()
    }),
  )
  const opened = new Promise<void>((r) => ws.once('open', () => r()))
  return {
    ws,
    inbox,
    closed,
    send: async (m: unknown) => {
      await opened
      ws.send(typeof m === 'string' ? m : JSON.stringify(m))
    },
    async next(type: string): Promise<Msg> {
      for (;;) {
        const i = inbox.findIndex((m) => m.type === type)
        if (i >= 0) return inbox.splice(i, 1)[0] as Msg
        if (isClosed) throw new Error(`${id}: socket closed before ${type}; got ${JSON.stringify(inbox)}`)
        await new Promise<void>((r) => waiters.add(r))
      }
    },
  }
}

beforeAll(async () => {
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve())
  })
  injectWebSocket(server)
  port = (server.address() as AddressInfo).port
})

afterAll(async () => {
  for (const ws of sockets) ws.close()
  signaling.close()
  await new Promise<void>((r) => server.close(() => r()))
})

describe('PeerJS signaling', () => {
  it('serves ids and server info over HTTP with CORS', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/peerjs/shoal/id?ts=17000000000000.123&version=1.5.5`)
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(await res.text()).toMatch(/^[0-9a-f-]{36}$/)
    const info = await fetch(`http://127.0.0.1:${port}/peerjs`)
    expect((await info.json()).name).toBeTypeOf('string')
    expect((await fetch(`http://127.0.0.1:${port}/peerjs/shoal/peers?ts=1`)).status).toBe(401)
  })

  it('relays signals between peers, queues for late joiners, expires for no-shows', async () => {
    const a = connect('A')
    const b = connect('B')
    await Promise.all([a.next('OPEN'), b.next('OPEN')])
    await waitEvent('open', 'B')
    expect(signaling.peers().sort()).toEqual(['A', 'B'])

    // src comes from the server, never from the client.
    await a.send({ type: 'OFFER', src: 'mallory', dst: 'B', payload: { sdp: 'x' } })
    expect(await b.next('OFFER')).toEqual({ type: 'OFFER', src: 'A', dst: 'B', payload: { sdp: 'x' } })

    await a.send({ type: 'OFFER', dst: 'late', payload: { sdp: 'early' } })
    const late = connect('late')
    await late.next('OPEN')
    expect(await late.next('OFFER')).toMatchObject({ src: 'A', dst: 'late', payload: { sdp: 'early' } })

    // The LEAVE is sent first, so if it were bounced its EXPIRE would arrive before the ghost2 one.
    await a.send({ type: 'LEAVE', dst: 'ghost' })
    await a.send({ type: 'CANDIDATE', dst: 'ghost2', payload: {} })
    expect(await a.next('EXPIRE')).toEqual({ type: 'EXPIRE', src: 'ghost2', dst: 'A' })
    expect(a.inbox).toEqual([])
  })

  it('rejects a taken id and a wrong key', async () => {
    const impostor = connect('A', { token: 'other' })
    expect((await impostor.next('ID-TAKEN')).payload?.msg).toBe('ID is taken')
    await impostor.closed
    expect(signaling.peers()).toContain('A')

    const wrong = connect('C', { key: 'nope' })
    expect((await wrong.next('ERROR')).payload?.msg).toBe('Invalid key provided')
    await wrong.closed
    expect(signaling.peers()).not.toContain('C')
  })

  it('survives malformed input and forgets closed peers', async () => {
    const d = connect('D')
    const e = connect('E')
    await Promise.all([d.next('OPEN'), e.next('OPEN')])
    for (const junk of ['not json', '42', 'null', '{"type":"OFFER"}', '{"type":"BOGUS","dst":"E"}', '{"type":"HEARTBEAT"}']) {
      await d.send(junk)
    }
    d.ws.send(Buffer.from([1, 2, 3]))
    await d.send({ type: 'ANSWER', dst: 'E', payload: { sdp: 'still alive' } })
    expect(await e.next('ANSWER')).toMatchObject({ src: 'D', payload: { sdp: 'still alive' } })
    expect(e.inbox).toEqual([])

    e.ws.close()
    await waitEvent('close', 'E')
    expect(signaling.peers()).not.toContain('E')
  })
})
