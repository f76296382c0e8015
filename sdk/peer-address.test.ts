import { describe, expect, it } from 'vitest'
import { jobIdFromNumber, newNodeId, newWorkerId } from './ids.ts'
import {
  DRIVER_PEER_ID,
  isNodeAddress,
  NODE_ADDRESS,
  newDriverPeerId,
  PEER_ADDRESS,
  parsePeerAddress,
  taskConnectionAddress,
  workerChannelOf,
} from './peer-address.ts'

describe('peer addresses', () => {
  const nodeId = newNodeId()
  const channel = workerChannelOf(newWorkerId(), jobIdFromNumber(7))
  const task = taskConnectionAddress(nodeId, channel)
  const driver = newDriverPeerId()

  it('makes each kind in the form the wire accepts, and only a node address is a node', () => {
    for (const a of [nodeId, driver, task]) expect(a).toMatch(PEER_ADDRESS)
    expect(driver).toMatch(DRIVER_PEER_ID)
    expect(driver).toHaveLength(nodeId.length)
    expect(nodeId).toMatch(NODE_ADDRESS)
    expect([nodeId, driver, task].map(isNodeAddress)).toEqual([true, false, false])
    expect(PEER_ADDRESS.test(`${nodeId}/x`)).toBe(false)
  })

  it('reads back what it made', () => {
    expect(parsePeerAddress(nodeId)).toEqual({ kind: 'node', nodeId })
    expect(parsePeerAddress(driver)).toEqual({ kind: 'driver', peerId: driver })
    expect(parsePeerAddress(task)).toEqual({ kind: 'task', nodeId, channel })
  })
})
