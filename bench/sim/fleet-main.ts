/**
 * The child-process side of FleetProcess (fleet-process.ts): runs a Fleet in a process of its own, so the driver that
 * measures the cluster does not share its thread or its memory with thousands of simulated nodes. Answers requests
 * over the IPC channel, and ends when its parent goes.
 */
import { Fleet, type FleetOptions } from './fleet.ts'

type Request =
  | { id: number; cmd: 'start'; opts: FleetOptions }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'reset-loop' }
  | { id: number; cmd: 'node-ids' }
  | { id: number; cmd: 'stop' }

let fleet: Fleet | undefined
const reply = (id: number, r: { ok: true; value: unknown } | { ok: false; error: string }) => process.send?.({ id, ...r })

async function handle(req: Request): Promise<unknown> {
  switch (req.cmd) {
    case 'start':
      if (fleet) throw new Error('the fleet is already started')
      fleet = await Fleet.start(req.opts)
      return { startMs: fleet.startMs, nodes: fleet.nodes.length }
    case 'stats':
      return fleet?.stats()
    case 'reset-loop':
      return fleet?.resetLoopDelay()
    case 'node-ids':
      return fleet?.nodes.map((n) => ({ nodeId: n.nodeId, alive: n.alive, declaredDead: n.declaredDead }))
    case 'stop':
      await fleet?.stop()
      fleet = undefined
      return null
  }
}

process.on('message', (req: Request) => {
  handle(req).then(
    (value) => reply(req.id, { ok: true, value: value ?? null }),
    (e: Error) => reply(req.id, { ok: false, error: e.message }),
  )
})
// The parent went away (or closed the channel): no node outlives it.
process.on('disconnect', () => {
  void (fleet?.stop() ?? Promise.resolve()).finally(() => process.exit(0))
})
process.send?.({ ready: true })
