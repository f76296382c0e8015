import type { ControlStore } from './control-store.ts'
import { LmdbStore } from './lmdb-store.ts'
import { MemoryStore } from './memory-store.ts'
import { RedisStore } from './redis-store.ts'

/** Where the control store is when `--store` is not given: `.shoal/` in the working directory. */
export const DEFAULT_STORE = '.shoal'

/**
 * Opens the control store `--store` names: `memory`, `redis://HOST:PORT[/DB]` (or `rediss://`), or a directory for
 * the embedded LMDB store.
 */
export async function openStore(spec: string = DEFAULT_STORE): Promise<ControlStore> {
  if (spec === 'memory') return new MemoryStore()
  if (/^rediss?:\/\//.test(spec)) return new RedisStore(spec).connect()
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
    throw new Error(`--store ${spec}: not a store this coordinator knows (memory, redis://HOST:PORT[/DB], or a directory)`)
  return new LmdbStore(spec)
}
