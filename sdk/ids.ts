/**
 * Every kind of ID, branded so one cannot be passed where another is meant. IDs carry their lineage like Ray's:
 * a TaskId ends with its JobId, an ObjectId is its TaskId plus a return index, an ActorId ends with its JobId.
 * All are lower-case hex: JobId 8, ActorId 32, TaskId 48, ObjectId/NodeId/WorkerId 56.
 */
type Brand<T, B extends string> = T & { readonly __brand: B }

export type JobId = Brand<string, 'JobId'>
export type TaskId = Brand<string, 'TaskId'>
export type ObjectId = Brand<string, 'ObjectId'>
export type NodeId = Brand<string, 'NodeId'>
export type WorkerId = Brand<string, 'WorkerId'>
export type ActorId = Brand<string, 'ActorId'>
export type FunctionId = Brand<string, 'FunctionId'>

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

export function randomHex(bytes: number): string {
  const buf = crypto.getRandomValues(new Uint8Array(bytes))
  let out = ''
  for (let i = 0; i < bytes; i++) out += HEX[buf[i] as number]
  return out
}

/** A 32-bit little-endian counter as 8 hex digits, the way Ray prints `01000000` for job 1. */
function u32le(n: number): string {
  return HEX[n & 0xff]! + HEX[(n >>> 8) & 0xff]! + HEX[(n >>> 16) & 0xff]! + HEX[(n >>> 24) & 0xff]!
}

export const jobIdFromNumber = (n: number): JobId => u32le(n) as JobId
export const newNodeId = (): NodeId => randomHex(28) as NodeId
export const newWorkerId = (): WorkerId => randomHex(28) as WorkerId
export const newActorId = (job: JobId): ActorId => (randomHex(12) + job) as ActorId
export const newTaskId = (job: JobId): TaskId => (randomHex(20) + job) as TaskId
/** Return values are numbered from 1, as in Ray. */
export const objectIdOf = (task: TaskId, index = 1): ObjectId => (task + u32le(index)) as ObjectId
/** Objects made by `put` use index 0, which no task return ever has. */
export const newPutObjectId = (job: JobId): ObjectId => objectIdOf(newTaskId(job), 0)

export const taskIdOfObject = (id: ObjectId): TaskId => id.slice(0, 48) as TaskId
export const jobIdOfTask = (id: TaskId): JobId => id.slice(40, 48) as JobId

/** cyrb53 twice with two seeds: a stable 104-bit content hash that needs no async crypto (it runs in every realm). */
export function functionIdOf(source: string): FunctionId {
  const h = (seed: number) => {
    let h1 = 0xdeadbeef ^ seed
    let h2 = 0x41c6ce57 ^ seed
    for (let i = 0; i < source.length; i++) {
      const ch = source.charCodeAt(i)
      h1 = Math.imul(h1 ^ ch, 2654435761)
      h2 = Math.imul(h2 ^ ch, 1597334677)
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
    return (h2 >>> 0).toString(16).padStart(8, '0') + (h1 >>> 0).toString(16).padStart(8, '0')
  }
  return (h(0) + h(1) + source.length.toString(16)) as FunctionId
}
