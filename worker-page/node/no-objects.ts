import type { NodeAgent } from './agent.ts'
import type { NodeObjects } from './ports.ts'

/**
 * The object store of a node that holds no objects (a simulated node, a test's in-process node): a large argument
 * fails as lost, an upload the coordinator asks for is refused, the rest does nothing. `what` names the node in the
 * reasons; `agent` is the node's agent once it exists (it sends the refusals).
 */
export function noObjects(what: string, agent: () => NodeAgent | undefined): NodeObjects {
  return {
    used: 0,
    spilledBytes: 0,
    acquire: async () => {
      throw Object.assign(new Error(`${what} holds no large objects`), { name: 'ObjectLostError', code: 'OBJECT_LOST' })
    },
    release: () => {},
    stored: () => {},
    onChunk: () => {},
    onObjects: () => {},
    upload: async (objectId) => agent()?.send({ type: 'upload-failed', objectId: objectId as never, reason: `${what} holds no objects` }),
    delete: async () => {},
    close: () => {},
  }
}
