/**
 * Every wire any participant speaks, in one place: the control wire (drivers and nodes ↔ the coordinator), the peer
 * wire (owners ↔ nodes, directly or relayed), and the node page ↔ its workers (executor and spill); with the schema pieces they share.
 */
export * from './control.ts'
export * from './data-channel.ts'
export * from './executor.ts'
export * from './peer.ts'
export * from './schema.ts'
export * from './spill.ts'
export * from './worker.ts'
