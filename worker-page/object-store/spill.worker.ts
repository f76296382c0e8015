/// <reference lib="webworker" />
import * as Comlink from 'comlink'
import type { SpillApi } from '../../sdk/protocol/spill.ts'
import { deleteObjects, openPlasma, readObject, spillDirName, writeObject } from './plasma-db.ts'

/**
 * Spilling, in a worker because OPFS sync access handles exist only there (and are the fast path: docs/platform.md).
 * Moves objects IndexedDB → OPFS file and back; the page decides what and when.
 */
let nodeId = ''
let dir: Promise<FileSystemDirectoryHandle> | undefined
const spillDir = () => {
  dir ??= navigator.storage.getDirectory().then((root) => root.getDirectoryHandle(spillDirName(nodeId), { create: true }))
  return dir
}

const api = {
  init(id: string): void {
    nodeId = id
  },
  /**
   * Writes each object to its own file, then drops it from IndexedDB. Hot objects come with their bytes (from the
   * page's memory); cold ones are read from IndexedDB. Returns bytes written and the time it took.
   */
  async spill(items: { id: string; bytes?: Uint8Array | undefined }[]): Promise<{ spilled: string[]; bytes: number; ms: number }> {
    const ids = items.map((x) => x.id)
    const given = new Map(items.flatMap((x) => (x.bytes ? [[x.id, x.bytes] as const] : [])))
    const db = await openPlasma(nodeId)
    const d = await spillDir()
    const t0 = performance.now()
    let bytes = 0
    const spilled: string[] = []
    // The next object is read from IndexedDB while this one is written to OPFS.
    const load = (id: string | undefined) =>
      id === undefined ? undefined : given.has(id) ? Promise.resolve(given.get(id)) : readObject(db, id)
    let next = load(ids[0])
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as string
      const data = await next
      next = load(ids[i + 1])
      if (!data) continue
      const file = await d.getFileHandle(id, { create: true })
      const h = await file.createSyncAccessHandle()
      try {
        h.truncate(0)
        if (h.write(data, { at: 0 }) !== data.byteLength) throw new Error('short write')
        // No flush: close() persists the file, and a spill file is a cache (a reloaded tab is a new node).
      } finally {
        h.close()
      }
      bytes += data.byteLength
      spilled.push(id)
    }
    await deleteObjects(db, spilled)
    return { spilled, bytes, ms: performance.now() - t0 }
  },
  /** Brings a spilled object back into IndexedDB. */
  async restore(id: string): Promise<number> {
    const db = await openPlasma(nodeId)
    const d = await spillDir()
    const file = await d.getFileHandle(id)
    const h = await file.createSyncAccessHandle()
    let data: Uint8Array
    try {
      data = new Uint8Array(h.getSize())
      h.read(data, { at: 0 })
    } finally {
      h.close()
    }
    await writeObject(db, id, data)
    await d.removeEntry(id)
    return data.byteLength
  },
  async remove(ids: string[]): Promise<void> {
    const d = await spillDir()
    for (const id of ids) await d.removeEntry(id).catch(() => {})
  },
  /** Bare IndexedDB read + OPFS write of these objects, no bookkeeping: the floor for an IndexedDB-backed spill. */
  async bareReadWrite(ids: string[]): Promise<number> {
    const db = await openPlasma(nodeId)
    const d = await spillDir()
    const t0 = performance.now()
    for (const id of ids) {
      const data = (await readObject(db, id)) as Uint8Array
      const h = await (await d.getFileHandle('bare-floor', { create: true })).createSyncAccessHandle()
      try {
        h.write(data, { at: 0 })
      } finally {
        h.close()
      }
    }
    const ms = performance.now() - t0
    await d.removeEntry('bare-floor')
    return ms
  },
  /**
   * The spill benchmark's baseline: the same objects (`count` × `size` bytes, already in this worker's memory)
   * written to their own OPFS files with sync access handles, and nothing else.
   */
  async bareWrite(count: number, size: number): Promise<number> {
    const d = await spillDir()
    const objects = Array.from({ length: count }, () => new Uint8Array(size).fill(7))
    const t0 = performance.now()
    for (let i = 0; i < count; i++) {
      const h = await (await d.getFileHandle(`bare-${i}`, { create: true })).createSyncAccessHandle()
      try {
        h.truncate(0)
        h.write(objects[i] as Uint8Array, { at: 0 })
      } finally {
        h.close()
      }
    }
    const ms = performance.now() - t0
    for (let i = 0; i < count; i++) await d.removeEntry(`bare-${i}`)
    return ms
  },
} satisfies SpillApi

Comlink.expose(api)
