import { plasmaDbName, spillDirName } from './plasma-db.ts'

/**
 * Stores of nodes that are gone. Each node of a browser profile keeps its objects in an IndexedDB database and an OPFS
 * directory named by its node id; a tab that closed (or reloaded: it comes back as a new node) left them behind, and
 * nothing else would ever delete them. A live node holds the Web Lock `shoal-node-<id>` for its whole life, so a
 * store whose lock nobody holds belongs to no live tab: the next node started in that profile deletes it.
 */
const LOCK_PREFIX = 'shoal-node-'
const DB_PREFIX = plasmaDbName('')
const SPILL_PREFIX = spillDirName('')

/** Holds this node's lock for the life of the page. Resolves once it is held (before the store is made). */
export function holdNodeLock(nodeId: string): Promise<void> {
  const locks = (navigator as { locks?: LockManager }).locks
  if (!locks) return Promise.resolve()
  return new Promise((held) => {
    void locks.request(`${LOCK_PREFIX}${nodeId}`, () => {
      held()
      return new Promise<never>(() => {}) // released when the page goes
    })
  })
}

/** Deletes the stores of this profile's nodes whose lock nobody holds. Returns their node ids. */
export async function removeOrphanStores(ownId: string): Promise<string[]> {
  const locks = (navigator as { locks?: LockManager }).locks
  if (!locks || typeof indexedDB.databases !== 'function') return [] // without Web Locks a live store cannot be told apart
  const held = new Set(((await locks.query()).held ?? []).map((l) => l.name))
  const gone = (id: string) => id !== ownId && !held.has(`${LOCK_PREFIX}${id}`)
  const removed = new Set<string>()
  for (const { name } of await indexedDB.databases()) {
    if (!name?.startsWith(DB_PREFIX)) continue
    const id = name.slice(DB_PREFIX.length)
    if (!gone(id)) continue
    indexedDB.deleteDatabase(name)
    removed.add(id)
  }
  try {
    const root = await navigator.storage.getDirectory()
    for await (const name of (root as unknown as { keys(): AsyncIterable<string> }).keys()) {
      if (!name.startsWith(SPILL_PREFIX)) continue
      const id = name.slice(SPILL_PREFIX.length)
      if (!gone(id)) continue
      await root.removeEntry(name, { recursive: true }).catch(() => {})
      removed.add(id)
    }
  } catch {
    // No OPFS here (an old browser, a non-secure origin): only IndexedDB stores existed.
  }
  return [...removed]
}
