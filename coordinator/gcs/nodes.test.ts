import { describe, expect, it } from 'vitest'
import { NodeTable } from './nodes.ts'

describe('node table heartbeats', () => {
  it('a node silent past the timeout is reported, but not for time the coordinator itself stalled', () => {
    let now = 0
    const nodes = new NodeTable(() => now)
    const quiet = nodes.add({ resources: { CPU: 1 }, objectStoreMemory: 1 })
    const chatty = nodes.add({ resources: { CPU: 1 }, objectStoreMemory: 1 })
    now = 4000
    nodes.heartbeat(chatty.nodeId, 0, 0)
    // The coordinator stalls 10 s (a long turn): heartbeats wait unread in the sockets; nobody is blamed for it.
    now = 14_000
    nodes.noteStall(10_000)
    expect(nodes.silentSince(5000)).toEqual([])
    // Real silence still counts: 7 s of it from `quiet`, 3 s from `chatty`.
    now = 17_000
    expect(nodes.silentSince(5000).map((n) => n.nodeId)).toEqual([quiet.nodeId])
    // A heartbeat after the stall starts a node's count afresh.
    nodes.heartbeat(chatty.nodeId, 0, 0)
    now = 22_001
    expect(nodes.silentSince(5000).map((n) => n.nodeId)).toEqual([quiet.nodeId, chatty.nodeId])
  })
})
