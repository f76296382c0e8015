/**
 * The ceiling of relayed traffic on this machine: a bare msgpack WebSocket echo through a trivial relay in a child
 * process (echo-server.ts), with frames made of the very message a driver relays to push one no-op task (a
 * `peer-send` carrying a `push` under a signed lease). Measured one message per frame (many in flight), and batched
 * as the SDK batches a turn's messages. A relayed task crosses the relay twice (its push, its result), so the
 * ceiling in tasks/s is about half the messages/s.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { WebSocket } from 'ws'
import { encodeFrame, encodeValue } from '../../sdk/codec.ts'
import { functionIdOf, randomHex } from '../../sdk/ids.ts'
import { newDriverPeerId } from '../../sdk/peer-address.ts'
import type { ClientMessage, Lease, PeerMessage } from '../../sdk/protocol/index.ts'
import { repeat } from '../stats.ts'
import { killOnExit, within } from './processes.ts'

/** One driver → node message pushing one no-op task, as the SDK builds it. */
export function samplePush(i: number): ClientMessage {
  const nodeId = randomHex(28)
  const lease: Lease = {
    leaseId: randomHex(16),
    nodeId,
    owner: newDriverPeerId(),
    jobId: randomHex(4),
    units: { CPU: 10_000 },
    sig: randomHex(32),
  }
  const source = 'function noop(x) {\n    return x\n  }'
  const push: PeerMessage = {
    type: 'push',
    lease,
    namespace: `anonymous-${randomHex(16)}`,
    tasks: [
      {
        taskId: randomHex(24),
        attempt: 0,
        functionId: functionIdOf(source),
        name: 'noop',
        funcName: 'noop',
        args: [encodeValue(i, 'arg').slice()],
        numReturns: 1,
      },
    ],
  }
  return { type: 'peer-send', to: nodeId as never, msgs: [push] }
}

export interface EchoBaseline {
  pushFrameBytes: number
  /** One push per frame, `window` frames in flight: relayed messages per second. */
  singleMessagesPerSec: { median: number; runs: number[] }
  /** `batch` pushes per frame: relayed messages per second. */
  batchedMessagesPerSec: { median: number; runs: number[] }
  window: number
  batch: number
  where: string
}

async function startEcho(): Promise<{ child: ChildProcess; url: string }> {
  const main = fileURLToPath(new URL('./echo-server.ts', import.meta.url))
  const child = fork(main, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] })
  killOnExit(child)
  const port = await within(
    new Promise<number>((resolve, reject) => {
      child.stdout?.on('data', (d: Buffer) => {
        const m = /echo listening on (\d+)/.exec(d.toString())
        if (m) resolve(Number(m[1]))
      })
      child.once('exit', (code) => reject(new Error(`the echo server exited with ${code}`)))
    }),
    30_000,
    'the echo server to listen',
  )
  return { child, url: `ws://127.0.0.1:${port}` }
}

/** Sends `frames` frames of `perFrame` messages each, keeping `window` in flight; returns messages per second. */
async function rate(url: string, frame: Uint8Array, perFrame: number, frames: number, window: number): Promise<number> {
  const ws = new WebSocket(url)
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    }),
    10_000,
    'the echo server to accept a connection',
  )
  try {
    return await within(
      new Promise<number>((resolve) => {
        let sent = 0
        let received = 0
        const t0 = performance.now()
        ws.on('message', () => {
          if (++received === frames) return resolve((frames * perFrame) / ((performance.now() - t0) / 1000))
          if (sent < frames) {
            sent++
            ws.send(frame)
          }
        })
        for (; sent < Math.min(window, frames); sent++) ws.send(frame)
      }),
      120_000,
      `${frames} echoes of ${perFrame} message(s) each`,
    )
  } finally {
    ws.close()
  }
}

export async function echoBaseline(runs = 3): Promise<EchoBaseline> {
  const { child, url } = await startEcho()
  try {
    const one = encodeFrame(samplePush(12_345)).slice()
    const window = 256
    const batch = 64
    const batched = encodeFrame(Array.from({ length: batch }, (_, i) => samplePush(i))).slice()
    return {
      pushFrameBytes: one.byteLength,
      singleMessagesPerSec: await repeat(runs, () => rate(url, one, 1, 40_000, window)),
      batchedMessagesPerSec: await repeat(runs, () => rate(url, batched, batch, 2_000, 16)),
      window,
      batch,
      where: 'bare ws server in a child process: decode each frame, re-address, encode it back (no validation, no state)',
    }
  } finally {
    child.kill('SIGTERM')
  }
}
