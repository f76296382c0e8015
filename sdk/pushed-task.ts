import type { ObjectId } from './ids.ts'
import type { ObjectTable } from './object-table.ts'
import type { OwnedTask } from './owned-tasks.ts'
import { INLINE_OBJECT_MAX_BYTES, type LargeArg, type PushedTask } from './protocol/index.ts'
import type { PeerLinks } from './transport/peer-links.ts'
import { sizeOfValues } from './turn-batch.ts'

/** What an owner's submitters (leased tasks, actor calls) need from its connection to push work to nodes. */
export interface PushChannel {
  readonly namespace: string
  readonly objects: ObjectTable
  readonly links: PeerLinks
  /** Most bytes of tasks in one push (so a relayed push fits the coordinator's frames). */
  pushBudget(): number
}

/**
 * An owned task as its node runs it (a leased task, or an actor call): its ref arguments become their values, or
 * (large ones) where to pull them from.
 */
export function pushedTaskOf(t: OwnedTask, objects: ObjectTable): PushedTask {
  const s = t.template
  return {
    taskId: t.taskId,
    attempt: t.attempt,
    functionId: s.functionId,
    name: s.name,
    funcName: s.funcName,
    args: t.args instanceof Uint8Array ? [t.args] : t.args.map((a) => ('v' in a ? a.v : argValue(a.ref as ObjectId, objects))),
    numReturns: s.numReturns,
    ...(t.carriesRefs && { carriesRefs: true as const }),
  }
}

function argValue(id: ObjectId, objects: ObjectTable): Uint8Array | LargeArg {
  const e = objects.peek(id)
  if (e?.data && e.data.byteLength <= INLINE_OBJECT_MAX_BYTES) return e.data
  return { ref: id, size: e?.size ?? e?.data?.byteLength ?? 0, locations: e?.locations ?? [] }
}

/**
 * The tasks one pump sends to one node, cut into pushes: one series straight to the node, one through the
 * coordinator (tasks whose arguments hold refs: it must see them first), each push under the byte budget so a
 * relayed one fits the coordinator's frames. `send` gets each push's tasks and whether it goes through the
 * coordinator.
 */
export class PushBatches {
  private readonly direct = { tasks: [] as PushedTask[], bytes: 0 }
  private readonly viaCoordinator = { tasks: [] as PushedTask[], bytes: 0 }

  constructor(
    private readonly budget: number,
    private readonly send: (tasks: PushedTask[], viaCoordinator: boolean) => void,
  ) {}

  add(t: PushedTask): void {
    const batch = t.carriesRefs ? this.viaCoordinator : this.direct
    const bytes = sizeOfValues(t.args)
    if (batch.tasks.length && batch.bytes + bytes > this.budget) this.sendBatch(batch)
    batch.tasks.push(t)
    batch.bytes += bytes
  }

  /** Sends what is left. */
  flush(): void {
    this.sendBatch(this.direct)
    this.sendBatch(this.viaCoordinator)
  }

  private sendBatch(batch: { tasks: PushedTask[]; bytes: number }): void {
    if (!batch.tasks.length) return
    this.send(batch.tasks, batch === this.viaCoordinator)
    batch.tasks = []
    batch.bytes = 0
  }
}
