import { type DecodeContext, decodeValue } from './codec.ts'
import { ConnectionError, fromWireError, GetTimeoutError, ValidationError, type WireError } from './errors.ts'
import { type ObjectId, taskIdOfObject } from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import type { ObjectTable } from './object-table.ts'
import type { ObjectTransfer } from './object-transfer.ts'

/**
 * Waiting for objects (what `get`, `wait` and `asCompleted` share): refs checked and subscribed to, waits on the
 * object table that end in a value, an error or a timeout that says why (a task no node can fit, or where the
 * first pending task is in its life), and values decoded. While a task's worker waits, its CPU is lent back.
 */
export class ObjectWaiter {
  /** Tasks the coordinator reported as infeasible (no node can ever fit them), for timeouts that explain themselves. */
  private readonly infeasible = new Map<string, string>()

  constructor(
    private readonly deps: {
      objects: ObjectTable
      transfer: ObjectTransfer
      decodeCtx: DecodeContext
      /** Asks the coordinator for updates of objects this connection does not own. */
      subscribe(ids: ObjectId[]): void
      /** Sends what this turn submitted (a wait must not hold back the tasks it waits for). */
      flush(): void
      /** Set while a task's worker runs: told when a wait starts and ends. */
      blockingHooks(): { enter(): void; leave(): void } | undefined
      /** Where an owned task is in its life, if this connection owns it. */
      whereIs(taskId: string): string | undefined
    },
  ) {}

  /** The coordinator said these tasks can never be placed (`why`): a timeout waiting for them says so. */
  noteInfeasible(taskIds: readonly string[], why: string): void {
    for (const t of taskIds) this.infeasible.set(t, why)
  }

  /** Checks `refs` are ObjectRefs and subscribes to those not known here yet. */
  check<T extends ObjectRef>(refs: readonly T[], where: string): T[] {
    if (!Array.isArray(refs)) throw new ValidationError(`${where}: expected an ObjectRef or an array of ObjectRefs`)
    const subscribe: ObjectId[] = []
    for (const r of refs) {
      if (!(r instanceof ObjectRef)) throw new ValidationError(`${where}: expected ObjectRefs; got ${r === null ? 'null' : typeof r}`)
      if (this.deps.objects.ensure(r.id)) subscribe.push(r.id)
    }
    if (subscribe.length) this.deps.subscribe(subscribe)
    return refs as T[]
  }

  /** The values of `ids`, in order: the first failure rejects at once (as Ray raises), as does the deadline. */
  async values(ids: readonly ObjectId[], timeout: number | null | undefined): Promise<unknown[]> {
    const deadline = timeout != null ? performance.now() + timeout : undefined
    // Ready, or failed: a failure anywhere ends the wait (Ray raises the first error without waiting for the rest).
    const done = await this.until(ids, ids.length, deadline, true, 'ready')
    this.throwFailed(ids)
    if (done < ids.length) throw this.timeoutError(timeout ?? 0, ids)
    // Large objects' bytes come here now (from a node over WebRTC, or relayed by the coordinator).
    this.deps.transfer.fetch(ids)
    const fetched = await this.until(ids, ids.length, deadline, true, 'bytes')
    this.throwFailed(ids)
    if (fetched < ids.length) throw this.timeoutError(timeout ?? 0, ids)
    return ids.map((id) => this.valueOf(id))
  }

  /** Waits until `need` of `ids` are ready (or failed) or `timeout` ms pass; never throws for task errors. */
  async ready(ids: readonly ObjectId[], need: number, timeout: number | null | undefined): Promise<void> {
    await this.until(ids, need, timeout != null ? performance.now() + timeout : undefined, false, 'ready')
  }

  isReady(id: ObjectId): boolean {
    return this.deps.objects.isReady(id)
  }

  timeoutError(timeout: number, ids: readonly ObjectId[]): GetTimeoutError {
    const pending = ids.filter((id) => !this.deps.objects.read(id))
    const why = [...new Set(pending.flatMap((id) => this.infeasible.get(taskIdOfObject(id)) ?? []))]
    // Else, where the first pending task this connection owns is in its life (waiting, queued, or at which node).
    for (const id of why.length ? [] : pending) {
      const where = this.deps.whereIs(taskIdOfObject(id))
      if (where) {
        why.push(where)
        break
      }
    }
    return new GetTimeoutError(timeout, pending.length, why.length ? why.join('; ') : undefined)
  }

  private throwFailed(ids: readonly ObjectId[]): void {
    const failed = ids.find((id) => this.deps.objects.read(id)?.error)
    if (failed) throw fromWireError(this.deps.objects.read(failed)?.error as WireError)
  }

  /**
   * Waits on the object table (ObjectTable.waitFor) after sending what this turn submitted; while it waits, a task's
   * CPU is lent back to its node.
   */
  private until(
    ids: readonly ObjectId[],
    need: number,
    deadline: number | undefined,
    failFast: boolean,
    what: 'ready' | 'bytes',
  ): Promise<number> {
    const wait = this.deps.objects.waitFor(ids, need, deadline, failFast, what)
    if (typeof wait === 'number') return Promise.resolve(wait)
    this.deps.flush()
    const hooks = this.deps.blockingHooks()
    if (!hooks) return wait
    hooks.enter()
    return wait.finally(() => hooks.leave())
  }

  private valueOf(id: ObjectId): unknown {
    const e = this.deps.objects.read(id)
    if (!e) throw new ConnectionError(`object ${id} is not available on this connection`)
    if (e.error) throw fromWireError(e.error)
    return decodeValue(e.data as Uint8Array, this.deps.decodeCtx)
  }
}
