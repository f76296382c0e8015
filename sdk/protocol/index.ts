/**
 * Every wire any participant speaks, in one place: the control wire (drivers and nodes ↔ the coordinator), the peer
 * wire (owners ↔ nodes, directly or relayed), and the node page ↔ its workers; with the schema pieces they share.
 */
export * from './control.ts'
export * from './peer.ts'
export * from './schema.ts'
export * from './worker.ts'
