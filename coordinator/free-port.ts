import { createServer } from 'node:net'

/** A TCP port free on loopback now (for a server a test or benchmark starts: coturn, redis-server, a coordinator). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}
