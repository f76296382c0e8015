import { afterAll, beforeAll } from 'vitest'
import type { ClientMessage, WorkerToPage } from '../sdk/protocol/index.ts'
import { runTransportContract } from '../sdk/transport/framed.contract.ts'
import { WorkerChannel } from './worker-channel.ts'

/**
 * A task's `self.shoal` channel inside a worker. Its frames go to the page by `self.postMessage` (the node carries
 * them on its socket): here `self` is the test, playing the page. Only the coordinator closes a worker's channel, by
 * closing the node, so there is no close by the other end to test.
 */
const posted: WorkerToPage[] = []
const g = globalThis as { self?: unknown }
const hadSelf = 'self' in g
beforeAll(() => {
  g.self = { postMessage: (m: WorkerToPage) => posted.push(m) }
})
afterAll(() => {
  if (!hadSelf) delete g.self
})

runTransportContract('WorkerChannel through its node page', async () => {
  posted.length = 0
  const hello = { type: 'hello', role: 'driver', protocol: 1 } as unknown as ClientMessage
  const transport = new WorkerChannel('w1/job', hello)
  // The channel opens with its hello on first use: open it here, so the frames after are the test's.
  transport.send({ type: 'heartbeat', running: 0, workers: 0 })
  transport.flush()
  const frames = () => posted.flatMap((m) => (m.__shoal === 'up' ? [m.frame] : [])).slice(1)
  return {
    transport,
    framesBefore: 1,
    async received(count) {
      while (frames().length < count) await new Promise((r) => setTimeout(r, 1))
      return frames().slice(0, count)
    },
    deliver: (frame) => transport.deliver(frame),
    dispose: () => transport.close(),
  }
})
