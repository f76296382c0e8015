import type { ObjectId } from './ids.ts'

/**
 * A future: the ID of an object that exists now or will once its task finishes.
 * Pass it to tasks (they receive the value), `get` it, `wait` on it.
 * @example
 * const ref = double.remote(21)
 * String(ref) // 'ObjectRef(3f2a…01000000)'
 * await mesh.get(ref) // 42
 */
export class ObjectRef<T = unknown> {
  /** Phantom field so `ObjectRef<number>` and `ObjectRef<string>` are different types. */
  declare readonly __value?: T
  constructor(readonly id: ObjectId) {}
  toString(): string {
    return `ObjectRef(${this.id})`
  }
  toJSON(): string {
    return this.toString()
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString()
  }
}
