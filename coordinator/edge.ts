import * as v from 'valibot'
import { decodeFrames } from '../sdk/codec.ts'
import { Deque } from '../sdk/deque.ts'
import { ProtocolError } from '../sdk/errors.ts'
import { type ClientMessage, ClientMessageSchema, invalidText } from '../sdk/protocol/index.ts'
import type { Session } from './session.ts'

/** What the edge hands valid messages to (the cluster, in the coordinator; anything that routes them, in a test). */
export interface MessageHandler {
  /** One validated message from `s`. Errors a client can cause are answered by the handler, never thrown out. */
  handle(s: Session, msg: ClientMessage): void
  /** The largest frame `s` may send. */
  frameLimit(s: Session): number
}

/** Messages one frame may hold (our SDK's frames hold a few hundred; a frame of more is refused whole). */
export const MAX_MESSAGES_PER_FRAME = 100_000
/** Invalid messages of one frame answered one by one; the rest are counted in one last error for the frame. */
const ANSWERED_PER_FRAME = 16
/** A turn of one connection's work ends after this long, so heartbeats and other clients are served between. */
const SLICE_MS = 4
/** How long an error message sent to a client may be. */
const MAX_ERROR_CHARS = 300
/** Messages that name objects one by one are handled this many ids at a time, so a slice can end between them. */
const IDS_PER_STEP = 2048
const BY_ID = new Set(['subscribe', 'release', 'borrow', 'unborrow', 'fetch-objects'])

/** The rest of a message already validated, put back in its frame to be handled in the next step. */
class Validated {
  constructor(readonly msg: ClientMessage) {}
}

/** One frame's messages, waiting their turn. */
interface Work {
  s: Session
  frame: number
  messages: unknown[]
  next: number
  bytes: number
  refused: number
}

/**
 * The messages a socket's frames carry, in order, with its workers' relayed frames in their places. Big frames are
 * processed in slices of SLICE_MS: between slices the event loop reads other sockets (a node's heartbeat, another
 * driver), so one busy client cannot stall the cluster. A socket that keeps sending faster than it is served is
 * closed once `maxQueuedBytes` wait.
 */
export class Inbound {
  private readonly work = new Deque<Work>()
  private queuedBytes = 0
  private draining = false
  private scheduled = false

  constructor(
    private readonly handler: MessageHandler,
    private readonly maxQueuedBytes: number,
  ) {}

  /** A frame of `s` (this socket's session, or one of its workers' channels, while its relay-up is handled). */
  add(s: Session, frame: number, messages: unknown[], bytes: number, relayed: boolean): void {
    const w: Work = { s, frame, messages, next: 0, bytes, refused: 0 }
    // A worker's frame goes before what follows its relay-up in the node's frame: the node's order is kept.
    if (relayed) this.work.unshift(w)
    else this.work.push(w)
    this.queuedBytes += bytes
    if (this.queuedBytes > this.maxQueuedBytes && !relayed) {
      const reason = `sending faster than the coordinator can take (over ${this.maxQueuedBytes} bytes waiting)`
      s.send({ type: 'error', error: publicError(new ProtocolError(reason).toWire()) })
      s.close(4008, reason)
      return
    }
    if (!this.draining && !this.scheduled) this.drain()
  }

  private drain(): void {
    this.scheduled = false
    this.draining = true
    const start = performance.now()
    try {
      while (this.work.length) {
        const w = this.work.peek() as Work
        if (w.next >= w.messages.length || w.s.closed) {
          this.work.shift()
          this.queuedBytes -= w.bytes
          if (w.refused > ANSWERED_PER_FRAME && !w.s.closed) {
            const more = w.refused - ANSWERED_PER_FRAME
            w.s.send({ type: 'error', error: refusal(`and ${more} more invalid message(s) in this frame`), frame: w.frame })
          }
          continue
        }
        this.one(w, w.messages[w.next++])
        // A clock read costs ~40 ns, a message at least a microsecond: each one is timed.
        if (performance.now() - start > SLICE_MS) {
          this.scheduled = true
          setImmediate(() => this.drain())
          return
        }
      }
    } finally {
      this.draining = false
    }
  }

  /** Each message of a batch stands alone: a bad one is answered and skipped, the others still count. */
  private one(w: Work, raw: unknown): void {
    if (raw instanceof Validated) return this.handle(w, raw.msg)
    const parsed = v.safeParse(ClientMessageSchema, raw)
    if (parsed.success) return this.handle(w, parsed.output)
    if (++w.refused > ANSWERED_PER_FRAME) return
    const { type, reqId } = (raw && typeof raw === 'object' ? raw : {}) as { type?: unknown; reqId?: unknown }
    const error = refusal(invalidText(`invalid '${String(type).slice(0, 40)}' message`, parsed.issues))
    // A request gets its reply, even a refused one: the caller's promise must end.
    if (typeof reqId === 'number' && Number.isInteger(reqId)) w.s.send({ type: 'reply', reqId, ok: false, error })
    else w.s.send({ type: 'error', error, frame: w.frame })
  }

  /** A message that names many objects is handled IDS_PER_STEP ids at a time (each id stands alone in these). */
  private handle(w: Work, msg: ClientMessage): void {
    if (BY_ID.has(msg.type)) {
      const ids = (msg as { objectIds: string[] }).objectIds
      if (ids.length > IDS_PER_STEP) {
        w.messages[--w.next] = new Validated({ ...msg, objectIds: ids.slice(IDS_PER_STEP) } as ClientMessage)
        return this.handler.handle(w.s, { ...msg, objectIds: ids.slice(0, IDS_PER_STEP) } as ClientMessage)
      }
    }
    this.handler.handle(w.s, msg)
  }
}

/**
 * The trust boundary: every frame a client sends — on its socket, or relayed by a node for one of its workers — is
 * counted, size-checked, decoded and validated here, once. A bad frame gets one error reply naming what is wrong and
 * which frame it was (so the sender can fail what it carried), and changes nothing. The handler sees valid messages
 * only.
 */
export function receiveFrame(handler: MessageHandler, s: Session, data: unknown, maxBytes: number): void {
  const frame = ++s.framesReceived
  const refuse = (why: string) => s.send({ type: 'error', error: refusal(why), frame })
  if (typeof data === 'string') return refuse('text frames are not part of the protocol: send msgpack binary frames')
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array)
  if (bytes.byteLength > maxBytes) return refuse(`frame of ${bytes.byteLength} bytes is over the ${maxBytes}-byte limit`)
  let messages: unknown[]
  try {
    messages = decodeFrames(bytes)
  } catch (e) {
    return refuse(`malformed frame: ${(e as Error).message}`)
  }
  if (messages.length > MAX_MESSAGES_PER_FRAME)
    return refuse(`a frame may hold at most ${MAX_MESSAGES_PER_FRAME} messages (this one holds ${messages.length})`)
  const root = s.carrier?.node ?? s
  root.inbound ??= new Inbound(handler, handler.frameLimit(root) * 4)
  root.inbound.add(s, frame, messages, bytes.byteLength, root !== s)
}

/** An error as a client may see it: no stack, a message of bounded length. */
export function publicError<E extends { message: string; stack?: string }>(e: E): E {
  const { stack: _stack, ...rest } = e
  return { ...rest, message: e.message.length > MAX_ERROR_CHARS ? `${e.message.slice(0, MAX_ERROR_CHARS)}…` : e.message } as E
}

const refusal = (why: string) => publicError(new ProtocolError(why).toWire())
