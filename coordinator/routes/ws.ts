import type { Hono } from 'hono'
import type { UpgradeWebSocket } from 'hono/ws'
import type { Cluster } from '../cluster.ts'
import { receiveFrame } from '../edge.ts'
import { Session } from '../session.ts'

/** Bytes sent to one client and not yet taken by it, by default (a node's relayed results are well under this). */
export const MAX_UNREAD_BYTES = 256 * 1024 * 1024

/** The control WebSocket. Frames are checked at the edge (edge.ts); the cluster only ever sees valid messages. */
export function mountControlSocket(
  app: Hono,
  path: string,
  upgradeWebSocket: UpgradeWebSocket,
  cluster: Cluster,
  maxUnreadBytes = MAX_UNREAD_BYTES,
): void {
  app.get(
    path,
    upgradeWebSocket(() => {
      let session: Session | undefined
      return {
        onOpen(_evt, ws) {
          const raw = ws.raw as { bufferedAmount?: number } | undefined
          session = new Session(
            (bytes) => {
              // A client that does not read what it asked for would make us hold its replies without bound: it goes.
              if ((raw?.bufferedAmount ?? 0) > maxUnreadBytes) {
                ws.close(4008, `not reading: over ${maxUnreadBytes} bytes of replies waiting`)
                return
              }
              ws.send(bytes as Uint8Array<ArrayBuffer>)
            },
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
