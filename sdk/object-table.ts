import { Assembly } from './chunks.ts'
import type { WireError } from './errors.ts'
import type { ObjectId } from './ids.ts'

interface Entry {
  data?: Uint8Array
  error?: WireError
  /** A large object that exists elsewhere (a node's plasma store): its bytes are fetched on `get`. */
  size?: number
  /** Where a large object lives (node ids, or a browser driver's peer id). */
  locations?: string[]
  /** Called once when the entry becomes ready (value, location or error). */
  waiters?: (() => void)[]
  /** Called once the bytes of a large object are here (or it failed). */
  dataWaiters?: (() => void)[]
  /** Whether the coordinator pushes this object to us already (we own it or subscribed). */
  subscribed: boolean
  /** Its bytes are on their way (pulled, or relayed in chunks into the assembly). */
  fetching?: Assembly
}

/**
 * The driver's view of the objects it refers to: pending, ready (inline bytes, or a large object elsewhere), or
 * failed. Values stay encoded; `get` decodes a fresh copy each time, as Ray's get deserializes each time.
 */
export class ObjectTable {
  private entries = new Map<ObjectId, Entry>()

  /** Tracks an object the coordinator will push to us (a return of our task, or something we put). */
  expect(id: ObjectId): void {
    if (!this.entries.has(id)) this.entries.set(id, { subscribed: true })
  }

  /** Returns true if a subscription must be sent for this id. */
  ensure(id: ObjectId): boolean {
    const e = this.entries.get(id)
    if (e?.subscribed) return false
    if (e) e.subscribed = true
    else this.entries.set(id, { subscribed: true })
    return true
  }

  resolve(id: ObjectId, update: { data?: Uint8Array; error?: WireError; size?: number; locations?: string[] }): void {
    const e = this.entries.get(id)
    if (!e) return // released before its value arrived
    if (e.error || e.data) return
    // An error for a large object already known: its fetch failed.
    if (e.size !== undefined && !update.error) return
    if (update.error) e.error = update.error
    else if (update.data) e.data = update.data
    else {
      e.size = update.size ?? 0
      if (update.locations) e.locations = update.locations
    }
    fire(e, 'waiters')
    if (e.data || e.error) fire(e, 'dataWaiters')
  }

  /** Fails an object whatever it held (it was freed, or the message that would make it was refused). */
  fail(id: ObjectId, error: WireError): void {
    const e = this.entries.get(id) ?? { subscribed: true }
    this.entries.set(id, e)
    e.data = undefined
    e.size = undefined
    e.fetching = undefined
    e.error = error
    fire(e, 'waiters')
    fire(e, 'dataWaiters')
  }

  isReady(id: ObjectId): boolean {
    const e = this.entries.get(id)
    return !!e && (!!e.data || !!e.error || e.size !== undefined)
  }

  /** Ready, but its bytes live elsewhere and must be fetched before decoding. */
  needsFetch(id: ObjectId): boolean {
    const e = this.entries.get(id)
    return !!e && !e.data && !e.error && e.size !== undefined && !e.fetching
  }

  /** What is known of an object now: its bytes, its error, or (large) its size and where it lives. */
  peek(id: ObjectId): Readonly<{ data?: Uint8Array; error?: WireError; size?: number; locations?: string[] }> | undefined {
    return this.entries.get(id)
  }

  read(id: ObjectId): { data?: Uint8Array; error?: WireError } | undefined {
    const e = this.entries.get(id)
    return e && (e.data || e.error) ? e : undefined
  }

  /** One chunk of a fetched large object. */
  chunk(id: ObjectId, offset: number, total: number, data: Uint8Array): void {
    const e = this.entries.get(id)
    if (!e || e.data || e.error) return
    // A chunk at offset 0 starts the object over (the relay failed over to another holder).
    if (!e.fetching || offset === 0 || e.fetching.total !== total) e.fetching = new Assembly(total)
    if (!e.fetching.add(offset, data)) return
    e.data = e.fetching.bytes
    e.fetching = undefined
    fire(e, 'dataWaiters')
  }

  /** Where a large object this connection holds itself also lives (its own put: served by it, or by the coordinator). */
  locate(id: ObjectId, size: number, locations: string[]): void {
    const e = this.entries.get(id)
    if (!e) return
    e.size = size
    e.locations = locations
  }

  locationsOf(id: ObjectId): string[] {
    return this.entries.get(id)?.locations ?? []
  }

  /** The whole bytes of a large object arrived at once (pulled from a peer). */
  setData(id: ObjectId, data: Uint8Array): void {
    const e = this.entries.get(id)
    if (!e || e.data || e.error) return
    e.data = data
    e.fetching = undefined
    fire(e, 'dataWaiters')
  }

  startFetch(id: ObjectId): void {
    const e = this.entries.get(id)
    if (e) e.fetching = new Assembly(e.size ?? 0)
  }

  /** Calls `cb` once the object is ready (or, with `data`, once its bytes are here); returns a canceller. */
  onReady(id: ObjectId, cb: () => void, data = false): () => void {
    const e = this.entries.get(id)
    const done = !e || e.data || e.error || (!data && e.size !== undefined)
    if (done) {
      cb()
      return () => {}
    }
    const key = data ? 'dataWaiters' : 'waiters'
    const list = (e[key] ??= [])
    list.push(cb)
    return () => {
      const i = list.indexOf(cb)
      if (i >= 0) list.splice(i, 1)
    }
  }

  delete(id: ObjectId): void {
    this.entries.delete(id)
  }

  /** Fails every object still waiting for a value or its bytes (the connection is gone). */
  failAll(error: WireError): void {
    for (const e of this.entries.values()) {
      if (e.data || e.error) continue
      e.error = error
      fire(e, 'waiters')
      fire(e, 'dataWaiters')
    }
  }
}

function fire(e: Entry, key: 'waiters' | 'dataWaiters'): void {
  const list = e[key]
  e[key] = undefined
  if (list) for (const w of list) w()
}
