import { BoundedMap } from '../bounded.ts'
import { decodeFrames, encodeFrames } from '../codec.ts'
import { ConnectionError } from '../errors.ts'
import { type ClientMessage, MAX_FRAME_BYTES, type ServerMessage } from '../protocol/index.ts'
import { TurnBatch } from '../turn-batch.ts'

/** How many recent frames keep the list of objects they carried, for the coordinator's "frame N refused". */
const MANIFEST_FRAMES = 1024

/**
 * A driver's control channel to the coordinator: a WebSocket from a page or a Node script, the node's socket for a
 * task running in a worker, or memory in the simulator. Each implementation moves opaque frames; this base class does
 * what they share: one frame per turn of the event loop, frames under the coordinator's size limit, and a record of
 * which objects each recent frame carried, so a frame the coordinator refuses fails exactly those refs.
 */
export abstract class FramedTransport {
  onMessage: (msg: ServerMessage) => void = () => {}
  onClose: (reason: string) => void = () => {}
  /** A single message is over the frame limit: it was not sent. */
  onTooLarge: (msg: ClientMessage, bytes: number) => void = () => {}
  /** Which object ids a message makes (its task returns, its put), if any: kept per frame for refusals. */
  manifest: (msg: ClientMessage) => readonly string[] | undefined = () => undefined
  /** The coordinator's limit (its welcome says it); frames are cut under it. */
  maxFrameBytes = MAX_FRAME_BYTES

  private readonly out = new TurnBatch<ClientMessage>((msgs) => this.write(msgs))
  private framesSent = 0
  /** Messages sent so far (a task's worker tells from it whether the task used its channel). */
  messagesSent = 0
  private readonly manifests = new BoundedMap<number, readonly string[]>(MANIFEST_FRAMES)
  protected closedReason: string | undefined

  get isOpen(): boolean {
    return this.closedReason === undefined
  }

  /** Bytes queued but not yet sent (backpressure for large transfers). */
  get bufferedAmount(): number {
    return 0
  }

  send(msg: ClientMessage): void {
    if (this.closedReason !== undefined) throw new ConnectionError(`the connection to the coordinator is closed (${this.closedReason})`)
    this.messagesSent++
    this.out.push(msg)
  }

  /** Sends what this turn queued now. */
  flush(): void {
    this.out.flush()
  }

  /** The object ids carried by frame `seq` (counted from 1 on both sides), which the coordinator refused. */
  refusedFrame(seq: number): readonly string[] {
    const ids = this.manifests.get(seq) ?? []
    this.manifests.delete(seq)
    return ids
  }

  close(): void {
    this.flush()
    this.closeWith('closed by client')
  }

  protected abstract sendFrame(frame: Uint8Array): void
  protected abstract closeChannel(reason: string): void

  /** A frame arrived from the coordinator. */
  protected receive(bytes: Uint8Array): void {
    for (const m of decodeFrames(bytes)) this.onMessage(m as ServerMessage)
  }

  /** The channel is gone (closed by us or by the other side): tell the owner once. */
  protected closeWith(reason: string, tellOwner = false): void {
    if (this.closedReason !== undefined) return
    this.closedReason = reason
    this.out.clear()
    this.closeChannel(reason)
    if (tellOwner) this.onClose(reason)
  }

  private write(msgs: ClientMessage[]): void {
    if (this.closedReason !== undefined) return
    encodeFrames(
      msgs,
      (frame, carried) => {
        const seq = ++this.framesSent
        const ids = carried.flatMap((m) => this.manifest(m) ?? [])
        if (ids.length) {
          this.manifests.set(seq, ids)
        }
        this.sendFrame(frame)
      },
      this.maxFrameBytes,
      (m, bytes) => this.onTooLarge(m, bytes),
    )
  }
}
