import type { ObjectId } from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import { TurnBatch } from './turn-batch.ts'

/** One ObjectRef instance's claim on its object. `live` turns false once let go (the finalizer then does nothing). */
interface Hold {
  id: ObjectId
  live: boolean
}

/**
 * What the counter tells the coordinator: objects this connection stopped owning (the connection sends only those
 * the coordinator knows of: see Mesh), and borrows it took or ended.
 */
export interface RefMessages {
  release(ids: ObjectId[]): void
  borrow(ids: ObjectId[]): void
  unborrow(ids: ObjectId[]): void
}

/**
 * This connection's reference counts (Ray's ReferenceCounter, the borrower side): how many live ObjectRef
 * instances it has per object, which of them it owns (made by its own `remote`/`put`) and which it borrows (found
 * inside values). When the last instance of an id is collected, the owner releases it and a borrower reports back,
 * so the object lives exactly while someone can still use it.
 *
 * A task that is not an actor has a scope, as a Ray task's frame: everything it made or found during the task is let
 * go when the task ends. Objects it returns stay alive through containment in its result; refs found in its
 * arguments need no borrow, since the pending task pins them. Actors and drivers have no scope: their refs live
 * until collected, or until the connection closes.
 */
export class ReferenceCounter {
  private counts = new Map<ObjectId, number>()
  /** Of `counts`, how many are pending tasks that take the object (Ray's "submitted" count), not ObjectRef instances. */
  private submitted = new Map<ObjectId, number>()
  private borrowed = new Set<ObjectId>()
  /** Objects this connection made and still refers to (their owner is this connection, as in Ray). */
  private owned = new Set<ObjectId>()
  /**
   * Holds a collected instance's claim: a Hold inside a task's scope (which may let go of it first), else just the
   * id (a driver's million refs then cost no Hold each).
   */
  private readonly finalizer = new FinalizationRegistry<Hold | ObjectId>((h) => {
    if (typeof h === 'string') this.drop(h)
    else if (h.live) {
      h.live = false
      this.drop(h.id)
    }
  })
  private scope: { holds: Hold[]; made: Set<ObjectId> } | undefined
  private readonly releases = new TurnBatch<ObjectId>((ids) => this.messages.release(ids))
  private readonly borrows = new TurnBatch<ObjectId>((ids) => this.messages.borrow(ids))
  private readonly unborrows = new TurnBatch<ObjectId>((ids) => this.messages.unborrow(ids))
  private closed = false

  constructor(
    private readonly messages: RefMessages,
    /** The last local ref of an id is gone: its cached value can go. */
    private readonly forget: (id: ObjectId) => void,
  ) {}

  /** A ref to an object this connection made (a task return, a put). */
  own<T>(id: ObjectId): ObjectRef<T> {
    this.scope?.made.add(id)
    this.owned.add(id)
    return this.hold<T>(id)
  }

  /** Whether this connection made the object and still refers to it. */
  isOwned(id: ObjectId): boolean {
    return this.owned.has(id)
  }

  /**
   * Keeps objects alive for a pending task that takes refs to them, whatever becomes of the ObjectRef instances (a
   * task's scope may end first). One this connection does not own is borrowed from the coordinator meanwhile, so
   * its owner's release cannot collect it under the task. Undone by `unretain` when the task is done.
   */
  retain(ids: readonly ObjectId[]): void {
    for (const id of ids) {
      if (!this.owned.has(id) && !this.borrowed.has(id) && !this.closed) {
        this.borrowed.add(id)
        this.borrows.push(id)
      }
      this.counts.set(id, (this.counts.get(id) ?? 0) + 1)
      this.submitted.set(id, (this.submitted.get(id) ?? 0) + 1)
    }
  }

  unretain(ids: readonly ObjectId[]): void {
    for (const id of ids) {
      const n = (this.submitted.get(id) ?? 1) - 1
      if (n > 0) this.submitted.set(id, n)
      else this.submitted.delete(id)
      this.drop(id)
    }
  }

  /**
   * Ray's `get_all_reference_counts()`: every object this connection refers to, with its live ObjectRef instances
   * here (`local`) and the pending tasks it submitted that take the object (`submitted`).
   */
  table(): Map<ObjectId, { local: number; submitted: number }> {
    const out = new Map<ObjectId, { local: number; submitted: number }>()
    for (const [id, n] of this.counts) {
      const submitted = this.submitted.get(id) ?? 0
      out.set(id, { local: n - submitted, submitted })
    }
    return out
  }

  /** A ref found inside a value (an argument, a result, a stored object). */
  found<T>(id: ObjectId): ObjectRef<T> {
    if (!this.counts.has(id) && !this.scope && !this.closed) {
      this.borrowed.add(id)
      this.borrows.push(id)
    }
    return this.hold<T>(id)
  }

  holds(id: ObjectId): boolean {
    return this.counts.has(id)
  }

  /** Starts a task's scope (see the class comment). */
  beginScope(): void {
    this.scope = { holds: [], made: new Set() }
  }

  /**
   * Ends the task's scope: every ref made or found during it is let go now, and the objects it made are returned
   * for the task's result to release (after the coordinator has taken what the result contains).
   */
  endScope(): ObjectId[] {
    const scope = this.scope
    this.scope = undefined
    if (!scope) return []
    for (const h of scope.holds) {
      if (!h.live) continue
      h.live = false
      // The last hold of a borrowed object may be the scope's (the task it was passed to finished first): unborrow.
      if (!this.decrement(h.id) && !this.closed && this.borrowed.delete(h.id)) this.unborrows.push(h.id)
    }
    const release: ObjectId[] = []
    for (const id of scope.made) {
      if (this.counts.has(id)) continue // still held outside the scope (made before it, or kept by a later ref)
      this.owned.delete(id)
      release.push(id)
    }
    return release
  }

  /** The connection is closing: nothing more is said (the coordinator lets go of everything it held). */
  close(): void {
    this.closed = true
    this.releases.clear()
    this.borrows.clear()
    this.unborrows.clear()
  }

  /** Sends pending releases now (before a close, so the coordinator hears them). */
  flush(): void {
    this.borrows.flush()
    this.unborrows.flush()
    this.releases.flush()
  }

  private hold<T>(id: ObjectId): ObjectRef<T> {
    const ref = new ObjectRef<T>(id)
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1)
    if (this.scope) {
      const h: Hold = { id, live: true }
      this.finalizer.register(ref, h)
      this.scope.holds.push(h)
    } else this.finalizer.register(ref, id)
    return ref
  }

  private drop(id: ObjectId): void {
    if (this.decrement(id) || this.closed) return
    if (this.borrowed.delete(id)) this.unborrows.push(id)
    else if (this.owned.delete(id)) this.releases.push(id)
    // else: found inside a task's scope and never borrowed (its pending task kept it alive): nothing to say
  }

  /** Returns true while other instances of the id are still held. */
  private decrement(id: ObjectId): boolean {
    const n = (this.counts.get(id) ?? 1) - 1
    if (n > 0) {
      this.counts.set(id, n)
      return true
    }
    this.counts.delete(id)
    this.forget(id)
    return false
  }
}
