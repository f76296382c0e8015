import { Redis } from 'ioredis'
import { type ControlStore, checkTable, pack, type Table, unpack } from './control-store.ts'

/**
 * The control store on Redis (`--store redis://HOST:PORT[/DB]`, through `ioredis`), for deployments where a standby
 * coordinator takes over: both see one store. Each table is one hash (`shoal:<table>`), counters are `INCR`ed keys.
 * One connection sends commands in order, so writes land in the order they were made.
 */
export class RedisStore implements ControlStore {
  readonly description: string
  private readonly redis: Redis

  constructor(
    url: string,
    /** Keys start with this (two clusters on one Redis database need different prefixes). */
    private readonly prefix = 'shoal:',
  ) {
    this.description = url.replace(/\/\/[^@/]*@/, '//***@') // never print a password
    // A store the coordinator cannot reach is an error it reports, not a wait without end.
    this.redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3, connectTimeout: 5000 })
  }

  /** Connects, or rejects saying where it could not connect. */
  async connect(): Promise<this> {
    try {
      await this.redis.connect()
    } catch (e) {
      this.redis.disconnect()
      throw new Error(`the control store at ${this.description} did not answer: ${(e as Error).message}`)
    }
    return this
  }

  private key(t: Table): string {
    if (this.closing) throw new Error(`the control store (${this.description}) is closed`)
    checkTable(t)
    return `${this.prefix}${t}`
  }

  async put(table: Table, key: string, value: unknown): Promise<void> {
    await this.redis.hset(this.key(table), key, Buffer.from(pack(value)))
  }

  async get<T>(table: Table, key: string): Promise<T | undefined> {
    const b = await this.redis.hgetBuffer(this.key(table), key)
    return b === null ? undefined : (unpack(b) as T)
  }

  async getAll<T>(table: Table): Promise<Map<string, T>> {
    const all = await this.redis.hgetallBuffer(this.key(table))
    return new Map(Object.entries(all).map(([k, b]) => [k, unpack(b) as T]))
  }

  async delete(table: Table, key: string): Promise<void> {
    await this.redis.hdel(this.key(table), key)
  }

  async increment(counter: string): Promise<number> {
    if (this.closing) throw new Error(`the control store (${this.description}) is closed`)
    return this.redis.incr(`${this.prefix}counter:${counter}`)
  }

  private closing: Promise<void> | undefined

  /** Sends what is queued, then disconnects (once). */
  close(): Promise<void> {
    this.closing ??= this.redis.quit().then(
      () => {},
      () => this.redis.disconnect(),
    )
    return this.closing
  }
}
