import { ObjectStoreFullError, ValidationError } from '../sdk/errors.ts'
import { jobIdOfObject, type ObjectId } from '../sdk/ids.ts'
import type { ClientMessageOf, TaskResult } from '../sdk/protocol/index.ts'
import type { Credentials } from './auth.ts'
import type { ObjectDirectory } from './gcs/object-directory.ts'
import type { ObjectTransfers } from './object-transfers.ts'
import type { Session } from './session.ts'
import type { Tenancy } from './tenancy.ts'

export interface ObjectRequestsDeps {
  objects: ObjectDirectory
  transfers: ObjectTransfers
  tenancy: Tenancy
  credentials: Credentials
}

/**
 * What a connection asks of the object directory, under the rule of tenancy (another tenant's object is answered as
 * an unknown one) and the tenant's quota of stored bytes.
 */
export class ObjectRequests {
  /** Bytes admitted per tenant this second and not in the directory yet (uploads under way: see checkStored). */
  private admitted = new Map<string, number>()
  private admittedAt = 0
  private readonly objects: ObjectDirectory
  private readonly tenancy: Tenancy

  constructor(private readonly deps: ObjectRequestsDeps) {
    this.objects = deps.objects
    this.tenancy = deps.tenancy
  }

  /**
   * An owner's objects that others can now reach (see the `publish` message): pending ones are entered as such, and
   * get their value or error when the owner publishes it. Only the owner's own job's objects.
   */
  publish(s: Session, objects: ClientMessageOf<'publish'>['objects']): void {
    for (const o of objects) {
      const id = o.objectId as ObjectId
      if (jobIdOfObject(id) !== s.jobId) throw new ValidationError(`object ${id} is not of this job`)
      const e = this.objects.read(id)
      const result = o.data ? { data: o.data } : o.error ? { error: o.error } : undefined
      if (!e) {
        if (result) this.objects.put(id, s.jobId as string, s, result)
        else this.objects.create(id, s.jobId as string, s)
      } else if (e.owner === s && result) this.objects.resolve(id, result, false)
    }
  }

  subscribe(s: Session, objectIds: readonly string[]): void {
    // Another tenant's object is answered as an unknown one: the same reply, whether or not it exists.
    for (const id of objectIds) this.objects.subscribe(id as ObjectId, s, !this.tenancy.mayTouch(s, id))
  }

  release(s: Session, objectIds: readonly string[]): void {
    for (const id of objectIds) if (this.tenancy.mayTouch(s, id)) this.objects.release(id as ObjectId, s)
  }

  /** Ray's `free`: all of them, or none if one is another tenant's. */
  free(s: Session, objectIds: readonly string[]): void {
    const foreign = objectIds.find((id) => !this.tenancy.mayTouch(s, id))
    if (foreign) throw new ValidationError(`free: ObjectRef(${foreign}) is not one of this tenant's objects; nothing was freed`)
    for (const id of objectIds) this.objects.free(id as ObjectId)
  }

  borrow(s: Session, objectIds: readonly string[]): void {
    for (const id of objectIds) {
      if (!this.tenancy.mayTouch(s, id) || !this.objects.has(id)) continue
      this.objects.pin(id as ObjectId)
      s.borrowed.set(id, (s.borrowed.get(id) ?? 0) + 1)
    }
  }

  unborrow(s: Session, objectIds: readonly string[]): void {
    for (const id of objectIds) {
      const n = s.borrowed.get(id)
      if (!n) continue
      if (n === 1) s.borrowed.delete(id)
      else s.borrowed.set(id, n - 1)
      this.objects.unpin(id as ObjectId)
    }
  }

  /** `s` closed: what it borrowed is no longer held by it. */
  dropBorrowed(s: Session): void {
    for (const [id, n] of s.borrowed) for (let i = 0; i < n; i++) this.objects.unpin(id as ObjectId)
    s.borrowed.clear()
  }

  /** A task's worker let go of what it made during the task (carried in the task's result, see TaskResult.scope). */
  endScope(node: Session, scope: NonNullable<TaskResult['scope']>): void {
    const sub = node.relays.get(scope.channel)
    if (!sub) return
    for (const id of scope.release) this.objects.release(id as ObjectId, sub)
  }

  fetch(s: Session, objectIds: readonly string[]): void {
    const mine: ObjectId[] = []
    for (const id of objectIds) {
      if (this.tenancy.mayTouch(s, id)) mine.push(id as ObjectId)
      else this.objects.subscribe(id as ObjectId, s, true) // answered as unknown
    }
    this.deps.transfers.fetch(s, mine)
  }

  put(s: Session, msg: ClientMessageOf<'put'>): void {
    this.tenancy.checkRefs(s, msg.nestedRefs)
    this.checkStored(s, msg.data.byteLength)
    this.deps.transfers.onPut(s, msg)
  }

  chunk(s: Session, msg: ClientMessageOf<'object-chunk'>): void {
    this.tenancy.checkRefs(s, msg.nestedRefs)
    if (s.role === 'driver' && msg.offset === 0) this.checkStored(s, msg.total)
    this.deps.transfers.onChunk(s, msg)
  }

  putRemote(s: Session, msg: ClientMessageOf<'put-remote'>): void {
    if (msg.peerId !== s.peerId) throw new ValidationError("put-remote must name this connection's own peerId (from hello)")
    this.tenancy.checkRefs(s, msg.nestedRefs)
    this.checkStored(s, msg.size)
    this.deps.transfers.onPutRemote(s, msg)
  }

  /**
   * A put of `bytes` must fit the tenant's quota of stored bytes: what its objects in the directory take (kept there
   * as they change), plus the puts admitted this second that may still be uploading.
   */
  private checkStored(s: Session, bytes: number): void {
    const quota = this.deps.credentials.quotaOf(s.tenant).maxStoredBytes
    // What the directory holds, plus what was admitted this second: an upload counts there only once it is done,
    // and many started at once must not each pass against the same count.
    const now = Date.now()
    if (now - this.admittedAt > 1000) {
      this.admittedAt = now
      this.admitted.clear()
    }
    const admitted = this.admitted.get(s.tenant) ?? 0
    const used = this.objects.storedBy(s.tenant) + admitted
    if (used + bytes > quota)
      throw new ObjectStoreFullError(
        `put of ${bytes} bytes refused: the tenant's quota of ${quota} stored bytes would be exceeded (${used} in use; free or drop refs first)`,
      )
    this.admitted.set(s.tenant, admitted + bytes)
  }
}
