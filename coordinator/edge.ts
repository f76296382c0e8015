import * as v from 'valibot'
import { decodeFrames } from '../sdk/codec.ts'
import { ProtocolError } from '../sdk/errors.ts'
import { ClientMessageSchema } from '../sdk/protocol/index.ts'
import type { Cluster } from './cluster.ts'
import type { Session } from './session.ts'

/**
 * The trust boundary: every frame a client sends — on its socket, or relayed by a node for one of its workers — is
 * counted, size-checked, decoded and validated here, once. A bad frame gets one error reply naming what is wrong and
 * which frame it was (so the sender can fail what it carried), and changes nothing. The cluster sees valid messages
 * only.
 */
export function receiveFrame(cluster: Cluster, s: Session, data: unknown, maxBytes: number): void {
  const frame = ++s.framesReceived
  const refuse = (why: string) => s.send({ type: 'error', error: new ProtocolError(why).toWire(), frame })
  if (typeof data === 'string') return refuse('text frames are not part of the protocol: send msgpack binary frames')
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array)
  if (bytes.byteLength > maxBytes) return refuse(`frame of ${bytes.byteLength} bytes is over the ${maxBytes}-byte limit`)
  let messages: unknown[]
  try {
    messages = decodeFrames(bytes)
  } catch (e) {
    return refuse(`malformed frame: ${(e as Error).message}`)
  }
  // Each message of a batch stands alone: a bad one is answered and skipped, the others still count.
  for (const raw of messages) {
    const parsed = v.safeParse(ClientMessageSchema, raw)
    if (!parsed.success) {
      const issue = parsed.issues[0]
      const where = issue.path?.map((p) => String(p.key)).join('.')
      const { type, reqId } = (raw ?? {}) as { type?: unknown; reqId?: unknown }
      const error = new ProtocolError(`invalid '${String(type)}' message${where ? ` at '${where}'` : ''}: ${issue.message}`).toWire()
      // A request gets its reply, even a refused one: the caller's promise must end.
      if (typeof reqId === 'number' && Number.isInteger(reqId)) s.send({ type: 'reply', reqId, ok: false, error })
      else s.send({ type: 'error', error })
      continue
    }
    cluster.handle(s, parsed.output)
  }
}
