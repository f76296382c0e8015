import type { ObjectId } from './ids.ts'
import { isNodeAddress } from './peer-address.ts'
import type { TaskArg } from './protocol/index.ts'

/** What locality needs to know of an argument's object: how large it is and who holds it. */
export interface ObjectPlacement {
  readonly size?: number
  readonly locations?: Iterable<string>
}

/**
 * Ray's locality: the node holding the most bytes of the task's large ref arguments, if any; on a tie, the node that
 * got there first, in argument order. Only nodes count: a driver serving its own put holds the bytes but cannot run
 * a task. Used by the owner for its leases' shapes and by the coordinator for the tasks it places.
 */
export function whereTheDataIs(args: readonly TaskArg[], placementOf: (id: ObjectId) => ObjectPlacement | undefined): string | undefined {
  let best: string | undefined
  let bestBytes = 0
  let bytes: Map<string, number> | undefined
  for (const a of args) {
    if (!('ref' in a)) continue
    const e = placementOf(a.ref as ObjectId)
    if (!e?.size || !e.locations) continue
    for (const n of e.locations) {
      if (!isNodeAddress(n)) continue
      bytes ??= new Map()
      const b = (bytes.get(n) ?? 0) + e.size
      bytes.set(n, b)
      if (b > bestBytes) {
        best = n
        bestBytes = b
      }
    }
  }
  return best
}
