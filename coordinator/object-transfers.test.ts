import { describe, expect, it } from 'vitest'
import type { ObjectId } from '../sdk/ids.ts'
import type { ObjectUpdate } from '../sdk/protocol/index.ts'
import { NodeTable } from './gcs/nodes.ts'
import { ObjectDirectory } from './gcs/object-directory.ts'
import { ObjectTransfers } from './object-transfers.ts'
import type { Session } from './session.ts'

const id = '0'.repeat(40).concat('01000000', '01000000') as ObjectId

describe('object transfers', () => {
  it('a fetch of a lost object gets its own error, said once (not "Object X is lost: Object X is lost: …")', () => {
    const objects = new ObjectDirectory()
    const transfers = new ObjectTransfers({
      nodes: new NodeTable(),
      objects,
      nodeSession: () => undefined,
      holderSession: () => undefined,
      log: () => {},
    })
    objects.create(id, '01000000', { pushObject: () => {} })
    objects.resolve(id, { size: 1_000_000, location: 'node-1' })
    objects.removeNode('node-1')
    const got: ObjectUpdate[] = []
    transfers.fetch({ pushObject: (u: ObjectUpdate) => void got.push(u) } as unknown as Session, [id])
    expect(got[0]?.error?.message).toBe(`Object ${id} is lost: its only copy was on node node-1, which died`)
  })
})
