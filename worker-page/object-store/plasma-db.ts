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
