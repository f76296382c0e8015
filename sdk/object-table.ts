import type { WireError } from './errors.ts'
import type { ObjectId } from './ids.ts'

interface Entry {
  data?: Uint8Array
  error?: WireError
  /** Called once when the entry becomes ready (value or error). */
  waiters?: (() => void)[]
  /** Whether the coordinator pushes this object to us already (we own it or subscribed). */
  subscribed: boolean
}

/**
 * The driver's view of the objects it refers to: pending, ready with encoded bytes, or failed.
 * Values stay encoded; `get` decodes a fresh copy each time, as Ray's get deserializes each time.
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

  resolve(id: ObjectId, data: Uint8Array | undefined, error: WireError | undefined): void {
    const e = this.entries.get(id)
    if (!e) return // released before its value arrived
    if (e.data || e.error) return
    if (error) e.error = error
    else e.data = data
    const waiters = e.waiters
    e.waiters = undefined
    if (waiters) for (const w of waiters) w()
  }

  isReady(id: ObjectId): boolean {
    const e = this.entries.get(id)
    return !!(e && (e.data || e.error))
  }

  read(id: ObjectId): { data?: Uint8Array; error?: WireError } | undefined {
    const e = this.entries.get(id)
    return e && (e.data || e.error) ? e : undefined
  }

  /** Calls `cb` once the object is ready; returns a function that cancels the wait. */
  onReady(id: ObjectId, cb: () => void): () => void {
    const e = this.entries.get(id)
    if (!e || e.data || e.error) {
      cb()
      return () => {}
    }
    e.waiters ??= []
    e.waiters.push(cb)
    return () => {
      const i = e.waiters?.indexOf(cb) ?? -1
      if (i >= 0) e.waiters?.splice(i, 1)
    }
  }

  delete(id: ObjectId): void {
    this.entries.delete(id)
  }

  /** Fails every pending object (the connection is gone). */
  failAll(error: WireError): void {
    for (const [id, e] of this.entries) if (!e.data && !e.error) this.resolve(id, undefined, error)
  }
}
