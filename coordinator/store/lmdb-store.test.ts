import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'
import { LmdbStore } from './lmdb-store.ts'
import { runContract } from './store.contract.ts'

const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

runContract('lmdb', {
  create: async (place) => new LmdbStore(place as string),
  freshPlace: async () => {
    const d = await mkdtemp(join(tmpdir(), 'shoal-store-'))
    dirs.push(d)
    return d
  },
})
