import type { Hono } from 'hono'
import type { UpgradeWebSocket } from 'hono/ws'
import * as v from 'valibot'
import { decodeFrames } from '../../sdk/codec.ts'
import { ProtocolError } from '../../sdk/errors.ts'
import { ClientMessageSchema, MAX_FRAME_BYTES } from '../../sdk/protocol.ts'
import type { Cluster } from '../cluster.ts'
import { Session } from '../session.ts'

/**
 * The control WebSocket. This is the trust boundary: every frame is decoded and validated here, once; a bad frame
 * gets an error reply naming what is wrong and changes nothing. The cluster only ever sees valid messages.
 */
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
        onMessage(evt, _ws) {
          const s = session as Session
          const reject = (why: string) => s.send({ type: 'error', error: new ProtocolError(why).toWire() })
          const data = evt.data
          if (typeof data === 'string') return reject('text frames are not part of the protocol: send msgpack binary frames')
          const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as unknown as Uint8Array)
          if (bytes.byteLength > MAX_FRAME_BYTES)
            return reject(`frame of ${bytes.byteLength} bytes is over the ${MAX_FRAME_BYTES}-byte limit`)
          let messages: unknown[]
          try {
            messages = decodeFrames(bytes)
          } catch (e) {
            return reject(`malformed frame: ${(e as Error).message}`)
          }
          // Each message of a batch stands alone: a bad one is answered and skipped, the others still count.
          for (const raw of messages) {
            const parsed = v.safeParse(ClientMessageSchema, raw)
            if (!parsed.success) {
              const issue = parsed.issues[0]
              const where = issue.path?.map((p) => String(p.key)).join('.')
              const type = (raw as { type?: unknown })?.type
              reject(`invalid '${String(type)}' message${where ? ` at '${where}'` : ''}: ${issue.message}`)
              continue
            }
            cluster.handle(s, parsed.output)
          }
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
