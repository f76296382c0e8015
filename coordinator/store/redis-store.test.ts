import { afterAll, beforeAll } from 'vitest'
import { type RedisServer, startRedisServer } from './redis-server.fixture.ts'
import { RedisStore } from './redis-store.ts'
import { runContract } from './store.contract.ts'

let server: RedisServer
beforeAll(async () => {
  server = await startRedisServer()
})
afterAll(async () => {
  await server?.stop()
})

let n = 0
runContract('redis', {
  // A place is a key prefix on the one server: a fresh prefix is a fresh store; the same one again, a restart.
  create: async (place) => new RedisStore(server.url, place).connect(),
  freshPlace: async () => `shoal-test-${process.pid}-${++n}:`,
})
