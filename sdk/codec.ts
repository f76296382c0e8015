import { addExtension, Packr } from 'msgpackr'
import { ValidationError } from './errors.ts'
import type { ObjectId } from './ids.ts'
import { ObjectRef } from './object-ref.ts'

/**
 * Two encodings: frames (control messages, whose user values are opaque bytes) and values (what users pass and
 * return). Values use msgpackr's structured-clone mode so typed arrays, Map, Set, Date, BigInt, Error and cycles
 * round-trip exactly; both ends must use these same settings.
 */
const framePackr = new Packr({ useRecords: true, moreTypes: true, int64AsType: 'bigint' })
const valuePackr = new Packr({
  useRecords: true, // records keep plain objects apart from Maps (mapsAsObjects: false) and halve small payloads
  mapsAsObjects: false,
  moreTypes: true,
  structuredClone: true,
  int64AsType: 'bigint',
})

export const encodeFrame = (msg: unknown): Uint8Array => framePackr.pack(msg)
export const decodeFrame = (bytes: Uint8Array): unknown => framePackr.unpack(bytes)

/** Messages bigger than this (object chunks) get a frame of their own; smaller ones share one per turn. */
const BATCH_LIMIT = 64 * 1024

/**
 * Packs the messages of one turn of the event loop into as few frames as possible: a frame holds one message, or an
 * array of small ones. Order is kept. Saves a WebSocket frame (and a wakeup on the other side) per message.
 */
export function encodeFrames(messages: readonly unknown[], send: (frame: Uint8Array) => void): void {
  let batch: unknown[] = []
  const flush = () => {
    if (batch.length === 1) send(encodeFrame(batch[0]))
    else if (batch.length > 1) send(encodeFrame(batch))
    batch = []
  }
  for (const m of messages) {
    if (isLarge(m)) {
      flush()
      send(encodeFrame(m))
    } else batch.push(m)
  }
  flush()
}

function isLarge(m: unknown): boolean {
  const data = (m as { data?: unknown }).data
  return data instanceof Uint8Array && data.byteLength > BATCH_LIMIT
}

/** The messages in a frame (one, or a batch). */
export function decodeFrames(bytes: Uint8Array): unknown[] {
  const v = decodeFrame(bytes)
  return Array.isArray(v) ? v : [v]
}

/** What decoding a value needs in order to rebuild live handles inside it (actor handles bind to a connection). */
export interface DecodeContext {
  bindActorHandle?(wire: ActorHandleWire): unknown
  /** Makes the ObjectRefs found inside a value, so the connection can count them (borrowed refs). */
  makeRef?(id: ObjectId): ObjectRef
}
/** An actor handle on the wire: enough to call it from anywhere. */
export interface ActorHandleWire {
  actorId: string
  className: string
  methods: string[]
}
/** Anything that encodes as an actor handle implements this. */
export interface ActorHandleLike {
  toWireHandle(): ActorHandleWire
}

const OBJECT_REF_EXT = 0x51
const ACTOR_HANDLE_EXT = 0x52
let decodeContext: DecodeContext | undefined

addExtension({
  Class: ObjectRef,
  type: OBJECT_REF_EXT,
  write: (ref: ObjectRef) => ref.id,
  read: (id: ObjectId) => decodeContext?.makeRef?.(id) ?? new ObjectRef(id),
})

/** Registered by the actor-handle module so the codec does not import it (the handle depends on the connection). */
export function registerActorHandleClass(Class: new (...args: never[]) => ActorHandleLike): void {
  addExtension({
    Class,
    type: ACTOR_HANDLE_EXT,
    write: (h: ActorHandleLike) => h.toWireHandle(),
    read: (w: ActorHandleWire) => decodeContext?.bindActorHandle?.(w) ?? w,
  })
}

/**
 * Encodes a user value. Throws ValidationError naming the first part that cannot cross a process (a function, a
 * symbol, a Promise, a WeakMap…), because msgpackr would silently turn it into `undefined`.
 * ObjectRefs found inside are pushed to `refs` (they keep the objects they name alive).
 */
export function encodeValue(value: unknown, what: string, refs?: ObjectId[]): Uint8Array {
  checkSerializable(value, what, refs, new Set())
  return valuePackr.pack(value)
}

export function decodeValue<T = unknown>(bytes: Uint8Array, ctx?: DecodeContext): T {
  const prev = decodeContext
  decodeContext = ctx
  try {
    return valuePackr.unpack(bytes) as T
  } finally {
    decodeContext = prev
  }
}

const OPAQUE = [ArrayBuffer, DataView, Date, RegExp, Error] as const

function checkSerializable(v: unknown, path: string, refs: ObjectId[] | undefined, seen: Set<object>): void {
  switch (typeof v) {
    case 'function':
      throw new ValidationError(`${path} is a function, which cannot be serialized (pass data, or define it inside the task)`)
    case 'symbol':
      throw new ValidationError(`${path} is a symbol, which cannot be serialized`)
    case 'object':
      break
    default:
      return
  }
  if (v === null || seen.has(v)) return
  seen.add(v)
  if (v instanceof ObjectRef) {
    refs?.push(v.id)
    return
  }
  if (ArrayBuffer.isView(v) || OPAQUE.some((C) => v instanceof C)) return
  if ((v as { toWireHandle?: unknown }).toWireHandle) return
  if (v instanceof Promise) throw new ValidationError(`${path} is a Promise; pass its ObjectRef or await it first`)
  if (v instanceof WeakMap || v instanceof WeakSet || v instanceof WeakRef)
    throw new ValidationError(`${path} is a ${v.constructor.name}, which cannot be serialized`)
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkSerializable(v[i], `${path}[${i}]`, refs, seen)
  } else if (v instanceof Map) {
    for (const [k, x] of v) {
      checkSerializable(k, `${path} (a Map key)`, refs, seen)
      checkSerializable(x, `${path}.get(${String(k)})`, refs, seen)
    }
  } else if (v instanceof Set) {
    for (const x of v) checkSerializable(x, `${path} (a Set member)`, refs, seen)
  } else {
    for (const k of Object.keys(v)) checkSerializable((v as Record<string, unknown>)[k], `${path}.${k}`, refs, seen)
  }
}
