import { afterEach, describe, expect, it } from 'vitest'
import { decodeFrames, encodeFrames } from '../codec.ts'
import { ConnectionError } from '../errors.ts'
import type { ClientMessage, ServerMessage } from '../protocol/index.ts'
import type { FramedTransport } from './framed.ts'

/** One transport under test, with the other end of its channel in the test's hands. */
export interface TransportEnd {
  readonly transport: FramedTransport
  /** The frames the other end has received so far, in order (waits until `count` arrived). */
  received(count: number): Promise<Uint8Array[]>
  /** The other end sends one frame. */
  deliver(frame: Uint8Array): void
  /** Frames the transport sent while it was opened, before the test's (they are not in `received`). */
  framesBefore?: number
  /** The other end closes the channel (undefined where only this end can close it). */
  closeRemote?: (reason: string) => void
  dispose(): Promise<void> | void
}

const turn = () => new Promise((r) => setTimeout(r, 0))
const heartbeat = (running: number): ClientMessage => ({ type: 'heartbeat', running, workers: 0 })
const released = (n: number): ClientMessage => ({ type: 'release', objectIds: [String(n).padStart(56, '0') as never] })
const messagesOf = (frames: Uint8Array[]) => frames.flatMap((f) => decodeFrames(f))

/**
 * The contract every control channel to the coordinator keeps (the page's and Node's WebSocket, a worker's channel
 * through its node, the simulator's memory link), as Hono runs one router suite against every router: messages of a
 * turn leave in as few frames as fit under the limit, in order; a message that can never fit is refused alone; the
 * other end's frames arrive in order; a closed channel refuses sends with ConnectionError; a close by the other end
 * is told once; a refused frame's objects are known by its number.
 */
export function runTransportContract(name: string, open: () => Promise<TransportEnd>): void {
  describe(`transport contract: ${name}`, () => {
    let end: TransportEnd | undefined
    const start = async () => {
      end = await open()
      return end
    }
    afterEach(async () => {
      await end?.dispose()
      end = undefined
    })

    it("sends one turn's messages as one frame, in order, and the next turn's in the next", async () => {
      const { transport, received } = await start()
      for (let i = 0; i < 5; i++) transport.send(heartbeat(i))
      await turn()
      transport.send(heartbeat(5))
      const frames = await received(2)
      expect(frames).toHaveLength(2)
      expect(messagesOf(frames).map((m) => (m as { running: number }).running)).toEqual([0, 1, 2, 3, 4, 5])
    })

    it('cuts frames under the limit, keeps order, and refuses alone a message that can never fit', async () => {
      const { transport, received } = await start()
      transport.maxFrameBytes = 1024
      const tooLarge: number[] = []
      transport.onTooLarge = (_m, bytes) => tooLarge.push(bytes)
      for (let i = 0; i < 40; i++) transport.send(released(i))
      transport.send({ type: 'release', objectIds: Array.from({ length: 40 }, () => '0'.repeat(56)) as never })
      transport.send(released(40))
      transport.flush()
      let count = 0
      encodeFrames([...Array.from({ length: 41 }, (_, i) => released(i))], () => count++, 1024)
      const frames = await received(count)
      for (const f of frames) expect(f.byteLength).toBeLessThanOrEqual(1024)
      const ids = messagesOf(frames).map((m) => Number((m as { objectIds: string[] }).objectIds[0]))
      expect(ids).toEqual(Array.from({ length: 41 }, (_, i) => i))
      expect(tooLarge).toHaveLength(1)
      expect(tooLarge[0]).toBeGreaterThan(1024)
    })

    it("hands the other end's frames to onMessage, in order", async () => {
      const { transport, deliver } = await start()
      const got: ServerMessage[] = []
      transport.onMessage = (m) => got.push(m)
      const replies = [1, 2, 3].map((reqId) => ({ type: 'reply', reqId, ok: true, value: reqId }) as ServerMessage)
      encodeFrames(replies.slice(0, 2), (f) => deliver(f.slice()))
      encodeFrames(replies.slice(2), (f) => deliver(f.slice()))
      await expect.poll(() => got.length).toBe(3)
      expect(got).toEqual(replies)
    })

    it('knows which objects a frame carried, by its number, for a refusal', async () => {
      const { transport, received, framesBefore = 0 } = await start()
      transport.manifest = (m) => (m.type === 'release' ? (m.objectIds as string[]) : undefined)
      transport.send(heartbeat(0))
      await turn()
      transport.send(released(7))
      await received(2)
      expect(transport.refusedFrame(framesBefore + 1)).toEqual([])
      expect(transport.refusedFrame(framesBefore + 2)).toEqual([String(7).padStart(56, '0')])
      expect(transport.refusedFrame(framesBefore + 2)).toEqual([])
    })

    it('a close by this end sends what was queued, then refuses sends with ConnectionError; the owner is not told', async () => {
      const { transport, received } = await start()
      let told = 0
      transport.onClose = () => told++
      transport.send(heartbeat(1))
      transport.close()
      expect(messagesOf(await received(1))).toEqual([heartbeat(1)])
      expect(transport.isOpen).toBe(false)
      expect(() => transport.send(heartbeat(2))).toThrow(ConnectionError)
      expect(told).toBe(0)
    })

    it('a close by the other end is told once, with a reason, and later sends are refused', async () => {
      const { transport, closeRemote } = await start()
      if (!closeRemote) return
      const reasons: string[] = []
      transport.onClose = (r) => reasons.push(r)
      closeRemote('going away')
      await expect.poll(() => reasons.length).toBe(1)
      expect(reasons[0]).toMatch(/going away/)
      expect(() => transport.send(heartbeat(1))).toThrow(ConnectionError)
      await turn()
      expect(reasons).toHaveLength(1)
    })
  })
}
