import { ConnectionError, fromWireError } from './errors.ts'
import type { JobId } from './ids.ts'
import { Mesh } from './mesh.ts'
import { type ConnectOptions, ConnectOptionsSchema, parseOptions } from './options.ts'
import { newDriverPeerId } from './peer-address.ts'
import { PROTOCOL_VERSION, type WelcomeMessage } from './protocol/index.ts'
import type { PeerMesh } from './transport/peer-mesh.ts'
import { ControlSocket } from './transport/websocket.ts'

/*
 * How a driver joins a cluster: the socket, the hello, the peer mesh. What it then does is the Mesh (mesh.ts).
 */

const DEFAULT_ADDRESS = 'http://127.0.0.1:8265'

function defaultAddress(): string {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  if (env?.SHOAL_ADDRESS) return env.SHOAL_ADDRESS
  const loc = (globalThis as { location?: { origin?: string; protocol?: string } }).location
  if (loc?.origin && loc.protocol?.startsWith('http')) return loc.origin
  return DEFAULT_ADDRESS
}

/**
 * Connects to a coordinator and starts a job.
 * @example
 * const mesh = await connect({ address: 'http://127.0.0.1:8265' })
 */
export async function connect(options: ConnectOptions = {}): Promise<Mesh> {
  const o = parseOptions(ConnectOptionsSchema, options, 'connect')
  const address = (o.address ?? defaultAddress()).replace(/\/+$/, '')
  const url = `${address.replace(/^http/, 'ws')}/ws`
  const socket = await ControlSocket.open(url, o.timeout ?? 10_000)
  const peerId = newDriverPeerId()
  const welcome = await hello(socket, address, o, peerId)
  socket.maxFrameBytes = welcome.maxFrameBytes
  const peers = await joinPeerMesh(peerId, address, welcome)
  return new Mesh(socket, address, welcome.jobId as JobId, welcome.namespace, {
    peerAddress: peerId,
    ...(peers && { peers }),
    relayOnly: o.peerLinks === 'relay',
  })
}

/** Says hello and waits for the welcome (bounded: a coordinator that never answers is a ConnectionError). */
function hello(socket: ControlSocket, address: string, o: ConnectOptions, peerId: string): Promise<WelcomeMessage> {
  return new Promise<WelcomeMessage>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new ConnectionError(`the coordinator at ${address} did not answer hello within ${o.timeout ?? 10_000} ms`)),
      o.timeout ?? 10_000,
    )
    const settle = (f: () => void) => {
      clearTimeout(timer)
      f()
    }
    socket.onMessage = (m) => {
      if (m.type === 'welcome') settle(() => resolve(m))
      else if (m.type === 'reply' && !m.ok) settle(() => reject(fromWireError(m.error)))
      else if (m.type === 'error') settle(() => reject(fromWireError(m.error)))
    }
    socket.onClose = (reason) => settle(() => reject(new ConnectionError(`the coordinator at ${address} closed the connection: ${reason}`)))
    socket.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'driver',
      peerId,
      ...(o.token !== undefined && { token: o.token }),
      ...(o.namespace !== undefined && { namespace: o.namespace }),
    })
  }).catch((e) => {
    socket.close()
    throw e
  })
}

/**
 * A driver joins the peer mesh so its tasks and their results, and large objects, move to and from nodes directly
 * over WebRTC: in a page with the browser's WebRTC, in Node with node-datachannel's. Best effort: where it cannot (a
 * Web Worker has no RTCPeerConnection; a mesh that cannot be joined within 5 s) the coordinator relays instead.
 */
async function joinPeerMesh(peerId: string, address: string, welcome: WelcomeMessage): Promise<PeerMesh | undefined> {
  const g = globalThis as { window?: unknown; RTCPeerConnection?: unknown; process?: { versions?: { node?: string } } }
  const inPage = !!g.window && typeof g.RTCPeerConnection === 'function'
  const inNode = !g.window && !!g.process?.versions?.node
  if (!inPage && !inNode) return undefined
  try {
    if (inNode) {
      const { installNodeWebRTC } = await import('./transport/node-webrtc.ts')
      if (!(await installNodeWebRTC())) return undefined
    }
    const { PeerMesh } = await import('./transport/peer-mesh.ts')
    const mesh = new PeerMesh(peerId, address, welcome.peerjsPath, welcome.iceServers, welcome.peerjsKey, welcome.iceTransportPolicy)
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([mesh.start(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), 5000)))])
    clearTimeout(timer)
    return mesh
  } catch {
    return undefined
  }
}
