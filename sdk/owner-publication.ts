import type { ObjectId } from './ids.ts'
import type { ObjectTable } from './object-table.ts'
import type { OwnedValue } from './owned-tasks.ts'
import type { ClientMessage } from './protocol/index.ts'
import type { ReferenceCounter } from './reference-counter.ts'

type Published = Extract<ClientMessage, { type: 'publish' }>['objects']

/**
 * Which objects this owner has entered in the coordinator's directory. An owned object lives and dies here until a
 * ref to it leaves this connection (inside a value, or with a task the coordinator runs); then it is published, so
 * whoever finds the ref can use it (Ray's owner answers borrowers itself; here the coordinator's directory does for
 * the objects that escape). Only published objects' releases are sent.
 */
export class OwnerPublication {
  private readonly published = new Set<ObjectId>()
  /** Published while their task was pending: their value is published when it comes, whatever became of our refs. */
  private readonly pending = new Set<ObjectId>()

  constructor(
    private readonly deps: {
      refs: ReferenceCounter
      objects: ObjectTable
      send(msg: ClientMessage): void
      isOpen(): boolean
    },
  ) {}

  /** These objects are in the directory already (a put, or a task the coordinator runs made them). */
  add(ids: Iterable<ObjectId>): void {
    for (const id of ids) this.published.add(id)
  }

  /** Of these released objects, those the coordinator knows of (and forgets now): only they are sent. */
  released(ids: readonly ObjectId[]): ObjectId[] {
    return ids.filter((id) => this.published.delete(id))
  }

  /** Refs to these objects leave this connection: those owned here and not yet published are published now. */
  escape(ids: readonly ObjectId[]): void {
    const refs = this.deps.refs
    const objects: Published = []
    for (const id of ids) {
      if (!refs.isOwned(id) || this.published.has(id)) continue
      this.published.add(id)
      const e = this.deps.objects.peek(id)
      if (e?.data) objects.push({ objectId: id, data: e.data })
      else if (e?.error) objects.push({ objectId: id, error: e.error })
      else {
        objects.push({ objectId: id })
        this.pending.add(id)
      }
    }
    if (objects.length) this.deps.send({ type: 'publish', objects })
  }

  /** Owned objects got their value or error here: those published while pending are published again with it. */
  resolvedOwned(values: readonly OwnedValue[]): void {
    const objects: Published = []
    for (const v of values) {
      if (!this.pending.delete(v.objectId)) continue
      if (v.data) objects.push({ objectId: v.objectId, data: v.data })
      else if (v.error) objects.push({ objectId: v.objectId, error: v.error })
    }
    if (objects.length && this.deps.isOpen()) this.deps.send({ type: 'publish', objects })
  }

  /** The coordinator entered these returns in its directory (owned by us): released at once if no ref is left. */
  registered(ids: readonly ObjectId[]): void {
    const refs = this.deps.refs
    const gone: ObjectId[] = []
    for (const id of ids) {
      this.pending.delete(id)
      if (refs.holds(id)) this.published.add(id)
      else gone.push(id)
    }
    if (gone.length && this.deps.isOpen()) this.deps.send({ type: 'release', objectIds: gone })
  }
}
