/**
 * A Map that forgets its oldest entries (in insertion order) once it holds more than `max`: what a peer, a client or
 * a long life can make a participant remember stays bounded. The one home of this rule.
 * @example
 * const seen = new BoundedMap<string, number>(10_000)
 * seen.set(id, Date.now()) // the 10,001st entry pushes out the first
 */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(
    private readonly max: number,
    /** Told of each entry forgotten to stay under `max` (not of deletes). */
    private readonly onEvict?: (key: K, value: V) => void,
  ) {
    super()
  }

  override set(key: K, value: V): this {
    super.set(key, value)
    while (this.size > this.max) {
      const [oldest, v] = this.entries().next().value as [K, V]
      super.delete(oldest)
      this.onEvict?.(oldest, v)
    }
    return this
  }
}

/** A Set that forgets its oldest members once it holds more than `max` (see BoundedMap). */
export class BoundedSet<T> extends Set<T> {
  constructor(private readonly max: number) {
    super()
  }

  override add(value: T): this {
    super.add(value)
    while (this.size > this.max) super.delete(this.values().next().value as T)
    return this
  }
}
