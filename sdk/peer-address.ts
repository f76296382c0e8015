import { randomHex } from './ids.ts'

/**
 * Peer addresses: where a peer message finds a participant, over a data channel or the coordinator's relay.
 * - a node: its node id (56 hex digits);
 * - a driver: `d-` and 54 hex digits, its PeerJS id (56 characters, like a node's id);
 * - a task's own connection on a node: `<nodeId>/<workerId>/<jobId>`, the node and then its worker's channel for
 *   that job (the channel a task's `self.shoal` rides on).
 */
export const NODE_ADDRESS = /^[0-9a-f]{56}$/
export const DRIVER_PEER_ID = /^d-[0-9a-f]{54}$/
export const PEER_ADDRESS = /^(?:[0-9a-f]{56}|d-[0-9a-f]{54}|[0-9a-f]{56}\/[0-9a-f]{56}\/[0-9a-f]{8})$/

/** A driver's peer id from 54 hex digits (a simulation derives them from a name). */
export const driverPeerId = (hex54: string): string => `d-${hex54}`
/** A new driver's random peer id. */
export const newDriverPeerId = (): string => driverPeerId(randomHex(27))
/** A worker's channel for one job's tasks, on its node's socket: unique on that node. */
export const workerChannelOf = (workerId: string, jobId: string): string => `${workerId}/${jobId}`
/** The address of a task's own connection: the node it runs on, then its worker's channel there. */
export const taskConnectionAddress = (nodeId: string, channel: string): string => `${nodeId}/${channel}`

/** Whether the address is a node's (a driver or a task's connection is no place to run a task). */
export const isNodeAddress = (address: string): boolean => NODE_ADDRESS.test(address)

/** What a (well-formed) peer address names. */
export type PeerAddress =
  | { readonly kind: 'node'; readonly nodeId: string }
  | { readonly kind: 'driver'; readonly peerId: string }
  | { readonly kind: 'task'; readonly nodeId: string; readonly channel: string }

/** Reads an address that passed PEER_ADDRESS (at the edge); a node's id is the only 56-character one without `d-`. */
export function parsePeerAddress(address: string): PeerAddress {
  if (address.startsWith('d-')) return { kind: 'driver', peerId: address }
  const slash = address.indexOf('/')
  if (slash < 0) return { kind: 'node', nodeId: address }
  return { kind: 'task', nodeId: address.slice(0, slash), channel: address.slice(slash + 1) }
}
