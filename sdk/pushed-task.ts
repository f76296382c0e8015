import type { ObjectId } from './ids.ts'
import type { ObjectTable } from './object-table.ts'
import { INLINE_OBJECT_MAX_BYTES, type LargeArg, type PushedTask } from './protocol/index.ts'
import type { OwnedTask } from './task-manager.ts'

/**
 * An owned task as its node runs it (a leased task, or an actor call): its ref arguments become their values, or
 * (large ones) where to pull them from.
 */
export function pushedTaskOf(t: OwnedTask, objects: ObjectTable): PushedTask {
  const s = t.spec
  return {
    taskId: s.taskId,
    attempt: t.attempt,
    functionId: s.functionId,
    name: s.name,
    funcName: s.funcName,
    args: s.args.map((a) => ('v' in a ? a.v : argValue(a.ref as ObjectId, objects))),
    numReturns: s.numReturns,
    ...(t.carriesRefs && { carriesRefs: true as const }),
  }
}

function argValue(id: ObjectId, objects: ObjectTable): Uint8Array | LargeArg {
  const e = objects.peek(id)
  if (e?.data && e.data.byteLength <= INLINE_OBJECT_MAX_BYTES) return e.data
  return { ref: id, size: e?.size ?? e?.data?.byteLength ?? 0, locations: e?.locations ?? [] }
}
