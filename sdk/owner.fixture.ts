import { ObjectTable } from './object-table.ts'
import { OwnedTasks, type OwnedValue } from './owned-tasks.ts'
import type { ClientMessage, PeerMessage } from './protocol/index.ts'
import { ReferenceCounter } from './reference-counter.ts'
import { TaskEventReporter } from './task-event-reporter.ts'
import type { PeerLinks, Route } from './transport/peer-links.ts'

/**
 * For tests of an owner's submitters: what `Mesh` wires around them (a real OwnedTasks, ObjectTable,
 * ReferenceCounter and TaskEventReporter), with the control socket and the peer links replaced by recorders. The one
 * home of this wiring for the leased-task and actor-call tests.
 */
export function ownerWiring() {
  const objects = new ObjectTable()
  /** Control messages sent (task events included). */
  const control: ClientMessage[] = []
  /** Peer messages sent, to whom, and which way if forced. */
  const peer: { to: string; msg: PeerMessage; route: Route | undefined }[] = []
  /** Owned objects resolved here (what `Mesh` would publish). */
  const resolved: OwnedValue[] = []
  const refs = new ReferenceCounter({ release: () => {}, borrow: () => {}, unborrow: () => {} }, (id) => objects.delete(id))
  const events = new TaskEventReporter((m) => control.push(m))
  const tm = new OwnedTasks({
    objects,
    refs,
    events,
    subscribe: () => {},
    resolvedOwned: (values) => resolved.push(...values),
    registered: () => {},
  })
  const links = { send: (to: string, msg: PeerMessage, route?: Route) => peer.push({ to, msg, route }) } as unknown as PeerLinks
  return { objects, control, peer, resolved, refs, events, tm, links }
}
