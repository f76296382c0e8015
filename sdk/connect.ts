import { ActorClass, type ActorHandle, ActorHandleBase, type ActorSubmitter } from './actor-handle.ts'
import { type DecodeContext, decodeValue, encodeValue } from './codec.ts'
import { ConnectionError, fromWireError, GetTimeoutError, ValidationError, type WireError } from './errors.ts'
import {
  type ActorId,
  type FunctionId,
  functionIdOf,
  type JobId,
  newActorId,
  newPutObjectId,
  newTaskId,
  type ObjectId,
  objectIdOf,
  randomHex,
} from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import { ObjectTable } from './object-table.ts'
import {
  CancelOptionsSchema,
  type ConnectOptions,
  ConnectOptionsSchema,
  GetOptionsSchema,
  parseOptions,
  WaitOptionsSchema,
} from './options.ts'
import {
  type ClientMessage,
  INLINE_OBJECT_MAX_BYTES,
  OBJECT_CHUNK_BYTES,
  PROTOCOL_VERSION,
  type ServerMessage,
  type TaskSpec,
} from './protocol.ts'
import { encodeArgs, RemoteFunction, type TaskSubmitter } from './remote-function.ts'
import { StateApi } from './state.ts'
import type { PeerMesh } from './transport/peer-mesh.ts'
import { ControlSocket } from './transport/websocket.ts'

const DEFAULT_ADDRESS = 'http://127.0.0.1:8265'
/** Submits are sent in frames of at most this many tasks so one frame never approaches the size limit. */
const SUBMIT_BATCH = 2000

function defaultAddress(): string {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
  if (env?.SHOAL_ADDRESS) return env.SHOAL_ADDRESS
  const loc = (globalThis as { location?: { origin?: string; protocol?: string } }).location
  if (loc?.origin && loc.protocol?.startsWith('http')) return loc.origin
  return DEFAULT_ADDRESS
}

type Fn = (...args: never[]) => unknown
type AnyClass = abstract new (...args: never[]) => object
const isClass = (f: unknown) => typeof f === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(f))

/**
 * A connection to a Shoal coordinator: one job. Everything a driver does goes through it.
 * Made by {@link connect}.
 */
export class Mesh implements TaskSubmitter, ActorSubmitter {
  /** The state API (Ray's `ray.util.state`). */
  readonly state: StateApi
  private objects = new ObjectTable()
  private registered = new Set<FunctionId>()
  private pendingSubmits: TaskSpec[] = []
  private submitScheduled = false
  private nextReqId = 1
  private requests = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  private refCounts = new Map<ObjectId, number>()
  /** Large by-value arguments already put, by identity: the ref lives as long as the value does. */
  private autoPuts = new WeakMap<object, ObjectRef>()
  private releases: ObjectId[] = []
  private closedReason: string | undefined
  private readonly finalizer = new FinalizationRegistry<ObjectId>((id) => this.dropRef(id))
  /** In a browser page: this driver's place in the peer mesh (WebRTC to and from nodes). Absent in Node. */
  private peers: PeerMesh | undefined
  /**
   * @internal Set by a task's worker: told when a call here starts and stops waiting, so the task's CPU can be lent
   * back to its node meanwhile (as Ray does for a worker blocked in ray.get).
   */
  blockingHooks: { enter(): void; leave(): void } | undefined
  /** Bytes of large objects moved peer to peer and through the coordinator's relay (diagnostics). */
  readonly transferStats = { peerBytes: 0, relayBytes: 0 }
  /** @internal How values decoded on this connection rebuild handles and refs (used by task workers too). */
  readonly decodeCtx: DecodeContext = {
    bindActorHandle: (w) => new ActorHandleBase(w.actorId as ActorId, w.className, w.methods, this),
    makeRef: (id) => this.borrowRef(id),
  }
  /** Refs found inside values that this connection did not make: pinned at the coordinator while they live. */
  private borrowed = new Set<ObjectId>()
  private borrows: ObjectId[] = []

  /** @internal use {@link connect} */
  constructor(
    private readonly socket: ControlSocket,
    readonly address: string,
    readonly jobId: JobId,
    readonly namespace: string,
    peers?: PeerMesh,
  ) {
    if (peers) {
      this.peers = peers
      peers.source = async (id) => this.objects.read(id as ObjectId)?.data
    }
    this.state = new StateApi((query) => this.request({ type: 'state', reqId: 0, query }))
    socket.onMessage = (m) => this.onMessage(m)
    socket.onClose = (reason) => this.onClosed(reason)
  }

  /**
   * Makes a function runnable as tasks, or a class instantiable as actors. The function is shipped as source and
   * compiled in a Web Worker: it must be self-contained (take what it needs through arguments or `import()`).
   * @example
   * const work = mesh.remote(async function work(x: number) { return x * 2 })
   * const Counter = mesh.remote(class Counter { n = 0; inc() { return ++this.n } })
   */
  remote<C extends AnyClass>(cls: C): ActorClass<C>
  remote<F extends Fn>(fn: F): RemoteFunction<F>
  remote(fnOrClass: unknown): unknown {
    if (typeof fnOrClass !== 'function')
      throw new ValidationError(`remote() takes a function or a class; got ${fnOrClass === null ? 'null' : typeof fnOrClass}`)
    if (isClass(fnOrClass)) return new ActorClass(this, fnOrClass as AnyClass)
    const src = Function.prototype.toString.call(fnOrClass)
    if (src.includes('[native code]'))
      throw new ValidationError(`remote() needs a function written in JavaScript; ${fnOrClass.name || 'this one'} is built in`)
    return new RemoteFunction(this, fnOrClass as Fn)
  }

  /**
   * Waits for one ref's value, or for many (values in order). Rejects with the task's error (`TaskError`…),
   * or `GetTimeoutError` once `timeout` ms pass.
   * @example
   * const [a, b] = await mesh.get([r1, r2], { timeout: 5000 })
   */
  get<T>(ref: ObjectRef<T>, opts?: { timeout?: number | null }): Promise<T>
  get<T extends readonly ObjectRef[]>(
    refs: T,
    opts?: { timeout?: number | null },
  ): Promise<{ [K in keyof T]: T[K] extends ObjectRef<infer V> ? V : never }>
  get<T>(refs: ObjectRef<T>[], opts?: { timeout?: number | null }): Promise<T[]>
  async get(refs: ObjectRef | readonly ObjectRef[], opts?: { timeout?: number | null }): Promise<unknown> {
    const { timeout } = parseOptions(GetOptionsSchema, opts, 'get')
    const single = !Array.isArray(refs)
    const list = this.checkRefs(single ? [refs as ObjectRef] : (refs as ObjectRef[]), 'get')
    const deadline = timeout != null ? performance.now() + timeout : undefined
    const pending = list.filter((r) => !this.objects.isReady(r.id))
    if (pending.length) {
      const ready = await this.waitFor(pending, pending.length, timeout ?? undefined)
      if (ready < pending.length) throw new GetTimeoutError(timeout ?? 0, pending.length - ready)
    }
    await this.fetchLarge(list, deadline, timeout ?? 0)
    const values = list.map((r) => this.valueOf(r.id))
    return single ? values[0] : values
  }

  /** Brings the bytes of ready large objects here (relayed by the coordinator from a node that holds them). */
  /** Pulls a large object from a node over WebRTC when this driver can; else asks the coordinator to relay it. */
  private async pull(id: ObjectId): Promise<void> {
    for (const from of this.peers ? this.objects.locationsOf(id) : []) {
      try {
        const bytes = await (this.peers as PeerMesh).fetch(from, id)
        this.transferStats.peerBytes += bytes.byteLength
        this.objects.setData(id, bytes)
        return
      } catch {
        // that holder is gone or refused: try the next one, then the relay
      }
    }
    this.objects.startFetch(id)
    this.socket.send({ type: 'fetch-objects', objectIds: [id] })
  }

  private async fetchLarge(refs: readonly ObjectRef[], deadline: number | undefined, timeout: number): Promise<void> {
    const start = refs.filter((r) => this.objects.needsFetch(r.id)).map((r) => r.id)
    for (const id of start) {
      this.objects.startFetch(id)
      void this.pull(id)
    }
    const missing = refs.filter((r) => !this.objects.read(r.id))
    if (!missing.length) return
    const hooks = this.blockingHooks
    hooks?.enter()
    try {
      await this.bytesOf(missing, deadline, timeout)
    } finally {
      hooks?.leave()
    }
  }

  private bytesOf(missing: readonly ObjectRef[], deadline: number | undefined, timeout: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let left = missing.length
      const timer =
        deadline !== undefined
          ? setTimeout(() => reject(new GetTimeoutError(timeout, left)), Math.max(0, deadline - performance.now()))
          : undefined
      for (const r of missing) {
        this.objects.onReady(
          r.id,
          () => {
            if (--left === 0) {
              if (timer) clearTimeout(timer)
              resolve()
            }
          },
          true,
        )
      }
    })
  }

  /**
   * Waits until `numReturns` refs are ready (default 1) or `timeout` ms pass; never throws for task errors.
   * @example
   * const { ready, notReady } = await mesh.wait(refs, { numReturns: 2, timeout: 1000 })
   */
  async wait<T extends ObjectRef>(
    refs: T[],
    opts?: { numReturns?: number; timeout?: number | null; fetchLocal?: boolean },
  ): Promise<{ ready: T[]; notReady: T[] }> {
    const o = parseOptions(WaitOptionsSchema, opts, 'wait')
    const list = this.checkRefs(refs, 'wait')
    const n = o.numReturns ?? 1
    if (n > list.length) throw new ValidationError(`wait: numReturns (${n}) is more than the ${list.length} refs given`)
    if (new Set(list.map((r) => r.id)).size !== list.length) throw new ValidationError('wait: the refs must be distinct')
    const already = list.filter((r) => this.objects.isReady(r.id)).length
    if (already < n)
      await this.waitFor(
        list.filter((r) => !this.objects.isReady(r.id)),
        n - already,
        o.timeout ?? undefined,
      )
    const ready: T[] = []
    const notReady: T[] = []
    for (const r of list) (this.objects.isReady(r.id) && ready.length < n ? ready : notReady).push(r)
    return { ready, notReady }
  }

  /**
   * Yields `[ref, value]` pairs in the order the objects become ready. A failed task throws when its turn comes.
   * @example
   * for await (const [ref, value] of mesh.asCompleted(refs)) console.log(String(ref), value)
   */
  async *asCompleted<T>(refs: ObjectRef<T>[], opts?: { timeout?: number | null }): AsyncGenerator<[ObjectRef<T>, T]> {
    const { timeout } = parseOptions(GetOptionsSchema, opts, 'asCompleted')
    let left = this.checkRefs(refs, 'asCompleted')
    const deadline = timeout != null ? Date.now() + timeout : undefined
    while (left.length) {
      const { ready, notReady } = await this.wait(left, {
        numReturns: 1,
        timeout: deadline ? Math.max(0, deadline - Date.now()) : null,
      })
      if (!ready.length) throw new GetTimeoutError(timeout ?? 0, left.length)
      // Everything already ready is yielded in one pass, in the order it was given.
      const done = [...ready, ...notReady.filter((r) => this.objects.isReady(r.id))]
      left = notReady.filter((r) => !this.objects.isReady(r.id))
      await this.fetchLarge(done, deadline, timeout ?? 0)
      for (const r of done) yield [r, this.valueOf(r.id) as T]
    }
  }

  /**
   * Stores a value once and returns its ref; pass the ref to many tasks instead of the value (the seed's model).
   * @example
   * const modelRef = await mesh.put(weights)
   */
  async put<T>(value: T): Promise<ObjectRef<T>> {
    if (value instanceof ObjectRef) throw new ValidationError('put: the value is already an ObjectRef; pass it directly')
    this.assertOpen()
    const nested: ObjectId[] = []
    const data = encodeValue(value, 'the value given to put', nested)
    if (data.byteLength > INLINE_OBJECT_MAX_BYTES) {
      const { ref, done } = this.putLarge<T>(data, nested, true)
      await done
      return ref
    }
    const id = newPutObjectId(this.jobId)
    const ref = this.makeRef<T>(id)
    await this.request({ type: 'put', reqId: 0, objectId: id, data, ...(nested.length && { nestedRefs: nested }) })
    this.objects.expect(id)
    this.objects.resolve(id, { data })
    return ref
  }

  /**
   * Uploads a large encoded value in chunks; the coordinator places it in a node's plasma store. The chunks are
   * queued at once (in order before any task that uses the ref), so this is usable synchronously from `.remote()`.
   */
  private putLarge<T>(data: Uint8Array, nested: ObjectId[], confirm: boolean): { ref: ObjectRef<T>; done: Promise<unknown> } {
    const id = newPutObjectId(this.jobId)
    const ref = this.makeRef<T>(id)
    this.objects.expect(id)
    this.objects.resolve(id, { data }) // our own copy: a local get needs no fetch
    this.flushSubmits()
    if (this.peers) {
      // A browser driver keeps the object and serves it to the nodes that need it over WebRTC.
      const done = this.request({
        type: 'put-remote',
        reqId: 0,
        objectId: id,
        size: data.byteLength,
        peerId: this.peers.peerId,
        ...(nested.length && { nestedRefs: nested }),
      })
      if (!confirm) done.catch((e: Error) => console.error(`[shoal] put of ${id} failed: ${e.message}`))
      return { ref, done }
    }
    this.transferStats.relayBytes += data.byteLength
    const total = data.byteLength
    let done: Promise<unknown> = Promise.resolve()
    for (let offset = 0; offset < total; offset += OBJECT_CHUNK_BYTES) {
      const last = offset + OBJECT_CHUNK_BYTES >= total
      const msg = {
        type: 'object-chunk' as const,
        objectId: id,
        offset,
        total,
        data: data.subarray(offset, Math.min(total, offset + OBJECT_CHUNK_BYTES)),
        ...(offset === 0 && nested.length && { nestedRefs: nested }),
      }
      if (last && confirm) done = this.request({ ...msg, reqId: 0 })
      else this.socket.send(msg)
    }
    return { ref, done }
  }

  /** Large by-value arguments are put once per identical value: passing one buffer to many tasks stores it once. */
  private autoPut = (value: unknown, data: Uint8Array, nested: ObjectId[]): ObjectRef => {
    const key = typeof value === 'object' && value !== null ? value : undefined
    const cached = key && this.autoPuts.get(key)
    if (cached) return cached
    const { ref } = this.putLarge(data, nested, false)
    if (key) this.autoPuts.set(key, ref)
    return ref
  }

  /** Cancels the task that makes `ref`: a queued task never runs; a running one has its worker stopped. */
  async cancel(ref: ObjectRef, opts?: { force?: boolean; recursive?: boolean }): Promise<void> {
    const o = parseOptions(CancelOptionsSchema, opts, 'cancel')
    this.checkRefs([ref], 'cancel')
    await this.request({ type: 'cancel', reqId: 0, objectId: ref.id, force: o.force ?? false })
  }

  /** A handle to the named actor, from any connection. Rejects with ValidationError if there is none. */
  async getActor<T = object>(name: string, opts?: { namespace?: string }): Promise<ActorHandle<T>> {
    if (typeof name !== 'string' || !name) throw new ValidationError('getActor: name must be a non-empty string')
    const namespace = opts?.namespace ?? this.namespace
    const w = (await this.request({ type: 'get-actor', reqId: 0, name, namespace })) as {
      actorId: ActorId
      className: string
      methods: string[]
    }
    return new ActorHandleBase(w.actorId, w.className, w.methods, this) as ActorHandle<T>
  }

  /** Kills an actor at once: its pending and future calls reject with ActorDiedError. */
  async kill(handle: ActorHandleBase, opts?: { noRestart?: boolean }): Promise<void> {
    if (!(handle instanceof ActorHandleBase)) throw new ValidationError('kill: expected an actor handle')
    await this.request({ type: 'kill-actor', reqId: 0, actorId: handle.actorId, noRestart: opts?.noRestart ?? true })
  }

  /** Ends the job: its pending tasks are cancelled and its non-detached actors killed. */
  async close(): Promise<void> {
    if (this.closedReason) return
    this.flushSubmits()
    this.flushReleases()
    this.closedReason = 'closed by the driver'
    this.peers?.stop()
    this.socket.close()
    this.objects.failAll(new ConnectionError('the connection was closed').toWire())
  }

  // ---- TaskSubmitter / ActorSubmitter ----

  /** @internal */
  submitTask(
    fn: { source: string; name: string; kind: 'function' },
    args: unknown[],
    s: Parameters<TaskSubmitter['submitTask']>[2],
  ): ObjectRef[] {
    this.assertOpen()
    const functionId = this.registerFunction(fn.source, fn.name, 'function')
    const taskId = newTaskId(this.jobId)
    const nested: ObjectId[] = []
    const spec: TaskSpec = {
      taskId,
      type: 'NORMAL_TASK',
      functionId,
      name: s.name,
      funcName: fn.name,
      args: encodeArgs(args, fn.name, nested, this.autoPut),
      numReturns: s.numReturns,
      resources: s.resources,
      maxRetries: s.maxRetries,
      retryExceptions: s.retryExceptions,
      strategy: s.strategy,
      ...(nested.length && { nestedRefs: nested }),
    }
    return this.enqueue(spec)
  }

  /** @internal */
  createActor(cls: { source: string; name: string }, args: unknown[], s: Parameters<ActorSubmitter['createActor']>[2]) {
    this.assertOpen()
    const functionId = this.registerFunction(cls.source, cls.name, 'class')
    const actorId = newActorId(this.jobId)
    const nested: ObjectId[] = []
    const [ready] = this.enqueue({
      taskId: newTaskId(this.jobId),
      type: 'ACTOR_CREATION_TASK',
      functionId,
      name: `${cls.name}.__init__`,
      funcName: `${cls.name}.__init__`,
      args: encodeArgs(args, `${cls.name} constructor`, nested, this.autoPut),
      numReturns: 1,
      resources: s.resources,
      maxRetries: 0,
      retryExceptions: false,
      strategy: s.strategy,
      actorId,
      actor: s.actor,
      ...(nested.length && { nestedRefs: nested }),
    })
    return { actorId, ready: ready as ObjectRef<null> }
  }

  /** @internal */
  submitActorTask(actorId: ActorId, className: string, method: string, args: unknown[], numReturns: number): ObjectRef[] {
    this.assertOpen()
    const nested: ObjectId[] = []
    return this.enqueue({
      taskId: newTaskId(this.jobId),
      type: 'ACTOR_TASK',
      functionId: '',
      name: `${className}.${method}`,
      funcName: `${className}.${method}`,
      args: encodeArgs(args, `${className}.${method}`, nested, this.autoPut),
      numReturns,
      resources: {},
      maxRetries: 0,
      retryExceptions: false,
      strategy: 'DEFAULT',
      actorId,
      method,
      ...(nested.length && { nestedRefs: nested }),
    })
  }

  // ---- internals ----

  private enqueue(spec: TaskSpec): ObjectRef[] {
    const refs: ObjectRef[] = []
    for (let i = 1; i <= spec.numReturns; i++) {
      const id = objectIdOf(spec.taskId as never, i)
      this.objects.expect(id)
      refs.push(this.makeRef(id))
    }
    this.pendingSubmits.push(spec)
    if (this.pendingSubmits.length >= SUBMIT_BATCH) this.flushSubmits()
    else if (!this.submitScheduled) {
      this.submitScheduled = true
      queueMicrotask(() => this.flushSubmits())
    }
    return refs
  }

  private flushSubmits(): void {
    this.submitScheduled = false
    if (!this.pendingSubmits.length || this.closedReason) return
    const tasks = this.pendingSubmits
    this.pendingSubmits = []
    this.socket.send({ type: 'submit', tasks })
  }

  private registerFunction(source: string, name: string, kind: 'function' | 'class'): FunctionId {
    const functionId = functionIdOf(source)
    if (!this.registered.has(functionId)) {
      this.registered.add(functionId)
      this.flushSubmits() // tasks queued before this registration must not wait behind it, nor overtake it
      this.socket.send({ type: 'register-functions', functions: [{ functionId, name, kind, source }] })
    }
    return functionId
  }

  private makeRef<T>(id: ObjectId): ObjectRef<T> {
    const ref = new ObjectRef<T>(id)
    this.refCounts.set(id, (this.refCounts.get(id) ?? 0) + 1)
    this.finalizer.register(ref, id)
    return ref
  }

  /** A ref found inside a value: counted like our own, and announced as borrowed if we do not own it. */
  private borrowRef<T>(id: ObjectId): ObjectRef<T> {
    if (!this.refCounts.has(id) && !this.closedReason) {
      this.borrowed.add(id)
      this.borrows.push(id)
      if (this.borrows.length === 1) queueMicrotask(() => this.flushBorrows())
    }
    return this.makeRef<T>(id)
  }

  private flushBorrows(): void {
    if (!this.borrows.length || this.closedReason) return
    const objectIds = this.borrows
    this.borrows = []
    this.socket.send({ type: 'borrow', objectIds })
  }

  private dropRef(id: ObjectId): void {
    const n = (this.refCounts.get(id) ?? 1) - 1
    if (n > 0) {
      this.refCounts.set(id, n)
      return
    }
    this.refCounts.delete(id)
    this.objects.delete(id)
    if (this.borrowed.delete(id)) {
      if (!this.closedReason) this.socket.send({ type: 'unborrow', objectIds: [id] })
      return
    }
    this.releases.push(id)
    if (this.releases.length === 1) setTimeout(() => this.flushReleases(), 100)
  }

  private flushReleases(): void {
    if (!this.releases.length || this.closedReason) return
    const objectIds = this.releases
    this.releases = []
    this.socket.send({ type: 'release', objectIds })
  }

  private checkRefs<T extends ObjectRef>(refs: readonly T[], where: string): T[] {
    if (!Array.isArray(refs)) throw new ValidationError(`${where}: expected an ObjectRef or an array of ObjectRefs`)
    const subscribe: ObjectId[] = []
    for (const r of refs) {
      if (!(r instanceof ObjectRef)) throw new ValidationError(`${where}: expected ObjectRefs; got ${r === null ? 'null' : typeof r}`)
      if (this.objects.ensure(r.id)) subscribe.push(r.id)
    }
    if (subscribe.length) {
      this.assertOpen()
      this.socket.send({ type: 'subscribe', objectIds: subscribe })
    }
    return refs as T[]
  }

  /** Resolves with how many of `refs` became ready: `need` of them, or fewer once `timeoutMs` passes. */
  private waitFor(refs: readonly ObjectRef[], need: number, timeoutMs: number | undefined): Promise<number> {
    this.flushSubmits()
    return this.blocking(this.waitForReady(refs, need, timeoutMs))
  }

  /** Marks a wait as blocking the calling task (if this connection belongs to a task) while `p` runs. */
  private blocking<T>(p: Promise<T>): Promise<T> {
    const hooks = this.blockingHooks
    if (!hooks) return p
    hooks.enter()
    return p.finally(() => hooks.leave())
  }

  private waitForReady(refs: readonly ObjectRef[], need: number, timeoutMs: number | undefined): Promise<number> {
    return new Promise((resolve) => {
      let ready = 0
      const cancels: (() => void)[] = []
      let timer: ReturnType<typeof setTimeout> | undefined
      const finish = () => {
        if (timer) clearTimeout(timer)
        for (const c of cancels) c()
        resolve(ready)
      }
      for (const r of refs) {
        let done = false
        cancels.push(
          this.objects.onReady(r.id, () => {
            if (done) return
            done = true
            if (++ready === need) queueMicrotask(finish)
          }),
        )
      }
      if (ready >= need) return
      if (timeoutMs !== undefined) timer = setTimeout(finish, timeoutMs)
    })
  }

  private valueOf(id: ObjectId): unknown {
    const e = this.objects.read(id)
    if (!e) throw new ConnectionError(`object ${id} is not available on this connection`)
    if (e.error) throw fromWireError(e.error)
    return decodeValue(e.data as Uint8Array, this.decodeCtx)
  }

  private request(msg: Extract<ClientMessage, { reqId?: number }>): Promise<unknown> {
    this.assertOpen()
    this.flushSubmits()
    const reqId = this.nextReqId++
    return new Promise((resolve, reject) => {
      this.requests.set(reqId, { resolve, reject })
      this.socket.send({ ...msg, reqId } as ClientMessage)
    })
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'objects':
        for (const o of msg.objects) this.objects.resolve(o.objectId as ObjectId, o)
        return
      case 'object-chunk':
        this.transferStats.relayBytes += msg.data.byteLength
        this.objects.chunk(msg.objectId as ObjectId, msg.offset, msg.total, msg.data)
        return
      case 'reply': {
        const r = this.requests.get(msg.reqId)
        if (!r) return
        this.requests.delete(msg.reqId)
        if (msg.ok) r.resolve(msg.value)
        else r.reject(fromWireError(msg.error))
        return
      }
      case 'error':
        console.error(`[shoal] the coordinator reported: ${msg.error.message}`)
        return
      case 'welcome':
      case 'assign':
      case 'cancel-task':
      case 'kill-actor':
      case 'upload-object':
      case 'delete-objects':
        return // node-only messages; a driver ignores them
      default:
        msg satisfies never
    }
  }

  private onClosed(reason: string): void {
    if (this.closedReason) return
    this.closedReason = `the connection to the coordinator was lost: ${reason}`
    const err: WireError = new ConnectionError(this.closedReason).toWire()
    this.objects.failAll(err)
    for (const r of this.requests.values()) r.reject(fromWireError(err))
    this.requests.clear()
  }

  private assertOpen(): void {
    if (this.closedReason) throw new ConnectionError(`this connection is closed (${this.closedReason})`)
  }
}

/**
 * Connects to a coordinator and starts a job.
 * @example
 * const mesh = await connect({ address: 'http://127.0.0.1:8265' })
 */
export async function connect(options: ConnectOptions = {}): Promise<Mesh> {
  const o = parseOptions(ConnectOptionsSchema, options, 'connect')
  const address = (o.address ?? defaultAddress()).replace(/\/+$/, '')
  const url = `${address.replace(/^http/, 'ws')}/ws`
  const socket = await ControlSocket.open(url, o.timeout ?? 10_000)
  const welcome = await new Promise<Extract<ServerMessage, { type: 'welcome' }>>((resolve, reject) => {
    socket.onMessage = (m) => {
      if (m.type === 'welcome') resolve(m)
      else if (m.type === 'reply' && !m.ok) reject(fromWireError(m.error))
      else if (m.type === 'error') reject(fromWireError(m.error))
    }
    socket.onClose = (reason) => reject(new ConnectionError(`the coordinator at ${address} closed the connection: ${reason}`))
    socket.send({
      type: 'hello',
      reqId: 0,
      protocol: PROTOCOL_VERSION,
      role: 'driver',
      ...(o.token !== undefined && { token: o.token }),
      ...(o.namespace !== undefined && { namespace: o.namespace }),
      ...(o.attachJob !== undefined && { attachJob: o.attachJob }),
    })
  }).catch((e) => {
    socket.close()
    throw e
  })
  const peers = await joinPeerMesh(address, welcome)
  return new Mesh(socket, address, welcome.jobId as JobId, welcome.namespace, peers)
}

/**
 * A driver in a browser page joins the peer mesh so its large objects move to and from nodes over WebRTC. Best
 * effort: in Node, in a worker (no RTCPeerConnection) or if the mesh cannot be joined quickly, the coordinator
 * relays large objects instead.
 */
async function joinPeerMesh(address: string, welcome: Extract<ServerMessage, { type: 'welcome' }>): Promise<PeerMesh | undefined> {
  const g = globalThis as { window?: unknown; RTCPeerConnection?: unknown }
  if (!g.window || typeof g.RTCPeerConnection !== 'function') return undefined
  try {
    const { PeerMesh } = await import('./transport/peer-mesh.ts')
    const mesh = new PeerMesh(`d${randomHex(28).slice(1)}`, address, welcome.peerjsPath, welcome.iceServers as RTCIceServer[])
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([mesh.start(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), 5000)))])
    clearTimeout(timer)
    return mesh
  } catch {
    return undefined
  }
}
