import { ConnectionError, fromWireError } from '../sdk/errors.ts'
import {
  type ClientMessageOf,
  PROTOCOL_VERSION,
  RELAY_OVERHEAD_BYTES,
  type ServerMessage,
  type WelcomeMessage,
} from '../sdk/protocol/index.ts'
import { ControlSocket } from '../sdk/transport/websocket.ts'

export type Welcome = WelcomeMessage

/**
 * Opens a node's control socket and says hello: resolves with the welcome, or rejects with the coordinator's refusal.
 * Work may come in the welcome's own frame (a task or an actor that was waiting for a node): everything after the
 * welcome is kept in `early` until the node's agent exists to take it. Dropping it lost an actor creation that was
 * waiting for a node: the actor never started. The one home of that rule for the node page and in-process nodes.
 */
export async function joinAsNode(
  address: string,
  hello: { token?: string; node: NonNullable<ClientMessageOf<'hello'>['node']> },
  openTimeoutMs = 10_000,
): Promise<{ socket: ControlSocket; welcome: Welcome; early: ServerMessage[] }> {
  const socket = await ControlSocket.open(`${address.replace(/^http/, 'ws')}/ws`, openTimeoutMs)
  const early: ServerMessage[] = []
  const welcome = await new Promise<Welcome>((resolve, reject) => {
    socket.onMessage = (m) => {
      if (m.type === 'welcome') resolve(m)
      else if ((m.type === 'reply' && !m.ok) || m.type === 'error') reject(fromWireError(m.error))
      else early.push(m)
    }
    socket.onClose = (reason) => reject(new ConnectionError(`the coordinator closed the connection: ${reason}`))
    socket.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'node',
      ...(hello.token && { token: hello.token }),
      node: hello.node,
    })
  })
  // A node may send a little more than a driver: its frames carry its workers' whole frames.
  socket.maxFrameBytes = welcome.maxFrameBytes + RELAY_OVERHEAD_BYTES
  socket.onMessage = (m) => early.push(m)
  return { socket, welcome, early }
}
