import { ConnectionError } from '../errors.ts'
import { FramedTransport } from './framed.ts'

/** The subset of the WebSocket API both the browser's and the `ws` package's sockets provide. */
interface SocketLike {
  binaryType: string
  readyState: number
  bufferedAmount?: number
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

/** A control-plane WebSocket to the coordinator (a page, a Node script, a node). */
export class ControlSocket extends FramedTransport {
  private constructor(private socket: SocketLike) {
    super()
    socket.onmessage = (ev) => {
      const data = ev.data
      this.receive(data instanceof ArrayBuffer ? new Uint8Array(data) : (data as Uint8Array))
    }
    socket.onclose = (ev) => this.closeWith(ev.reason || `socket closed (code ${ev.code})`, true)
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

  override get bufferedAmount(): number {
    return this.socket.bufferedAmount ?? 0
  }

  protected sendFrame(frame: Uint8Array): void {
    this.socket.send(frame)
  }

  protected closeChannel(): void {
    if (this.socket.readyState <= 1) this.socket.close(1000, 'closed by client')
  }
}
