import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { decodeFrames, encodeFrame } from '../sdk/codec.ts'
import { ConnectionError, connect, ObjectRef, TaskError, ValidationError } from '../sdk/index.ts'
import type { ServerMessage } from '../sdk/protocol/index.ts'
import { useCluster } from './fixtures/cluster.ts'

// Every error a user can cause gets a clear message and changes no state.
const cluster = useCluster({ nodes: 1, cpus: 2, token: 'let-me-in' })

async function rawSocket(url: string): Promise<{ ws: WebSocket; next(): Promise<ServerMessage> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`)
  const queue: ServerMessage[] = []
  const waiters: ((m: ServerMessage) => void)[] = []
  ws.on('message', (d: Buffer) => {
    for (const m of decodeFrames(new Uint8Array(d)) as ServerMessage[]) {
      const w = waiters.shift()
      if (w) w(m)
      else queue.push(m)
    }
  })
  await new Promise((r) => ws.once('open', r))
  return { ws, next: () => new Promise((r) => (queue.length ? r(queue.shift() as ServerMessage) : waiters.push(r))) }
}

describe('bad input', () => {
  it('an address where no coordinator answers gives ConnectionError', async () => {
    const err = await connect({ address: 'http://127.0.0.1:9', timeout: 3000 }).catch((e) => e)
    expect(err).toBeInstanceOf(ConnectionError)
    expect(err.message).toMatch(/no Shoal coordinator answered at ws:\/\/127\.0\.0\.1:9/)
  })

  it('a wrong or missing token gives ConnectionError; the right one connects', async () => {
    const wrong = await connect({ address: cluster().url, token: 'nope' }).catch((e) => e)
    expect(wrong).toBeInstanceOf(ConnectionError)
    expect(wrong.message).toMatch(/refused the token/)
    const missing = await connect({ address: cluster().url }).catch((e) => e)
    expect(missing.message).toMatch(/requires a token/)
    const mesh = await cluster().connect()
    expect(mesh.jobId).toMatch(/^[0-9a-f]{8}$/)
  })

  it('bad options, non-functions and unserializable arguments fail at the call, naming the problem', async () => {
    const mesh = await cluster().connect()
    const f = mesh.remote(function f(x: unknown) {
      return x
    })
    expect(() => mesh.remote(42 as never)).toThrow(ValidationError)
    expect(() => mesh.remote(42 as never)).toThrow(/remote\(\) takes a function or a class; got number/)
    expect(() => f.options({ numCpus: 'two' } as never)).toThrow(/invalid option 'numCpus'/)
    expect(() => f.options({ maxRetires: 1 } as never)).toThrow(/unknown option 'maxRetires'/)
    expect(() => f.options({ resources: { CPU: 2 } })).toThrow(/use numCpus instead of resources\.CPU/)
    expect(() => f.remote({ cb: () => 1 })).toThrow(/argument 0 of f\.cb is a function/)
    await expect(mesh.get(42 as never)).rejects.toThrow(/expected ObjectRefs/)
    await expect(
      mesh.wait(
        [
          mesh
            .remote(function one() {
              return 1
            })
            .remote(),
        ],
        { numReturns: 2 },
      ),
    ).rejects.toThrow(/numReturns \(2\) is more than/)
    // As Ray's ray.wait([]): nothing to wait for is an answer, not an error.
    expect(await mesh.wait([])).toEqual({ ready: [], notReady: [] })
    // A return value that cannot be serialized is the task's error, not a hang.
    const bad = mesh.remote(function bad() {
      return { cb: () => 1 }
    })
    const err = await mesh.get(bad.remote()).catch((e) => e)
    expect(err).toBeInstanceOf(TaskError)
    expect(err.message).toMatch(/return value of bad\.cb is a function/)
    // Nothing above changed the cluster: a good call still works.
    expect(await mesh.get(f.remote(5))).toBe(5)
  })

  it('a malformed, invalid or oversized frame gets an error reply and the coordinator stays up', async () => {
    const { ws, next } = await rawSocket(cluster().url)
    ws.send(Buffer.from([0xc1, 0xff, 0x00]))
    expect(await next()).toMatchObject({ type: 'error', error: { code: 'PROTOCOL', message: expect.stringMatching(/malformed frame/) } })
    ws.send('{"type":"hello"}')
    expect(await next()).toMatchObject({ type: 'error', error: { message: expect.stringMatching(/text frames/) } })
    ws.send(encodeFrame({ type: 'submit', tasks: 'nope' }))
    expect(await next()).toMatchObject({ type: 'error', error: { message: expect.stringMatching(/invalid 'submit' message at 'tasks'/) } })
    ws.send(encodeFrame({ type: 'teleport' }))
    expect(await next()).toMatchObject({ type: 'error', error: { code: 'PROTOCOL' } })
    ws.send(encodeFrame({ type: 'subscribe', objectIds: [] }))
    expect(await next()).toMatchObject({ type: 'error', error: { message: 'say hello first' } })
    ws.send(new Uint8Array(65 * 1024 * 1024))
    expect(await next()).toMatchObject({ type: 'error', error: { message: expect.stringMatching(/over the 67108864-byte limit/) } })
    ws.close()
    const mesh = await cluster().connect()
    expect((await mesh.state.listNodes()).length).toBe(1)
  })

  it('a ref from another coordinator or a forged id gives a clear error', async () => {
    const mesh = await cluster().connect()
    const forged = new ObjectRef(`${'cd'.repeat(24)}01000000` as never)
    const err = (await mesh.get(forged).catch((e: Error) => e)) as Error
    expect(err.name).toBe('ObjectLostError')
    expect(err.message).toMatch(/unknown to this coordinator/)
    const f = mesh.remote(function f(x: unknown) {
      return x
    })
    const taskErr = (await mesh.get(f.remote(forged)).catch((e: Error) => e)) as Error
    expect(taskErr.message).toMatch(/unknown to this coordinator/)
  })
})
