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

describe("a donor's controls in the node table", () => {
  it('paused and leaving nodes stay alive and listed, and no work is placed on them', () => {
    const nodes = new NodeTable()
    const a = nodes.add({ resources: { CPU: 2 }, objectStoreMemory: 1 })
    const b = nodes.add({ resources: { CPU: 2 }, objectStoreMemory: 1 })
    expect(nodes.placeableFor(false)).toEqual([a, b])
    expect(nodes.setPaused(a.nodeId, true)).toBe(true)
    expect(nodes.setPaused(a.nodeId, true)).toBe(false)
    expect(nodes.placeableFor(false)).toEqual([b])
    expect(nodes.setDraining(b.nodeId)).toBe(true)
    expect(nodes.placeableFor(true)).toEqual([])
    expect(nodes.alive()).toEqual([a, b])
    expect(nodes.rows().map((r) => [r.state, r.paused, r.draining])).toEqual([
      ['ALIVE', true, false],
      ['ALIVE', false, true],
    ])
    nodes.setPaused(a.nodeId, false)
    expect(nodes.placeableFor(false)).toEqual([a])
  })

  it('a new CPU total changes what is free by the difference: below zero while running work holds more', () => {
    const nodes = new NodeTable()
    const a = nodes.add({ resources: { CPU: 4 }, objectStoreMemory: 1 })
    a.available.CPU = 10_000 // three of four CPUs in use
    expect(nodes.setCpu(a.nodeId, 10_000)).toBe(-30_000)
    expect(a.available.CPU).toBe(-20_000)
    expect(nodes.setCpu(a.nodeId, 60_000)).toBe(50_000)
    expect([a.total.CPU, a.available.CPU]).toEqual([60_000, 30_000])
    expect(nodes.setCpu(a.nodeId, 60_000)).toBe(0)
  })
})
