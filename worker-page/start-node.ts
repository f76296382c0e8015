import { ConnectionError, fromWireError } from '../sdk/errors.ts'
import { PROTOCOL_VERSION, RELAY_OVERHEAD_BYTES, type ServerMessage } from '../sdk/protocol/index.ts'
import { toUnits } from '../sdk/resources.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import { ControlSocket } from '../sdk/transport/websocket.ts'
import { NodeAgent } from './node.ts'
import { ObjectManager } from './object-manager.ts'
import { PlasmaStore } from './object-store/plasma-store.ts'
import { WorkerPool } from './worker-pool.ts'

export interface NodeConfig {
  address: string
  cpus: number
  token?: string
  name?: string
  objectStoreMemory: number
  resources?: Record<string, number>
}

/** A node in this browser tab, registered and running: its agent, its store, and what the coordinator said. */
export interface StartedNode {
  agent: NodeAgent
  store: PlasmaStore
  objects: ObjectManager
  iceServers: { urls: string | string[]; username?: string; credential?: string }[]
  peerjsPath: string
  /** Once the page has joined the peer mesh: pulls use it, and peers read this node's objects through it. */
  attachPeers(peers: PeerMesh): void
}

/**
 * Registers this tab as a node and wires its parts: the control socket, the plasma store (IndexedDB + OPFS), the
 * object manager and the worker pool, then the agent that runs tasks on them.
 */
export async function startNode(config: NodeConfig): Promise<StartedNode> {
  const { address, cpus, token, name, objectStoreMemory, resources } = config
  const socket = await ControlSocket.open(`${address.replace(/^http/, 'ws')}/ws`, 10_000)
  const welcome = await new Promise<Extract<ServerMessage, { type: 'welcome' }>>((resolve, reject) => {
    socket.onMessage = (m) => {
      if (m.type === 'welcome') resolve(m)
      else if ((m.type === 'reply' && !m.ok) || m.type === 'error') reject(fromWireError(m.error))
    }
    socket.onClose = (reason) => reject(new ConnectionError(`the coordinator closed the connection: ${reason}`))
    socket.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'node',
      ...(token && { token }),
      node: { resources: { CPU: cpus, ...resources }, objectStoreMemory, ...(name && { name }), userAgent: navigator.userAgent },
    })
  })
  const nodeId = welcome.nodeId as string
  // A node may send a little more than a driver: its frames carry its workers' whole frames.
  socket.maxFrameBytes = welcome.maxFrameBytes + RELAY_OVERHEAD_BYTES
  // The coordinator may assign work the moment it welcomes us: hold it until the store and pool exist.
  const early: ServerMessage[] = []
  socket.onMessage = (m) => early.push(m)
  const store = await PlasmaStore.open(nodeId, objectStoreMemory)
  let agent: NodeAgent | undefined
  let peerMesh: PeerMesh | undefined
  const objects = new ObjectManager(
    store,
    nodeId,
    () => peerMesh,
    (m) => agent?.send(m),
    () => socket.bufferedAmount,
  )
  const pool = new WorkerPool(
    { nodeId, address, storeCapacity: objectStoreMemory, maxFrameBytes: welcome.maxFrameBytes },
    Math.max(1, Math.ceil(cpus)),
    (bytes) => store.reserve(bytes),
    (taskId, blocked) => agent?.taskBlocked(taskId, blocked),
  )
  agent = new NodeAgent(nodeId, socket, pool, objects, toUnits({ CPU: cpus, ...resources }), {
    ...(welcome.leaseKey && { leaseKey: welcome.leaseKey }),
  })
  store.onSpilled = (ids, spilled, line) => {
    agent?.send({ type: 'objects-spilled', objectIds: ids as never[], spilled, ...(line && { log: line }) })
    if (line) {
      console.info(`[shoal node] ${line}`)
      agent?.onActivity({ kind: 'store', text: line })
    }
  }
  for (const m of early) agent.onMessage(m)
  agent.onActivity({ kind: 'registered', text: `registered as ${nodeId.slice(0, 8)} with ${cpus} CPU` })
  return {
    agent,
    store,
    objects,
    iceServers: welcome.iceServers,
    peerjsPath: welcome.peerjsPath,
    attachPeers(p) {
      peerMesh = p
      p.source = (id) => store.read(id)
      agent?.attachPeers(p)
    },
  }
}
