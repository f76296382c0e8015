import { MemoryStore } from './memory-store.ts'
import { runContract } from './store.contract.ts'

runContract('memory', { create: async () => new MemoryStore(), freshPlace: async () => 'memory' })
