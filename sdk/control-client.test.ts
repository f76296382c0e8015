import { describe, expect, it, vi } from 'vitest'
import { encodeFrame } from './codec.ts'
import { ControlClient, type DriverHandlers } from './control-client.ts'
import { ConnectionError, ValidationError } from './errors.ts'
import type { ClientMessage, ServerMessage } from './protocol/index.ts'
import { FramedTransport } from './transport/framed.ts'

/** A transport whose other end is the test: what the client sent, and frames delivered to it. */
class TestTransport extends FramedTransport {
  readonly sent: ClientMessage[] = []
  override send(msg: ClientMessage): void {
    super.send(msg)
    this.sent.push(msg)
  }
  deliver(msg: ServerMessage): void {
    this.receive(encodeFrame(msg))
  }
  lose(reason: string): void {
    this.closeWith(reason, true)
  }
  protected sendFrame(): void {}
  protected closeChannel(): void {}
}

const setUp = () => {
  const transport = new TestTransport()
  const handlers = { warning: vi.fn(), 'lease-granted': vi.fn() } as unknown as DriverHandlers
  const lost = vi.fn()
  const client = new ControlClient(transport, handlers, lost)
  return { transport, handlers, lost, client }
}

describe('ControlClient', () => {
  it('numbers requests and resolves each with its own reply, or rejects with the error it carries', async () => {
    const { transport, client } = setUp()
    const before = vi.fn()
    client.beforeRequest = before
    const a = client.request({ type: 'get-actor', reqId: 0, name: 'x', namespace: 'n' })
    const b = client.request({ type: 'free', reqId: 0, objectIds: [] })
    expect(before).toHaveBeenCalledTimes(2)
    const [ra, rb] = transport.sent as { reqId: number }[]
    expect(ra?.reqId).not.toBe(rb?.reqId)
    transport.deliver({ type: 'reply', reqId: rb?.reqId as number, ok: false, error: new ValidationError('no such objects').toWire() })
    transport.deliver({ type: 'reply', reqId: ra?.reqId as number, ok: true, value: { actorId: 'a', className: 'C', methods: [] } })
    await expect(a).resolves.toEqual({ actorId: 'a', className: 'C', methods: [] })
    await expect(b).rejects.toThrow(ValidationError)
  })

  it("hands the coordinator's messages to their handlers and ignores what is not a driver's", () => {
    const { transport, handlers } = setUp()
    transport.deliver({ type: 'warning', message: 'm', taskIds: [] })
    transport.deliver({ type: 'lease-ended', leaseIds: ['x'], kill: true }) // a node's message
    transport.deliver({ type: 'reply', reqId: 99, ok: true, value: null }) // no such request
    expect(handlers.warning).toHaveBeenCalledTimes(1)
    expect(handlers['lease-granted']).not.toHaveBeenCalled()
  })

  it('shuts down once: waiting requests fail, later ones are refused, a loss after it is not reported', async () => {
    const { transport, client, lost } = setUp()
    const pending = client.request({ type: 'free', reqId: 0, objectIds: [] })
    const err = new ConnectionError('closed')
    expect(client.shutDown('closed by the driver', err)).toBe(true)
    expect(client.shutDown('again', err)).toBe(false)
    await expect(pending).rejects.toBe(err)
    expect(() => client.request({ type: 'free', reqId: 0, objectIds: [] })).toThrow(/closed by the driver/)
    transport.lose('socket closed')
    expect(lost).not.toHaveBeenCalled()
  })

  it('reports a lost channel once', () => {
    const { transport, lost } = setUp()
    transport.lose('socket closed (code 1006)')
    transport.lose('again')
    expect(lost).toHaveBeenCalledTimes(1)
    expect(lost).toHaveBeenCalledWith('socket closed (code 1006)')
  })
})
