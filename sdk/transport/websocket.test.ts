import type { AddressInfo } from 'node:net'
import { type WebSocket, WebSocketServer } from 'ws'
import { runTransportContract } from './framed.contract.ts'
import { ControlSocket } from './websocket.ts'

/** A Node driver's (and a node page's) control socket, against a bare `ws` server standing in for the coordinator. */
runTransportContract('ControlSocket over a WebSocket', async () => {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise((r) => server.once('listening', r))
  const accepted = new Promise<WebSocket>((r) => server.once('connection', r))
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
  const transport = await ControlSocket.open(url, 5000)
  const peer = await accepted
  const frames: Uint8Array[] = []
  const waiters: (() => void)[] = []
  peer.on('message', (data: Buffer) => {
    frames.push(new Uint8Array(data))
    for (const w of waiters.splice(0)) w()
  })
  return {
    transport,
    async received(count) {
      while (frames.length < count) await new Promise<void>((r) => waiters.push(r))
      return frames.slice(0, count)
    },
    deliver: (frame) => peer.send(frame),
    closeRemote: (reason) => peer.close(1000, reason),
    async dispose() {
      transport.close()
      for (const c of server.clients) c.terminate()
      await new Promise((r) => server.close(r))
    },
  }
})
