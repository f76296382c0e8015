import type { IceTransportPolicy, RTCIceServerLike } from '../sdk/protocol/index.ts'
import { toUnits } from '../sdk/resources.ts'
import type { PeerMesh } from '../sdk/transport/peer-mesh.ts'
import { joinAsNode } from './join.ts'
import { NodeAgent } from './node/agent.ts'
import { ObjectManager } from './object-manager.ts'
import { holdNodeLock, removeOrphanStores } from './object-store/orphans.ts'
import { PlasmaStore } from './object-store/plasma-store.ts'
import { WorkerPool } from './worker-pool.ts'

export interface NodeConfig {
  address: string
  cpus: number
  token?: string
  name?: string
  objectStoreMemory: number
  resources?: Record<string, number>
  /** Join paused (its donor paused it before a reload): no work is placed here until resumed. */
  paused?: boolean
}

/** A node in this browser tab, registered and running: its agent, its store, and what the coordinator said. */
export interface StartedNode {
  agent: NodeAgent
  store: PlasmaStore
  objects: ObjectManager
  /** STUN/TURN for this node's data channels, TURN with credentials minted for this node alone. */
  iceServers: RTCIceServerLike[]
  /** The welcome's policy: `relay` sends every channel through TURN (`attachPeers` gives it to the mesh). */
  iceTransportPolicy: IceTransportPolicy
  peerjsPath: string
  /** This node's ticket for the signaling server (its id's, from the welcome). */
  peerjsKey: string | undefined
  /**
   * The page's peer mesh, before it starts: pulls use it, peers read this node's objects through it, and its channels
   * follow the welcome's ICE transport policy.
   */
  attachPeers(peers: PeerMesh): void
}

/**
 * Registers this tab as a node and wires its parts: the control socket, the plasma store (IndexedDB + OPFS), the
 * object manager and the worker pool, then the agent that runs tasks on them.
 */
export async function startNode(config: NodeConfig): Promise<StartedNode> {
  const { address, cpus, token, name, objectStoreMemory, resources, paused } = config
  // Work that comes with the welcome waits in `early` until the store and pool exist.
  const { socket, welcome, early } = await joinAsNode(address, {
    ...(token && { token }),
    node: {
      resources: { CPU: cpus, ...resources },
      objectStoreMemory,
      ...(name && { name }),
      ...(paused && { paused }),
      userAgent: navigator.userAgent,
    },
  })
  const nodeId = welcome.nodeId as string
  // This node's lock first: from then on no other tab of the profile takes its store for an orphan.
  await holdNodeLock(nodeId)
  const store = await PlasmaStore.open(nodeId, objectStoreMemory)
  void removeOrphanStores(nodeId).then((ids) => {
    if (ids.length) console.info(`[shoal node] deleted the stores of ${ids.length} node(s) of this browser that are gone`)
  })
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
    ...(paused && { paused }),
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
    iceTransportPolicy: welcome.iceTransportPolicy,
    peerjsPath: welcome.peerjsPath,
    peerjsKey: welcome.peerjsKey,
    attachPeers(p) {
      peerMesh = p
      p.iceTransportPolicy = welcome.iceTransportPolicy
      p.source = (id) => store.read(id)
      agent?.attachPeers(p)
    },
  }
}
