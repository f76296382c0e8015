import { ByteSlab } from './byte-slab.ts'
import type { WireError } from './errors.ts'
import type { ObjectId } from './ids.ts'

/** Where a large object lives, and its size: its bytes are fetched on `get`. */
interface Large {
  size: number
  /** Node ids, or a browser driver's peer id. */
  locations: string[]
}

/**
 * Someone waiting on objects: one waiter serves a whole `get` of a million refs, each entry it waits on pointing to
 * it (a closure per object was ~600 bytes of each ref's cost in a large get).
 */
interface Waiter {
  /** Waits for the bytes of a large object, not only for it to be ready. */
  readonly bytes: boolean
  /** False once it wants nothing more (it was satisfied, timed out or cancelled): entries then skip it. */
  live: boolean
  fire(e: Entry): void
}

const SUBSCRIBED = 1
/** Its bytes are on their way (object-sources.ts: from a peer, or through the relay). */
const FETCHING = 2

/** One object. A class with every field set, so a million of them share one shape and hold their fields inline. */
class Entry {
  /** SUBSCRIBED: the coordinator pushes this object to us already (we own it or subscribed); FETCHING. */
  flags: number
  data: Uint8Array | undefined = undefined
  error: WireError | undefined = undefined
  large: Large | undefined = undefined
  /** Called once when it becomes ready (value, location or error), or for `bytes` waiters once its bytes are here. */
  waiters: Waiter | Waiter[] | undefined = undefined

  constructor(flags: number) {
    this.flags = flags
  }

  get size(): number | undefined {
    return this.large?.size
  }

  get locations(): string[] | undefined {
    return this.large?.locations
  }

  get ready(): boolean {
    return !!this.data || !!this.error || !!this.large
  }

  /** Whether `w` has what it waits for here. */
  satisfies(w: Waiter): boolean {
    return !!this.data || !!this.error || (!w.bytes && !!this.large)
  }

  wait(w: Waiter): void {
    const list = this.waiters
    if (!list) this.waiters = w
    else if (!Array.isArray(list)) this.waiters = list.live ? [list, w] : w
    else {
      // An object waited on again and again with timeouts: those gone are dropped as new ones come, each time the
      // list reaches a power of two (so a million tasks taking one pending ref still add theirs in constant time).
      const n = list.length
      if (n >= 8 && (n & (n - 1)) === 0) this.waiters = list.filter((x) => x.live)
      ;(this.waiters as Waiter[]).push(w)
    }
  }

  /** Calls the live waiters it now satisfies, and keeps the others (each is looked at once). */
  fire(): void {
    const list = this.waiters
    if (!list) return
    this.waiters = undefined
    for (const w of Array.isArray(list) ? list : [list]) {
      if (!w.live) continue
      if (this.satisfies(w)) w.fire(this)
      else this.wait(w)
    }
  }
}

/**
 * The driver's view of the objects it refers to: pending, ready (inline bytes, or a large object elsewhere), or
 * failed. Values stay encoded; `get` decodes a fresh copy each time, as Ray's get deserializes each time.
 */
export class ObjectTable {
  private entries = new Map<ObjectId, Entry>()
  /** Values arrive as views of the frames that carried them: kept as bytes of their own (see ByteSlab). */
  private readonly bytes = new ByteSlab()

  /** Tracks an object the coordinator will push to us (a return of our task, or something we put). */
  expect(id: ObjectId): void {
    if (!this.entries.has(id)) this.entries.set(id, new Entry(SUBSCRIBED))
  }

  /** Returns true if a subscription must be sent for this id. */
  ensure(id: ObjectId): boolean {
    const e = this.entries.get(id)
    if (e && e.flags & SUBSCRIBED) return false
    if (e) e.flags |= SUBSCRIBED
    else this.entries.set(id, new Entry(SUBSCRIBED))
    return true
  }

  resolve(id: ObjectId, update: { data?: Uint8Array; error?: WireError; size?: number; locations?: string[] }): void {
    const e = this.entries.get(id)
    if (!e) return // released before its value arrived
    if (e.error || e.data) return
    // An error for a large object already known: its fetch failed.
    if (e.large && !update.error) return
    if (update.error) e.error = update.error
    else if (update.data) e.data = this.bytes.keep(update.data)
    else e.large = { size: update.size ?? 0, locations: update.locations ?? [] }
    e.fire()
  }

  /** Fails an object whatever it held (it was freed, or the message that would make it was refused). */
  fail(id: ObjectId, error: WireError): void {
    let e = this.entries.get(id)
    if (!e) this.entries.set(id, (e = new Entry(SUBSCRIBED)))
    e.data = undefined
    e.large = undefined
    e.flags &= ~FETCHING
    e.error = error
    e.fire()
  }

  isReady(id: ObjectId): boolean {
    return !!this.entries.get(id)?.ready
  }

  /** Ready, but its bytes live elsewhere and must be fetched before decoding. */
  needsFetch(id: ObjectId): boolean {
    const e = this.entries.get(id)
    return !!e && !e.data && !e.error && !!e.large && !(e.flags & FETCHING)
  }

  /** What is known of an object now: its bytes, its error, or (large) its size and where it lives. */
  peek(id: ObjectId): Readonly<{ data?: Uint8Array; error?: WireError; size?: number; locations?: string[] }> | undefined {
    return this.entries.get(id)
  }

  read(id: ObjectId): { data?: Uint8Array; error?: WireError } | undefined {
    const e = this.entries.get(id)
    return e && (e.data || e.error) ? e : undefined
  }

  /** Where a large object this connection holds itself also lives (its own put: served by it, or by the coordinator). */
  locate(id: ObjectId, size: number, locations: string[]): void {
    const e = this.entries.get(id)
    if (e) e.large = { size, locations }
  }

  locationsOf(id: ObjectId): string[] {
    return this.entries.get(id)?.large?.locations ?? []
  }

  /** The whole bytes of a large object arrived (pulled from a peer, or through the relay). */
  setData(id: ObjectId, data: Uint8Array): void {
    const e = this.entries.get(id)
    if (!e || e.data || e.error) return
    e.data = data
    e.flags &= ~FETCHING
    e.fire()
  }

  startFetch(id: ObjectId): void {
    const e = this.entries.get(id)
    if (e) e.flags |= FETCHING
  }

  /** Calls `cb` once the object is ready (or, with `data`, once its bytes are here); returns a canceller. */
  onReady(id: ObjectId, cb: () => void, data = false): () => void {
    const e = this.entries.get(id)
    const w: Waiter = { bytes: data, live: true, fire: cb }
    if (!e || e.satisfies(w)) {
      cb()
      return () => {}
    }
    e.wait(w)
    return () => {
      w.live = false
    }
  }

  /**
   * Resolves with how many of `ids` are ready (or, for `'bytes'`, have their bytes here) once `need` are, once any
   * has failed (`failFast`), or once `deadline` (a performance.now() time) passes. Never waits past the deadline.
   * A number, not a promise, if there is nothing to wait for.
   */
  waitFor(
    ids: readonly ObjectId[],
    need: number,
    deadline: number | undefined,
    failFast: boolean,
    what: 'ready' | 'bytes',
  ): number | Promise<number> {
    const bytes = what === 'bytes'
    const isDone = (id: ObjectId) => (bytes ? !!this.read(id) : this.isReady(id))
    const count = () => ids.reduce((n, id) => n + (isDone(id) ? 1 : 0), 0)
    let ready = count()
    if (ready >= need || (failFast && ids.some((id) => this.read(id)?.error))) return ready
    return new Promise<number>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const finish = () => {
        if (!w.live) return
        w.live = false
        if (timer) clearTimeout(timer)
        resolve(count())
      }
      const w: Waiter = {
        bytes,
        live: true,
        fire: (e) => {
          if (++ready >= need || (failFast && e.error)) queueMicrotask(finish)
        },
      }
      for (const id of ids) {
        const e = this.entries.get(id)
        if (!e)
          ready++ // released meanwhile: nothing will come
        else if (!e.satisfies(w)) e.wait(w)
      }
      if (ready >= need) queueMicrotask(finish)
      if (deadline !== undefined) timer = setTimeout(finish, Math.max(0, deadline - performance.now()))
    })
  }

  delete(id: ObjectId): void {
    this.entries.delete(id)
  }

  /** Fails every object still waiting for a value or its bytes (the connection is gone). */
  failAll(error: WireError): void {
    for (const e of this.entries.values()) {
      if (e.data || e.error) continue
      e.error = error
      e.fire()
    }
  }
}
