/// <reference lib="webworker" />
import type { ClientMessage, WorkerToPage } from '../sdk/protocol/index.ts'
import { FramedTransport } from '../sdk/transport/framed.ts'

/**
 * `self.shoal`'s control channel inside a worker: frames go to the node page, which carries them on its own socket
 * to the coordinator (`relay-up`), and come back the same way. Carried on the node's socket, a worker's messages and
 * the node's report of the worker's results stay in one order, so nothing a task hands over is lost in between.
 * It opens on first use with a hello that joins the task's job; no round trip is waited for.
 */
export class WorkerChannel extends FramedTransport {
  private opened = false

  constructor(
    readonly channel: string,
    private readonly hello: ClientMessage,
  ) {
    super()
  }

  override send(msg: ClientMessage): void {
    if (!this.opened) {
      this.opened = true
      super.send(this.hello)
    }
    super.send(msg)
  }

  /** A frame the coordinator sent on this channel. */
  deliver(frame: Uint8Array): void {
    this.receive(frame)
  }

  protected sendFrame(frame: Uint8Array): void {
    // The frame may be a view into the encoder's shared buffer: send a copy of its own, moved, not cloned.
    const own = frame.slice()
    self.postMessage({ __shoal: 'up', channel: this.channel, frame: own } satisfies WorkerToPage, [own.buffer])
  }

  protected closeChannel(): void {
    if (this.opened) self.postMessage({ __shoal: 'close', channel: this.channel } satisfies WorkerToPage)
  }
}
