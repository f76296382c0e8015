import { type IDBPDatabase, openDB } from 'idb'

/**
 * The plasma store's IndexedDB layout, shared by the node page and every Web Worker of the node (each opens the
 * same database, as Ray's workers share one plasma store). Namespaced by node id: two nodes in one browser profile
 * never see each other's objects.
 */
const STORE = 'objects'
export const plasmaDbName = (nodeId: string) => `shoal-plasma-${nodeId}`
/** The OPFS directory a node spills to (see spill.worker.ts), also namespaced by node id. */
export const spillDirName = (nodeId: string) => `shoal-spill-${nodeId}`

const cache = new Map<string, Promise<IDBPDatabase>>()
export function openPlasma(nodeId: string): Promise<IDBPDatabase> {
  let db = cache.get(nodeId)
  if (!db) {
    db = openDB(plasmaDbName(nodeId), 1, { upgrade: (d) => void d.createObjectStore(STORE) })
    cache.set(nodeId, db)
  }
  return db
}

/** Stored as an ArrayBuffer (docs/platform.md: the fastest IndexedDB value here). A view is copied only if partial. */
export async function writeObject(db: IDBPDatabase, id: string, bytes: Uint8Array): Promise<void> {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
  await db.put(STORE, whole ? bytes.buffer : bytes.slice().buffer, id)
}

export async function readObject(db: IDBPDatabase, id: string): Promise<Uint8Array | undefined> {
  const buf = (await db.get(STORE, id)) as ArrayBuffer | undefined
  return buf ? new Uint8Array(buf) : undefined
}

export async function deleteObject(db: IDBPDatabase, id: string): Promise<void> {
  await db.delete(STORE, id)
}

/** Deletes many objects in one transaction. */
export async function deleteObjects(db: IDBPDatabase, ids: string[]): Promise<void> {
  const tx = db.transaction(STORE, 'readwrite')
  await Promise.all([...ids.map((id) => tx.store.delete(id)), tx.done])
}

/** A fresh node starts with an empty store (a reloaded tab is a new node: its old objects are gone). */
export async function clearPlasma(db: IDBPDatabase): Promise<void> {
  await db.clear(STORE)
}

/**
 * Deletes a node's whole store from this browser: its IndexedDB database and its OPFS spill directory (the donor's
 * "Clear stored data"). The page's own connection to the database is closed first: an open one would block the delete.
 */
export async function deleteNodeStorage(nodeId: string): Promise<void> {
  const db = cache.get(nodeId)
  cache.delete(nodeId)
  if (db) (await db).close()
  await new Promise<void>((resolve, reject) => {
    const req = indexedDB.deleteDatabase(plasmaDbName(nodeId))
    req.onsuccess = () => resolve()
    req.onerror = () => reject(req.error ?? new Error('the database could not be deleted'))
    // Another connection (a worker not stopped yet) holds it: the delete completes once that one closes.
    req.onblocked = () => {}
  })
  try {
    const root = await navigator.storage.getDirectory()
    await root.removeEntry(spillDirName(nodeId), { recursive: true })
  } catch (e) {
    // None there (it never spilled), or no OPFS here: nothing to delete.
    if ((e as DOMException).name !== 'NotFoundError' && (e as DOMException).name !== 'SecurityError') throw e
  }
}
