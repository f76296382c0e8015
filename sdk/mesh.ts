import { ActorCallSubmitter } from './actor-call-submitter.ts'
import { ActorClass, type ActorHandle, ActorHandleBase, type ActorSubmitter } from './actor-handle.ts'
import { type DecodeContext, decodeValue } from './codec.ts'
import { DirectSubmitter } from './direct-submitter.ts'
import { ConnectionError, fromWireError, GetTimeoutError, ObjectFreedError, ValidationError, type WireError } from './errors.ts'
import { type ActorId, isPutObjectId, type JobId, type ObjectId, taskIdOfObject } from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import { ObjectTable } from './object-table.ts'
import { ObjectTransfer } from './object-transfer.ts'
import { CancelOptionsSchema, GetOptionsSchema, parseOptions, WaitOptionsSchema } from './options.ts'
import { OwnedTasks, type OwnedValue } from './owned-tasks.ts'
import { type ClientMessage, INLINE_OBJECT_MAX_BYTES, parsePeerMessage, type ServerMessage } from './protocol/index.ts'
import { ReferenceCounter } from './reference-counter.ts'
import { RemoteFunction } from './remote-function.ts'
import { StateApi } from './state-api.ts'
import { TaskEventReporter } from './task-event-reporter.ts'
import { encodePut, FUNCTION_MARK, isTaskMark, TaskSubmitter } from './task-submitter.ts'
import type { FramedTransport } from './transport/framed.ts'
import { PeerLinks, type Route } from './transport/peer-links.ts'
import type { PeerMesh } from './transport/peer-mesh.ts'
import { batchBytesFor } from './turn-batch.ts'

type Fn = (...args: never[]) => unknown
type AnyClass = abstract new (...args: never[]) => object
const isClass = (f: unknown) => typeof f === 'function' && /^class[\s{]/.test(Function.prototype.toString.call(f))

/**
 * A connection to a Shoal coordinator: one job. Everything a driver does goes through it. Made by `connect` (connect.ts).
 * It is a façade over the parts of Ray's core worker: the task submitter, the reference counter, the object table
 * and the object transfer.
 */
export class Mesh implements ActorSubmitter {
  /** The state API (Ray's `ray.util.state`). */
  readonly state: StateApi
  private readonly objects = new ObjectTable()
  /** @internal This connection's reference counts (a task's worker opens and closes its scopes). */
  readonly refs: ReferenceCounter
  private readonly submitter: TaskSubmitter
  /** The normal tasks this connection owns, and how they reach leased nodes. */
  private readonly tasks: OwnedTasks
  private readonly direct: DirectSubmitter
  /** How actor calls reach their actor's node. */
  private readonly actorCalls: ActorCallSubmitter
  /** @internal Task events on their way to the coordinator (the state API). */
  readonly events: TaskEventReporter
  /** The peer wire: to nodes directly, or through the coordinator. */
  private readonly links: PeerLinks
  private readonly transfer: ObjectTransfer
  /** Whether this connection keeps its large puts and serves them to nodes itself (a page does). */
  private readonly servesPuts: boolean
  /**
   * Objects this connection owns that the coordinator knows of (their refs left this connection, or it registered
   * them): only their releases are sent. The rest live and die here.
   */
  private published = new Set<ObjectId>()
  /** Published while their task was pending: their value is published when it comes, whatever became of our refs. */
  private publishedPending = new Set<ObjectId>()
  /** In a browser page: this driver's place in the peer mesh (WebRTC to and from nodes). Absent in Node. */
  private readonly peers: PeerMesh | undefined
  private nextReqId = 1
  private requests = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  private closedReason: string | undefined
  /** Tasks the coordinator reported as infeasible (no node can ever fit them), for timeouts that explain themselves. */
  private infeasible = new Map<string, string>()
  /**
   * @internal Set by a task's worker: told when a call here starts and stops waiting, so the task's CPU can be lent
   * back to its node meanwhile (as Ray does for a worker blocked in ray.get).
   */
  blockingHooks: { enter(): void; leave(): void } | undefined
  /** @internal Set by a task's worker: the task running now, recorded as the parent of the tasks it submits. */
  parentTaskId: string | undefined
  /** @internal How values decoded on this connection rebuild handles and refs (used by task workers too). */
  readonly decodeCtx: DecodeContext = {
    bindActorHandle: (w) => {
      const handle = w.handleId ? this.refs.found<null>(w.handleId as ObjectId) : undefined
      return new ActorHandleBase(w.actorId as ActorId, w.className, w.methods, this, handle)
    },
    makeRef: (id) => this.refs.found(id),
  }

  /** @internal use {@link connect} */
  constructor(
    private readonly transport: FramedTransport,
    readonly address: string,
    readonly jobId: JobId,
    readonly namespace: string,
    opts: {
      /** This connection's address among peers (a driver's `d-…` id; a task's `<node>/<worker>/<job>`). */
      peerAddress: string
      /** Its place in the peer mesh, where it could join (pages, Node drivers). */
      peers?: PeerMesh
      /** Send every peer message through the coordinator. */
      relayOnly?: boolean
    },
  ) {
    const peers = opts.peers
    this.refs = new ReferenceCounter(
      {
        release: (ids) => {
          const objectIds = ids.filter((id) => this.published.delete(id))
          if (objectIds.length) this.transport.send({ type: 'release', objectIds })
        },
        borrow: (objectIds) => this.transport.send({ type: 'borrow', objectIds }),
        unborrow: (objectIds) => this.transport.send({ type: 'unborrow', objectIds }),
      },
      (id) => this.objects.delete(id),
    )
    this.events = new TaskEventReporter((m) => this.transport.isOpen && this.transport.send(m))
    this.links = new PeerLinks(
      opts.peerAddress,
      peers,
      (to, msgs) => this.transport.send({ type: 'peer-send', to, msgs }),
      opts.relayOnly,
      () => batchBytesFor(this.transport.maxFrameBytes),
    )
    this.links.onMessage = (from, raw, route) => this.onPeerMessage(from, raw, route)
    this.tasks = new OwnedTasks({
      objects: this.objects,
      refs: this.refs,
      events: this.events,
      subscribe: (objectIds) => this.transport.send({ type: 'subscribe', objectIds }),
      resolvedOwned: (values) => this.resolvedOwned(values),
      registered: (ids) => this.registered(ids),
    })
    this.submitter = new TaskSubmitter({
      jobId,
      namespace,
      send: (m) => this.transport.send(m),
      assertOpen: () => this.assertOpen(),
      own: (id) => this.refs.own(id),
      expect: (id) => this.objects.expect(id),
      submitOwned: (spec, rejected, keepAlive) => this.tasks.submit(spec, rejected, keepAlive),
      escape: (ids) => this.escape(ids),
      inDirectory: (ids) => {
        for (const id of ids) this.published.add(id)
      },
      putArgument: (data, nested) => this.putEncoded(data, nested, false).ref,
      parentTaskId: () => this.parentTaskId,
      maxFrameBytes: () => this.transport.maxFrameBytes,
    })
    this.direct = new DirectSubmitter(
      {
        namespace,
        objects: this.objects,
        links: this.links,
        send: (m) => this.transport.send(m),
        functionDef: (id) => this.submitter.functionDef(id),
        pushBudget: () => batchBytesFor(this.transport.maxFrameBytes),
        markInfeasible: (taskIds, message) => {
          for (const t of taskIds) {
            this.infeasible.set(t, message)
            this.events.state(t, this.tasks.get(t)?.attempt ?? 0, 'PENDING_NODE_ASSIGNMENT', { infeasible: true })
          }
        },
      },
      this.tasks,
    )
    this.tasks.scheduling = this.direct
    this.actorCalls = new ActorCallSubmitter(
      {
        namespace,
        objects: this.objects,
        links: this.links,
        requestLease: (actorId) => {
          this.submitter.flush()
          this.transport.send({ type: 'actor-lease-request', actorId })
        },
        pushBudget: () => batchBytesFor(this.transport.maxFrameBytes),
      },
      this.tasks,
    )
    this.tasks.actorCalls = this.actorCalls
    // A page keeps its large puts and serves them itself; a Node driver hands them to the coordinator (it may exit).
    this.servesPuts = !!peers && typeof (globalThis as { window?: unknown }).window !== 'undefined'
    this.transfer = new ObjectTransfer(
      this.objects,
      { send: (m) => this.transport.send(m), request: (m) => this.request(m) },
      peers,
      this.servesPuts,
    )
    this.state = new StateApi((query) => this.request({ type: 'state', reqId: 0, query }))
    this.peers = peers
    transport.manifest = (m) => TaskSubmitter.manifestOf(m) ?? (m.type === 'object-chunk' || m.type === 'put' ? [m.objectId] : undefined)
    transport.onTooLarge = (m, bytes) =>
      this.failCarried(
        transport.manifest(m) ?? [],
        `it is ${bytes} bytes in one message, over the coordinator's ${transport.maxFrameBytes}-byte limit: pass large values with put()`,
      )
    transport.onMessage = (m) => this.onMessage(m)
    transport.onClose = (reason) => this.onClosed(reason)
  }

  /** Bytes of large objects moved peer to peer and through the coordinator's relay (diagnostics). */
  get transferStats(): { peerBytes: number; relayBytes: number } {
    return this.transfer.stats
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
    return new RemoteFunction(this.submitter, fnOrClass as Fn)
  }

  /**
   * Waits for one ref's value, or for many (values in order). Rejects with the task's error (`TaskError`…) as soon as
   * any of them has failed, as Ray does, or with `GetTimeoutError` once `timeout` ms pass.
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
    const ids = list.map((r) => r.id)
    // Ready, or failed: a failure anywhere ends the wait (Ray raises the first error without waiting for the rest).
    const done = await this.waitUntil(ids, ids.length, deadline, true, 'ready')
    const failed = ids.find((id) => this.objects.read(id)?.error)
    if (failed) throw fromWireError(this.objects.read(failed)?.error as WireError)
    if (done < ids.length) throw this.timeoutError(timeout ?? 0, ids)
    // Large objects' bytes come here now (from a node over WebRTC, or relayed by the coordinator).
    this.transfer.fetch(ids)
    const fetched = await this.waitUntil(ids, ids.length, deadline, true, 'bytes')
    const lost = ids.find((id) => this.objects.read(id)?.error)
    if (lost) throw fromWireError(this.objects.read(lost)?.error as WireError)
    if (fetched < ids.length) throw this.timeoutError(timeout ?? 0, ids)
    const values = ids.map((id) => this.valueOf(id))
    return single ? values[0] : values
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
    if (!list.length) return { ready: [], notReady: [] }
    const n = o.numReturns ?? 1
    if (n > list.length) throw new ValidationError(`wait: numReturns (${n}) is more than the ${list.length} refs given`)
    if (new Set(list.map((r) => r.id)).size !== list.length) throw new ValidationError('wait: the refs must be distinct')
    const deadline = o.timeout != null ? performance.now() + o.timeout : undefined
    await this.waitUntil(
      list.map((r) => r.id),
      n,
      deadline,
      false,
      'ready',
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
    const deadline = timeout != null ? performance.now() + timeout : undefined
    while (left.length) {
      const { ready } = await this.wait(left, {
        numReturns: 1,
        timeout: deadline !== undefined ? Math.max(0, deadline - performance.now()) : null,
      })
      if (!ready.length)
        throw this.timeoutError(
          timeout ?? 0,
          left.map((r) => r.id),
        )
      // Everything already ready is yielded in one pass, in the order it was given.
      const done = left.filter((r) => this.objects.isReady(r.id))
      left = left.filter((r) => !this.objects.isReady(r.id))
      for (const r of done) {
        const remaining = deadline !== undefined ? Math.max(0, deadline - performance.now()) : null
        yield [r, (await this.get(r, { timeout: remaining })) as T]
      }
    }
  }

  /**
   * Stores a value once and returns its ref; pass the ref to many tasks instead of the value (the seed's model).
   * @example
   * const modelRef = await mesh.put(weights)
   */
  async put<T>(value: T): Promise<ObjectRef<T>> {
    this.assertOpen()
    const nested: ObjectId[] = []
    const data = encodePut(value, nested)
    if (data.byteLength > INLINE_OBJECT_MAX_BYTES) {
      const { ref, done } = this.putEncoded(data, nested, true)
      await done
      return ref as ObjectRef<T>
    }
    const id = this.submitter.newPutId()
    const ref = this.refs.own<T>(id)
    this.escape(nested)
    this.published.add(id)
    await this.request({ type: 'put', reqId: 0, objectId: id, data, ...(nested.length && { nestedRefs: nested }) })
    this.objects.expect(id)
    this.objects.resolve(id, { data })
    return ref
  }

  /** Stores an encoded large value (a put, or a large by-value argument). Usable synchronously from `.remote()`. */
  private putEncoded(data: Uint8Array, nested: ObjectId[], confirm: boolean): { ref: ObjectRef; done: Promise<unknown> } {
    const id = this.submitter.newPutId()
    const ref = this.refs.own(id)
    this.escape(nested)
    this.published.add(id)
    this.objects.expect(id)
    this.objects.resolve(id, { data }) // our own copy: a local get needs no fetch
    // Nodes pull it from this page, or (Node) from wherever the coordinator places it.
    this.objects.locate(id, data.byteLength, this.servesPuts && this.peers ? [this.peers.peerId] : [])
    this.submitter.flush()
    return { ref, done: this.transfer.putLarge(id, data, nested, confirm) }
  }

  /**
   * Deletes objects everywhere now, even while refs to them exist (Ray's `internal_api.free`): a later `get` of them
   * rejects with ObjectFreedError. For memory a program knows it no longer needs.
   * @example
   * await mesh.free([bigRef])
   */
  async free(refs: ObjectRef | readonly ObjectRef[]): Promise<void> {
    const list = Array.isArray(refs) ? (refs as ObjectRef[]) : [refs as ObjectRef]
    for (const r of list) if (!(r instanceof ObjectRef)) throw new ValidationError('free: expected ObjectRefs')
    if (!list.length) return
    await this.request({ type: 'free', reqId: 0, objectIds: list.map((r) => r.id) })
    for (const r of list) this.objects.fail(r.id, new ObjectFreedError(r.id).toWire())
  }

  /**
   * Cancels the task that makes `ref`: a queued task never runs; a running one has its worker stopped; its `get`
   * rejects with TaskCancelledError. With `recursive` (the default, as in Ray) the tasks it submitted are cancelled
   * too. A finished task is left as it is.
   */
  async cancel(ref: ObjectRef, opts?: { force?: boolean; recursive?: boolean }): Promise<void> {
    const o = parseOptions(CancelOptionsSchema, opts, 'cancel')
    if (!(ref instanceof ObjectRef)) throw new ValidationError('cancel: expected an ObjectRef')
    // A task this connection owns is cancelled here; any other (an actor call, another owner's task) by its owner.
    if (this.tasks.cancel(taskIdOfObject(ref.id), o.force ?? false)) return
    this.checkRefs([ref], 'cancel')
    await this.request({ type: 'cancel', reqId: 0, objectId: ref.id, force: o.force ?? false, recursive: o.recursive ?? true })
  }

  /** A handle to the named actor, from any connection. Rejects with ValidationError if there is none. */
  async getActor<T = object>(name: string, opts?: { namespace?: string }): Promise<ActorHandle<T>> {
    if (typeof name !== 'string' || !name) throw new ValidationError('getActor: name must be a non-empty string')
    const namespace = opts?.namespace ?? this.namespace
    if (typeof namespace !== 'string' || !namespace) throw new ValidationError('getActor: namespace must be a non-empty string')
    const w = (await this.request({ type: 'get-actor', reqId: 0, name, namespace })) as {
      actorId: ActorId
      className: string
      methods: string[]
      handleId: string
    }
    // The handle counts like any other: a non-detached actor lives while some handle to it does.
    return this.decodeCtx.bindActorHandle?.(w) as ActorHandle<T>
  }

  /** Kills an actor at once: its pending and future calls reject with ActorDiedError. */
  async kill(handle: ActorHandleBase, opts?: { noRestart?: boolean }): Promise<void> {
    if (!(handle instanceof ActorHandleBase)) throw new ValidationError('kill: expected an actor handle')
    await this.request({ type: 'kill-actor', reqId: 0, actorId: handle.actorId, noRestart: opts?.noRestart ?? true })
  }

  /** Ends the job: its pending tasks are cancelled and its non-detached actors killed. */
  async close(): Promise<void> {
    if (this.closedReason) return
    this.submitter.flush()
    this.refs.flush()
    this.events.flush()
    this.shutDown('closed by the driver', new ConnectionError('the connection was closed'))
    this.peers?.stop()
    this.transport.close()
  }

  /** @internal Sends everything queued now: a task's worker does this before it reports the task's result. */
  flushNow(): void {
    this.submitter.flush()
    this.direct.flush()
    this.actorCalls.flush()
    this.refs.flush()
    this.links.flush()
    this.transport.flush()
  }

  /**
   * @internal Ends a task's scope (see ReferenceCounter): the objects it made and let go that the coordinator knows
   * of, for its result to release after the coordinator has taken what the result holds.
   */
  endScope(): ObjectId[] {
    return this.refs.endScope().filter((id) => this.published.delete(id))
  }

  /** @internal How many leases this connection holds now (tests). */
  get leaseCount(): number {
    return this.direct.leaseCount
  }

  /**
   * @internal Ray's `core_worker.get_all_reference_counts()`: per object this connection refers to, its live
   * ObjectRef instances here and its pending submitted tasks that take it (Ray's tests check these counts).
   */
  referenceCounts(): Record<string, { local: number; submitted: number }> {
    return Object.fromEntries(this.refs.table())
  }

  /** @internal Messages this connection sent to peers directly and through the coordinator. */
  get peerStats(): { direct: number; relay: number; resent: number } {
    return { ...this.links.stats }
  }

  /**
   * @internal Refs to these objects leave this connection (inside a value, or with a task the coordinator runs):
   * those it owns and the coordinator does not know of yet are published, so whoever finds the refs can use them
   * (Ray's owner answers borrowers itself; here the coordinator's directory does, for the objects that escape).
   */
  escape(ids: readonly ObjectId[]): void {
    const objects: Extract<ClientMessage, { type: 'publish' }>['objects'] = []
    for (const id of ids) {
      if (!this.refs.isOwned(id) || this.published.has(id)) continue
      this.published.add(id)
      const e = this.objects.peek(id)
      if (e?.data) objects.push({ objectId: id, data: e.data })
      else if (e?.error) objects.push({ objectId: id, error: e.error })
      else {
        objects.push({ objectId: id })
        this.publishedPending.add(id)
      }
    }
    if (objects.length) this.transport.send({ type: 'publish', objects })
  }

  /** Owned objects got their value or error here: those published while pending are published again with it. */
  private resolvedOwned(values: readonly OwnedValue[]): void {
    const objects: Extract<ClientMessage, { type: 'publish' }>['objects'] = []
    for (const v of values) {
      if (!this.publishedPending.delete(v.objectId)) continue
      if (v.data) objects.push({ objectId: v.objectId, data: v.data })
      else if (v.error) objects.push({ objectId: v.objectId, error: v.error })
    }
    if (objects.length && this.transport.isOpen) this.transport.send({ type: 'publish', objects })
  }

  /** The coordinator entered these returns in its directory (owned by us): released at once if no ref is left. */
  private registered(ids: readonly ObjectId[]): void {
    const gone: ObjectId[] = []
    for (const id of ids) {
      this.publishedPending.delete(id)
      if (this.refs.holds(id)) this.published.add(id)
      else gone.push(id)
    }
    if (gone.length && this.transport.isOpen) this.transport.send({ type: 'release', objectIds: gone })
  }

  private onPeerMessage(from: string, raw: unknown, route: Route): void {
    const parsed = parsePeerMessage(raw)
    if ('problem' in parsed) return console.warn(`[shoal] a peer message from ${from} was refused: ${parsed.problem}`)
    const msg = parsed.msg
    if (msg.type !== 'results') return // push and cancel are for nodes: a driver ignores them
    if (this.actorCalls.owns(msg.leaseId)) this.actorCalls.onResults(from, msg, route)
    else this.direct.onResults(from, msg, route)
  }

  // ---- ActorSubmitter ----

  /** @internal */
  createActor(...a: Parameters<ActorSubmitter['createActor']>) {
    return this.submitter.createActor(...a)
  }

  /** @internal */
  submitActorTask(...a: Parameters<ActorSubmitter['submitActorTask']>) {
    return this.submitter.submitActorTask(...a)
  }

  // ---- internals ----

  private checkRefs<T extends ObjectRef>(refs: readonly T[], where: string): T[] {
    if (!Array.isArray(refs)) throw new ValidationError(`${where}: expected an ObjectRef or an array of ObjectRefs`)
    const subscribe: ObjectId[] = []
    for (const r of refs) {
      if (!(r instanceof ObjectRef)) throw new ValidationError(`${where}: expected ObjectRefs; got ${r === null ? 'null' : typeof r}`)
      if (this.objects.ensure(r.id)) subscribe.push(r.id)
    }
    if (subscribe.length) {
      this.assertOpen()
      this.transport.send({ type: 'subscribe', objectIds: subscribe })
    }
    return refs as T[]
  }

  /**
   * Waits on the object table (ObjectTable.waitFor) after sending what this turn submitted; while it waits, a task's
   * CPU is lent back to its node.
   */
  private waitUntil(
    ids: readonly ObjectId[],
    need: number,
    deadline: number | undefined,
    failFast: boolean,
    what: 'ready' | 'bytes',
  ): Promise<number> {
    const wait = this.objects.waitFor(ids, need, deadline, failFast, what)
    if (typeof wait === 'number') return Promise.resolve(wait)
    this.submitter.flush()
    const hooks = this.blockingHooks
    if (!hooks) return wait
    hooks.enter()
    return wait.finally(() => hooks.leave())
  }

  private timeoutError(timeout: number, ids: readonly ObjectId[]): GetTimeoutError {
    const pending = ids.filter((id) => !this.objects.read(id))
    const why = [...new Set(pending.flatMap((id) => this.infeasible.get(taskIdOfObject(id)) ?? []))]
    // Else, where the first pending task this connection owns is in its life (waiting, queued, or at which node).
    for (const id of why.length ? [] : pending) {
      const where = this.tasks.whereIs(taskIdOfObject(id))
      if (where) {
        why.push(where)
        break
      }
    }
    return new GetTimeoutError(timeout, pending.length, why.length ? why.join('; ') : undefined)
  }

  private valueOf(id: ObjectId): unknown {
    const e = this.objects.read(id)
    if (!e) throw new ConnectionError(`object ${id} is not available on this connection`)
    if (e.error) throw fromWireError(e.error)
    return decodeValue(e.data as Uint8Array, this.decodeCtx)
  }

  private request(msg: Extract<ClientMessage, { reqId?: number }>): Promise<unknown> {
    this.assertOpen()
    this.submitter.flush()
    // What this connection's tasks did so far is in the answer to a state query.
    if (msg.type === 'state') this.events.flush()
    const reqId = this.nextReqId++
    return new Promise((resolve, reject) => {
      this.requests.set(reqId, { resolve, reject })
      this.transport.send({ ...msg, reqId } as ClientMessage)
    })
  }

  /** The coordinator refused messages that would have made these objects: they fail here, with its reason. */
  private failCarried(ids: readonly string[], why: string): void {
    for (const id of ids) {
      if (id.startsWith(FUNCTION_MARK)) {
        this.submitter.forgetFunction(id.slice(FUNCTION_MARK.length))
        continue
      }
      if (isTaskMark(id)) {
        const taskId = id
        this.tasks.lost(taskId, new ValidationError(`the coordinator did not accept task ${taskId}: ${why}`).toWire())
        continue
      }
      const objectId = id as ObjectId
      const what = isPutObjectId(objectId) ? 'the put' : `task ${taskIdOfObject(objectId)}`
      const error = new ValidationError(`the coordinator did not accept ${what}: ${why}`)
      this.objects.fail(objectId, error.toWire())
    }
  }

  private onMessage(msg: ServerMessage): void {
    switch (msg.type) {
      case 'objects':
        for (const o of msg.objects) {
          this.objects.resolve(o.objectId as ObjectId, o)
          if (o.error) this.transfer.onRelayFailed(o.objectId as ObjectId, o.error.message)
        }
        return
      case 'object-chunk':
        this.transfer.onChunk(msg.objectId as ObjectId, msg.offset, msg.total, msg.data)
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
        if (msg.frame !== undefined) {
          const carried = this.transport.refusedFrame(msg.frame)
          if (carried.length) return this.failCarried(carried, msg.error.message)
        }
        console.error(`[shoal] the coordinator reported: ${msg.error.message}`)
        return
      case 'warning':
        for (const t of msg.taskIds) this.infeasible.set(t, msg.message)
        if (msg.shapeId) this.direct.onInfeasible(msg.shapeId, msg.message)
        console.warn(`[shoal] ${msg.message}`)
        return
      case 'peer-recv':
        this.links.receiveRelayed(msg.from, msg.msgs)
        return
      case 'lease-granted':
        this.direct.onGranted(msg.shapeId, msg.lease)
        return
      case 'lease-failed':
        this.direct.onFailed(msg.shapeId, msg.error.message)
        return
      case 'lease-revoked':
        this.direct.onRevoked(msg.leaseIds, msg.nodeId)
        return
      case 'lease-reclaim':
        this.direct.onReclaim(msg.leaseIds)
        return
      case 'cancel-owned':
        this.tasks.cancel(msg.taskId, msg.force)
        return
      case 'actor-state':
        this.actorCalls.onActorState(msg)
        return
      case 'delete-objects':
        this.transfer.dropServed(msg.objectIds)
        return
      case 'upload-object':
        void this.transfer.upload(msg.objectId as ObjectId, () => this.transport.bufferedAmount).catch(() => {})
        return
      case 'welcome':
      case 'assign':
      case 'kill-actor':
      case 'relay-down':
      case 'retire-workers':
      case 'lease-ended':
        return // node-only messages; a driver ignores them
      default:
        msg satisfies never
    }
  }

  private onClosed(reason: string): void {
    if (this.closedReason) return
    const why = `the connection to the coordinator was lost: ${reason}`
    this.shutDown(why, new ConnectionError(why))
  }

  /** Closed either way (by the driver, or lost): nothing more goes out, and everything waiting ends with `err`. */
  private shutDown(reason: string, err: ConnectionError): void {
    this.closedReason = reason
    this.refs.close()
    this.direct.close()
    this.actorCalls.close()
    this.links.close()
    this.events.close()
    this.transfer.close(reason)
    this.objects.failAll(err.toWire())
    for (const r of this.requests.values()) r.reject(err)
    this.requests.clear()
  }

  private assertOpen(): void {
    if (this.closedReason) throw new ConnectionError(`this connection is closed (${this.closedReason})`)
  }
}
