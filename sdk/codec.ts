import { addExtension, Packr } from 'msgpackr'
import { setErrorFieldDecoder, UNSERIALIZABLE_FIELDS, ValidationError } from './errors.ts'
import type { ObjectId } from './ids.ts'
import { ObjectRef } from './object-ref.ts'

/**
 * Two encodings: frames (control messages, whose user values are opaque bytes) and values (what users pass and
 * return). Values use msgpackr's structured-clone mode so typed arrays, Map, Set, Date, BigInt, Error and cycles
 * round-trip exactly; both ends must use these same settings.
 */
/**
 * Frames carry bytes as plain msgpack bin. With `moreTypes`, msgpackr in Node writes a Uint8Array that is not a Buffer
 * as a typed-array extension, which every decoder copies into an ArrayBuffer of its own: ~200 bytes per result of a
 * 2-byte value, held as long as the result is (a million results: 200 MB). Bin decodes as a view of the frame.
 */
const framePackr = new Packr({ useRecords: true, moreTypes: false, int64AsType: 'bigint' })
const valuePackr = new Packr({
  useRecords: true, // records keep plain objects apart from Maps (mapsAsObjects: false) and halve small payloads
  mapsAsObjects: false,
  moreTypes: true,
  structuredClone: true,
  int64AsType: 'bigint',
})

export const encodeFrame = (msg: unknown): Uint8Array => framePackr.pack(msg)
/**
 * Decodes one frame. msgpackr keeps record definitions it read across calls; every frame carries its own, so they
 * are forgotten first: one sender's definitions never shape how another's frame decodes.
 */
export const decodeFrame = (bytes: Uint8Array): unknown => {
  ;(framePackr as { structures?: unknown[] }).structures = []
  return framePackr.unpack(bytes)
}

/** Messages bigger than this (object chunks) get a frame of their own; smaller ones share one per turn. */
const BATCH_LIMIT = 64 * 1024

/**
 * Packs the messages of one turn of the event loop into as few frames as possible, none over `maxBytes`: a frame
 * holds one message, or an array of small ones, in order. `send` receives each frame with the messages it carries
 * (so a sender can tell which of its messages a refused frame held). A single message over `maxBytes` cannot be sent
 * at all: it goes to `tooLarge` instead, and the rest still go.
 */
export function encodeFrames<M>(
  messages: readonly M[],
  send: (frame: Uint8Array, carried: readonly M[]) => void,
  maxBytes = Number.POSITIVE_INFINITY,
  tooLarge: (msg: M, bytes: number) => void = () => {},
): void {
  let batch: M[] = []
  const flush = () => {
    if (batch.length) sendBatch(batch, send, maxBytes, tooLarge)
    batch = []
  }
  for (const m of messages) {
    if (isLarge(m)) {
      flush()
      sendBatch([m], send, maxBytes, tooLarge)
    } else batch.push(m)
  }
  flush()
}

function sendBatch<M>(
  batch: M[],
  send: (frame: Uint8Array, carried: readonly M[]) => void,
  maxBytes: number,
  tooLarge: (msg: M, bytes: number) => void,
): void {
  const frame = encodeFrame(batch.length === 1 ? batch[0] : batch)
  if (frame.byteLength <= maxBytes) return send(frame, batch)
  if (batch.length === 1) return tooLarge(batch[0] as M, frame.byteLength)
  // Rare (a huge submission in one turn): pack each message alone and cut the run into frames under the limit.
  // A msgpack array of separately packed elements is a valid frame: each element carries its own record definitions.
  let parts: Uint8Array[] = []
  let carried: M[] = []
  let bytes = 5
  const cut = () => {
    if (parts.length) send(joinAsArray(parts, bytes), carried)
    parts = []
    carried = []
    bytes = 5
  }
  for (const m of batch) {
    const part = encodeFrame(m).slice()
    if (part.byteLength + 5 > maxBytes) {
      tooLarge(m, part.byteLength)
      continue
    }
    if (bytes + part.byteLength > maxBytes) cut()
    parts.push(part)
    carried.push(m)
    bytes += part.byteLength
  }
  cut()
}

/** A msgpack array (header, then the already packed elements). */
function joinAsArray(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total)
  const n = parts.length
  let o: number
  if (n < 16) {
    out[0] = 0x90 | n
    o = 1
  } else if (n < 0x10000) {
    out[0] = 0xdc
    out[1] = n >> 8
    out[2] = n & 0xff
    o = 3
  } else {
    out[0] = 0xdd
    new DataView(out.buffer).setUint32(1, n)
    o = 5
  }
  for (const p of parts) {
    out.set(p, o)
    o += p.byteLength
  }
  return out.subarray(0, o)
}

function isLarge(m: unknown): boolean {
  const data = (m as { data?: unknown; frame?: unknown }).data ?? (m as { frame?: unknown }).frame
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
  /**
   * The object every handle to the actor refers to (its creation task's return). Handles are counted through it, as
   * Ray counts actor handles: an unnamed, non-detached actor ends once no handle to it is left anywhere.
   */
  handleId?: string
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
  const bytes = valuePackr.pack(value)
  // In structured-clone mode msgpackr keeps the value's reference map (for cycles) until its next pack: the last value
  // encoded — and any ObjectRef inside it — could never be collected, so its object never freed. Packing a constant
  // replaces that map with an empty one (the bytes above stay valid: the next pack writes after them).
  valuePackr.pack(null)
  return bytes
}

export function decodeValue<T = unknown>(bytes: Uint8Array, ctx?: DecodeContext): T {
  const prev = decodeContext
  decodeContext = ctx
  try {
    // msgpackr caches a DataView on the array it decodes: on a fresh view, not on the stored bytes (a million values
    // got would each keep one, ~115 bytes).
    return valuePackr.unpack(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as T
  } finally {
    decodeContext = prev
  }
}

setErrorFieldDecoder((bytes) => valuePackr.unpack(bytes))

/**
 * The own enumerable fields of a thrown error (`e.code`, `e.field`…), encoded as a value, so the caller's
 * `TaskError.cause` has them (Ray's `RayTaskError.cause` is the exception itself). Fields that cannot cross a process
 * (functions, symbols…) are left out; a thrown non-Error object is kept whole.
 */
export function encodeErrorFields(thrown: unknown): Uint8Array | undefined {
  if (typeof thrown !== 'object' || thrown === null) return undefined
  const fields: Record<string, unknown> = {}
  const left: string[] = []
  let any = false
  for (const k of Object.keys(thrown)) {
    if (k === 'name' || k === 'message' || k === 'stack' || k === 'cause') continue
    const v = (thrown as Record<string, unknown>)[k]
    try {
      checkSerializable(v, k, undefined, new Set())
    } catch (e) {
      left.push((e as Error).message)
      continue
    }
    fields[k] = v
    any = true
  }
  // As Ray says of an exception it cannot serialize: the cause tells what was left out and why.
  if (left.length) fields[UNSERIALIZABLE_FIELDS] = left.join('; ')
  return any || left.length ? valuePackr.pack(fields).slice() : undefined
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
  if ((v as { toWireHandle?: unknown }).toWireHandle) {
    const handleId = (v as ActorHandleLike).toWireHandle().handleId
    if (handleId) refs?.push(handleId as ObjectId)
    return
  }
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
