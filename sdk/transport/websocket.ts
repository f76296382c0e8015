import { decodeFrames, encodeFrames } from '../codec.ts'
import { ConnectionError } from '../errors.ts'
import type { ClientMessage, ServerMessage } from '../protocol.ts'

/** The subset of the WebSocket API both the browser's and the `ws` package's sockets provide. */
interface SocketLike {
  binaryType: string
  readyState: number
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
  onopen: ((ev: unknown) => void) | null
  onclose: ((ev: { code: number; reason: string }) => void) | null
  onerror: ((ev: { message?: string }) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
}
type SocketCtor = new (url: string) => SocketLike

async function socketClass(): Promise<SocketCtor> {
  const native = (globalThis as { WebSocket?: SocketCtor }).WebSocket
  if (native) return native
  // Node 20 has no global WebSocket. The specifier is a variable so bundlers leave it alone in browser builds.
  const specifier = 'ws'
  const mod = (await import(/* @vite-ignore */ specifier)) as { WebSocket: SocketCtor }
  return mod.WebSocket
}

/**
 * A control-plane WebSocket to the coordinator. Messages sent in one turn of the event loop are flushed together
 * at the end of it, each as its own frame but in one burst, so a loop of 10,000 `.remote()` calls costs one wakeup.
 */
export class ControlSocket {
  onMessage: (msg: ServerMessage) => void = () => {}
  onClose: (reason: string) => void = () => {}
  private queue: ClientMessage[] = []
  private flushScheduled = false
  private closed = false

  private constructor(private socket: SocketLike) {
    socket.onmessage = (ev) => {
      const data = ev.data
      const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array)
      for (const m of decodeFrames(bytes)) this.onMessage(m as ServerMessage)
    }
    socket.onclose = (ev) => {
      this.closed = true
      this.onClose(ev.reason || `socket closed (code ${ev.code})`)
    }
  }

  static async open(url: string, timeoutMs: number): Promise<ControlSocket> {
    const Ctor = await socketClass()
    return new Promise((resolve, reject) => {
      let socket: SocketLike
      try {
        socket = new Ctor(url)
      } catch (e) {
        reject(new ConnectionError(`cannot open ${url}: ${(e as Error).message}`, { cause: e }))
        return
      }
      socket.binaryType = 'arraybuffer'
      const timer = setTimeout(() => {
        socket.close()
        reject(new ConnectionError(`no Shoal coordinator answered at ${url} within ${timeoutMs} ms`))
      }, timeoutMs)
      socket.onopen = () => {
        clearTimeout(timer)
        resolve(new ControlSocket(socket))
      }
      socket.onerror = (ev) => {
        clearTimeout(timer)
        reject(new ConnectionError(`no Shoal coordinator answered at ${url}${ev.message ? ` (${ev.message})` : ''}`))
      }
      socket.onclose = (ev) => {
        clearTimeout(timer)
        reject(new ConnectionError(`the coordinator at ${url} closed the connection: ${ev.reason || ev.code}`))
      }
    })
  }

  get isOpen(): boolean {
    return !this.closed
  }

  /** Bytes queued in the socket but not yet sent (for backpressure on large transfers). */
  get bufferedAmount(): number {
    return (this.socket as unknown as { bufferedAmount?: number }).bufferedAmount ?? 0
  }

  send(msg: ClientMessage): void {
    if (this.closed) throw new ConnectionError('the connection to the coordinator is closed')
    this.queue.push(msg)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(() => this.flush())
    }
  }

  /** Sends queued messages now. */
  flush(): void {
    this.flushScheduled = false
    const q = this.queue
    this.queue = []
    if (this.closed) return
    encodeFrames(q, (frame) => this.socket.send(frame))
  }

  close(): void {
    this.flush()
    this.closed = true
    this.socket.close(1000, 'closed by client')
  }
}
