import type { Hono } from 'hono'
import type { UpgradeWebSocket } from 'hono/ws'
import type { Cluster } from '../cluster.ts'
import { receiveFrame } from '../edge.ts'
import { Session } from '../session.ts'

/** The control WebSocket. Frames are checked at the edge (edge.ts); the cluster only ever sees valid messages. */
export function mountControlSocket(app: Hono, path: string, upgradeWebSocket: UpgradeWebSocket, cluster: Cluster): void {
  app.get(
    path,
    upgradeWebSocket(() => {
      let session: Session | undefined
      return {
        onOpen(_evt, ws) {
          session = new Session(
            (bytes) => ws.send(bytes as Uint8Array<ArrayBuffer>),
            (code, reason) => ws.close(code, reason.slice(0, 120)),
          )
        },
        onMessage(evt) {
          const s = session as Session
          receiveFrame(cluster, s, evt.data, cluster.frameLimit(s))
        },
        onClose() {
          if (session) cluster.disconnected(session)
        },
        onError() {
          if (session) cluster.disconnected(session)
        },
      }
    }),
  )
}
