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
/** The char codes of each byte's first and second hex digit. */
const HI = HEX.map((h) => h.charCodeAt(0))
const LO = HEX.map((h) => h.charCodeAt(1))

/**
 * Random bytes are drawn from the system a pool at a time: one getRandomValues call costs ~25 µs in Node (a task id
 * each, it was 6% of a driver's time per sync round trip), 4 KiB of them barely more.
 */
const POOL_BYTES = 4096
/** Web Crypto: a global in browsers, workers and Node ≥ 19 alike (typed here, as this module has no platform's types). */
const webCrypto = (globalThis as unknown as { crypto: { getRandomValues<T extends Uint8Array>(a: T): T } }).crypto
let pool = new Uint8Array(0)
let poolAt = 0

/**
 * @internal Forgets the random bytes drawn so far: the next id draws afresh (the simulation does this before a seeded
 * run, so what an earlier run left in the pool does not make this run's ids).
 */
export function resetRandomPool(): void {
  pool = new Uint8Array(0)
  poolAt = 0
}
/** Char codes of an id being made, one array per id length (fromCharCode takes the whole array). */
const codesByLength = new Map<number, number[]>()

/**
 * `bytes` random bytes as hex, then `suffix`, as one flat string. Built with `+=` an id was a tree of ~15 string
 * pieces that V8 never flattens when the id is only used as a map key: 430 bytes per queued task of a driver,
 * against 64 for the flat string. As fast as `+=` (~170 ns for a task id).
 */
function hexOf(bytes: number, suffix = ''): string {
  if (poolAt + bytes > pool.length) {
    pool = webCrypto.getRandomValues(new Uint8Array(Math.max(POOL_BYTES, bytes)))
    poolAt = 0
  }
  const length = bytes * 2 + suffix.length
  let codes = codesByLength.get(length)
  if (!codes) codesByLength.set(length, (codes = new Array<number>(length).fill(0)))
  for (let i = 0; i < bytes; i++) {
    const b = pool[poolAt++] as number
    codes[2 * i] = HI[b] as number
    codes[2 * i + 1] = LO[b] as number
  }
  for (let i = 0; i < suffix.length; i++) codes[2 * bytes + i] = suffix.charCodeAt(i)
  return String.fromCharCode.apply(null, codes)
}

export function randomHex(bytes: number): string {
  return hexOf(bytes)
}

/** A 32-bit little-endian counter as 8 hex digits, the way Ray prints `01000000` for job 1. */
function u32le(n: number): string {
  return HEX[n & 0xff]! + HEX[(n >>> 8) & 0xff]! + HEX[(n >>> 16) & 0xff]! + HEX[(n >>> 24) & 0xff]!
}
/** The first return indexes' suffixes, made once. */
const RETURN_SUFFIXES = Array.from({ length: 64 }, (_, i) => u32le(i))

export const jobIdFromNumber = (n: number): JobId => u32le(n) as JobId
export const newNodeId = (): NodeId => hexOf(28) as NodeId
export const newWorkerId = (): WorkerId => hexOf(28) as WorkerId
export const newActorId = (job: JobId): ActorId => hexOf(12, job) as ActorId
export const newTaskId = (job: JobId): TaskId => hexOf(20, job) as TaskId
/**
 * Return values are numbered from 1, as in Ray. The id is a pair of its task's id and a shared suffix (32 bytes while
 * the task id lives anyway, against 72 for a flat copy).
 */
export const objectIdOf = (task: TaskId, index = 1): ObjectId => (task + (RETURN_SUFFIXES[index] ?? u32le(index))) as ObjectId
/** Objects made by `put` use index 0, which no task return ever has. */
export const newPutObjectId = (job: JobId): ObjectId => objectIdOf(newTaskId(job), 0)
/** Whether the object was made by `put` (index 0), not returned by a task. */
export const isPutObjectId = (id: ObjectId): boolean => id.endsWith(RETURN_SUFFIXES[0] as string)

export const taskIdOfObject = (id: ObjectId): TaskId => id.slice(0, 48) as TaskId
export const jobIdOfTask = (id: TaskId): JobId => id.slice(40, 48) as JobId
export const jobIdOfActor = (id: string): JobId => id.slice(24, 32) as JobId
/** The job an object belongs to (its task's). */
export const jobIdOfObject = (id: string): JobId => id.slice(40, 48) as JobId

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
