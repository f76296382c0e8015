import { describe, expect, it } from 'vitest'
import { useCluster } from './fixtures/cluster.ts'

const cluster = useCluster({ nodes: 2, cpus: 1 })

describe('peer mesh', () => {
  it("opens a data channel between two nodes through the coordinator's /peerjs and carries a message", async () => {
    const [a, b] = cluster().nodes
    if (!a || !b) throw new Error('two nodes expected')
    const reply = await a.page.evaluate(async (target) => {
      const peers = (window as unknown as { shoalNode: { peers: { ping(id: string, text: string): Promise<string> } } }).shoalNode.peers
      return peers.ping(target, 'hello from a')
    }, b.nodeId)
    expect(reply).toBe('hello from a')
    // The channel is reliable and ordered, and really WebRTC (not a relay through the coordinator).
    const info = await a.page.evaluate(async (target) => {
      const peers = (
        window as unknown as {
          shoalNode: {
            peers: { connect(id: string): Promise<{ reliable: boolean; dataChannel: RTCDataChannel; peerConnection: RTCPeerConnection }> }
          }
        }
      ).shoalNode.peers
      const conn = await peers.connect(target)
      // getStats can lag the channel's open by a moment on a loaded machine: ask again for up to 10 s.
      let pair = ''
      for (let tries = 0; pair === '' && tries < 100; tries++) {
        if (tries > 0) await new Promise((r) => setTimeout(r, 100))
        const stats = await conn.peerConnection.getStats()
        stats.forEach((s) => {
          if (s.type === 'candidate-pair' && s.state === 'succeeded') pair = s.id
        })
      }
      return { ordered: conn.dataChannel.ordered, label: conn.dataChannel.label, state: conn.dataChannel.readyState, pair }
    }, b.nodeId)
    expect(info.ordered).toBe(true)
    expect(info.state).toBe('open')
    expect(info.pair).not.toBe('')
  })
})
