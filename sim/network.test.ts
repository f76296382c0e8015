import type { Cluster } from '../coordinator/cluster.ts'
import { runTransportContract } from '../sdk/transport/framed.contract.ts'
import { MemoryNetwork } from './network.ts'

/** The simulator's memory link: the test plays the coordinator's end (the link's queues), not a Cluster. */
runTransportContract('MemoryTransport of the simulator', async () => {
  const disconnected: unknown[] = []
  const network = new MemoryNetwork({ disconnected: (s: unknown) => disconnected.push(s) } as unknown as Cluster)
  const link = network.connect('under test')
  return {
    transport: link.client,
    async received(count) {
      // Frames wait in the link's queue until the simulation delivers them; here they are only read.
      while (link.toServer.length < count) await new Promise((r) => setTimeout(r, 1))
      return link.toServer.slice(0, count)
    },
    deliver: (frame) => link.client.deliver(frame),
    closeRemote: (reason) => network.close(link, reason),
    dispose: () => {},
  }
})
