/**
 * The baseline's relay: a bare `ws` server (no Hono, no validation, no cluster state) that does the least a relay
 * must do with each frame: decode it (msgpack, the SDK's frame codec), re-address each `peer-send` as a `peer-recv`
 * and encode it back to the sender. Run in a child process by echo-baseline.ts; prints its port.
 */
import { WebSocketServer } from 'ws'
import { decodeFrames, encodeFrame } from '../../sdk/codec.ts'

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
wss.on('listening', () => {
  process.stdout.write(`echo listening on ${(wss.address() as { port: number }).port}\n`)
})
wss.on('connection', (ws) => {
  ws.on('message', (data: Buffer) => {
    const out = decodeFrames(data).map((m) => ({
      type: 'peer-recv',
      from: (m as { to: string }).to,
      msgs: (m as { msgs: unknown[] }).msgs,
    }))
    ws.send(encodeFrame(out.length === 1 ? out[0] : out))
  })
})
process.on('disconnect', () => process.exit(0))
process.on('SIGTERM', () => process.exit(0))
