import { ActorCallSubmitter } from './actor-call-submitter.ts'
import { ActorClass, type ActorHandle, ActorHandleBase, type ActorSubmitter } from './actor-handle.ts'
import type { DecodeContext } from './codec.ts'
import { ControlClient, type DriverHandlers } from './control-client.ts'
import { DirectSubmitter } from './direct-submitter.ts'
import { ConnectionError, ObjectFreedError, ValidationError } from './errors.ts'
import { type ActorId, isPutObjectId, type JobId, type ObjectId, taskIdOfObject } from './ids.ts'
import { ObjectRef } from './object-ref.ts'
import { ObjectTable } from './object-table.ts'
import { ObjectTransfer } from './object-transfer.ts'
import { ObjectWaiter } from './object-waiter.ts'
import { CancelOptionsSchema, GetOptionsSchema, parseOptions, WaitOptionsSchema } from './options.ts'
import { OwnedTasks } from './owned-tasks.ts'
import { OwnerPublication } from './owner-publication.ts'
import { INLINE_OBJECT_MAX_BYTES, parsePeerMessage } from './protocol/index.ts'
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
 * It holds the public API and wires together the parts of Ray's core worker: the control client, the task submitter
 * and the owner's task table, the reference counter and what of it is published, the object table, the object
 * waiter and the object transfer.
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
  /** Which owned objects the coordinator's directory knows of. */
  private readonly publication: OwnerPublication
  private readonly waiter: ObjectWaiter
  private readonly control: ControlClient
  /** In a browser page: this driver's place in the peer mesh (WebRTC to and from nodes). Absent in Node. */
  private readonly peers: PeerMesh | undefined
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
    transport: FramedTransport,
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
    this.control = new ControlClient(transport, this.handlers(), (reason) => {
      const why = `the connection to the coordinator was lost: ${reason}`
      this.shutDown(why, new ConnectionError(why))
    })
    const send = (m: Parameters<FramedTransport['send']>[0]) => transport.send(m)
    this.refs = new ReferenceCounter(
      {
        release: (ids) => {
          const objectIds = this.publication.released(ids)
          if (objectIds.length) send({ type: 'release', objectIds })
        },
        borrow: (objectIds) => send({ type: 'borrow', objectIds }),
        unborrow: (objectIds) => send({ type: 'unborrow', objectIds }),
      },
      (id) => this.objects.delete(id),
    )
    // The counter's callbacks read the publication only when they fire, after this constructor.
    this.publication = new OwnerPublication({ refs: this.refs, objects: this.objects, send, isOpen: () => transport.isOpen })
    this.events = new TaskEventReporter((m) => transport.isOpen && send(m))
    this.links = new PeerLinks(
      opts.peerAddress,
      peers,
      (to, msgs) => send({ type: 'peer-send', to, msgs }),
      opts.relayOnly,
      () => batchBytesFor(transport.maxFrameBytes),
    )
    this.links.onMessage = (from, raw, route) => this.onPeerMessage(from, raw, route)
    this.tasks = new OwnedTasks({
      objects: this.objects,
      refs: this.refs,
      events: this.events,
      subscribe: (objectIds) => send({ type: 'subscribe', objectIds }),
      resolvedOwned: (values) => this.publication.resolvedOwned(values),
      registered: (ids) => this.publication.registered(ids),
    })
    this.submitter = new TaskSubmitter({
      jobId,
      namespace,
      send,
      assertOpen: () => this.control.assertOpen(),
      own: (id) => this.refs.own(id),
      expect: (id) => this.objects.expect(id),
      submitOwned: (spec, rejected, keepAlive) => this.tasks.submit(spec, rejected, keepAlive),
      escape: (ids) => this.publication.escape(ids),
      inDirectory: (ids) => this.publication.add(ids),
      putArgument: (data, nested) => this.putEncoded(data, nested, false).ref,
      parentTaskId: () => this.parentTaskId,
      maxFrameBytes: () => transport.maxFrameBytes,
    })
    this.direct = new DirectSubmitter(
      {
        namespace,
        objects: this.objects,
        links: this.links,
        send,
        functionDef: (id) => this.submitter.functionDef(id),
        pushBudget: () => batchBytesFor(transport.maxFrameBytes),
        markInfeasible: (taskIds, message) => {
          this.waiter.noteInfeasible(taskIds, message)
          for (const t of taskIds) this.events.state(t, this.tasks.get(t)?.attempt ?? 0, 'PENDING_NODE_ASSIGNMENT', { infeasible: true })
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
          send({ type: 'actor-lease-request', actorId })
        },
        pushBudget: () => batchBytesFor(transport.maxFrameBytes),
      },
      this.tasks,
    )
    this.tasks.actorCalls = this.actorCalls
    // A page keeps its large puts and serves them itself; a Node driver hands them to the coordinator (it may exit).
    this.servesPuts = !!peers && typeof (globalThis as { window?: unknown }).window !== 'undefined'
    this.transfer = new ObjectTransfer(this.objects, { send, request: (m) => this.control.request(m) }, peers, this.servesPuts)
    this.waiter = new ObjectWaiter({
      objects: this.objects,
      transfer: this.transfer,
      decodeCtx: this.decodeCtx,
      subscribe: (objectIds) => {
        this.control.assertOpen()
        send({ type: 'subscribe', objectIds })
      },
      flush: () => this.submitter.flush(),
      blockingHooks: () => this.blockingHooks,
      whereIs: (taskId) => this.tasks.whereIs(taskId),
    })
    this.control.beforeRequest = (msg) => {
      this.submitter.flush()
      // What this connection's tasks did so far is in the answer to a state query.
      if (msg.type === 'state') this.events.flush()
    }
    this.state = new StateApi((query) => this.control.request({ type: 'state', reqId: 0, query }))
    this.peers = peers
    transport.manifest = (m) => TaskSubmitter.manifestOf(m) ?? (m.type === 'object-chunk' || m.type === 'put' ? [m.objectId] : undefined)
    transport.onTooLarge = (m, bytes) =>
      this.failCarried(
        transport.manifest(m) ?? [],
        `it is ${bytes} bytes in one message, over the coordinator's ${transport.maxFrameBytes}-byte limit: pass large values with put()`,
      )
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
    const list = this.waiter.check(single ? [refs as ObjectRef] : (refs as ObjectRef[]), 'get')
    const values = await this.waiter.values(
      list.map((r) => r.id),
      timeout,
    )
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
    const list = this.waiter.check(refs, 'wait')
    if (!list.length) return { ready: [], notReady: [] }
    const n = o.numReturns ?? 1
    if (n > list.length) throw new ValidationError(`wait: numReturns (${n}) is more than the ${list.length} refs given`)
    if (new Set(list.map((r) => r.id)).size !== list.length) throw new ValidationError('wait: the refs must be distinct')
    await this.waiter.ready(
      list.map((r) => r.id),
      n,
      o.timeout,
    )
    const ready: T[] = []
    const notReady: T[] = []
    for (const r of list) (this.waiter.isReady(r.id) && ready.length < n ? ready : notReady).push(r)
    return { ready, notReady }
  }

  /**
   * Yields `[ref, value]` pairs in the order the objects become ready. A failed task throws when its turn comes.
   * @example
   * for await (const [ref, value] of mesh.asCompleted(refs)) console.log(String(ref), value)
   */
  async *asCompleted<T>(refs: ObjectRef<T>[], opts?: { timeout?: number | null }): AsyncGenerator<[ObjectRef<T>, T]> {
    const { timeout } = parseOptions(GetOptionsSchema, opts, 'asCompleted')
    let left = this.waiter.check(refs, 'asCompleted')
    const deadline = timeout != null ? performance.now() + timeout : undefined
    while (left.length) {
      const { ready } = await this.wait(left, {
        numReturns: 1,
        timeout: deadline !== undefined ? Math.max(0, deadline - performance.now()) : null,
      })
      if (!ready.length)
        throw this.waiter.timeoutError(
          timeout ?? 0,
          left.map((r) => r.id),
        )
      // Everything already ready is yielded in one pass, in the order it was given.
      const done = left.filter((r) => this.waiter.isReady(r.id))
      left = left.filter((r) => !this.waiter.isReady(r.id))
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
    this.control.assertOpen()
    const nested: ObjectId[] = []
    const data = encodePut(value, nested)
    if (data.byteLength > INLINE_OBJECT_MAX_BYTES) {
      const { ref, done } = this.putEncoded(data, nested, true)
      await done
      return ref as ObjectRef<T>
    }
    const id = this.submitter.newPutId()
    const ref = this.refs.own<T>(id)
    this.publication.escape(nested)
    this.publication.add([id])
    await this.control.request({ type: 'put', reqId: 0, objectId: id, data, ...(nested.length && { nestedRefs: nested }) })
    this.objects.expect(id)
    this.objects.resolve(id, { data })
    return ref
  }

  /** Stores an encoded large value (a put, or a large by-value argument). Usable synchronously from `.remote()`. */
  private putEncoded(data: Uint8Array, nested: ObjectId[], confirm: boolean): { ref: ObjectRef; done: Promise<unknown> } {
    const id = this.submitter.newPutId()
    const ref = this.refs.own(id)
    this.publication.escape(nested)
    this.publication.add([id])
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
    await this.control.request({ type: 'free', reqId: 0, objectIds: list.map((r) => r.id) })
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
    this.waiter.check([ref], 'cancel')
    await this.control.request({ type: 'cancel', reqId: 0, objectId: ref.id, force: o.force ?? false, recursive: o.recursive ?? true })
  }

  /** A handle to the named actor, from any connection. Rejects with ValidationError if there is none. */
  async getActor<T = object>(name: string, opts?: { namespace?: string }): Promise<ActorHandle<T>> {
    if (typeof name !== 'string' || !name) throw new ValidationError('getActor: name must be a non-empty string')
    const namespace = opts?.namespace ?? this.namespace
    if (typeof namespace !== 'string' || !namespace) throw new ValidationError('getActor: namespace must be a non-empty string')
    const w = await this.control.request({ type: 'get-actor', reqId: 0, name, namespace })
    // The handle counts like any other: a non-detached actor lives while some handle to it does.
    return this.decodeCtx.bindActorHandle?.(w) as ActorHandle<T>
  }

  /** Kills an actor at once: its pending and future calls reject with ActorDiedError. */
  async kill(handle: ActorHandleBase, opts?: { noRestart?: boolean }): Promise<void> {
    if (!(handle instanceof ActorHandleBase)) throw new ValidationError('kill: expected an actor handle')
    await this.control.request({ type: 'kill-actor', reqId: 0, actorId: handle.actorId, noRestart: opts?.noRestart ?? true })
  }

  /** Ends the job: its pending tasks are cancelled and its non-detached actors killed. */
  async close(): Promise<void> {
    if (this.control.closedReason) return
    this.submitter.flush()
    this.refs.flush()
    this.events.flush()
    this.shutDown('closed by the driver', new ConnectionError('the connection was closed'))
    this.peers?.stop()
    this.control.transport.close()
  }

  /** @internal Sends everything queued now: a task's worker does this before it reports the task's result. */
  flushNow(): void {
    this.submitter.flush()
    this.direct.flush()
    this.actorCalls.flush()
    this.refs.flush()
    this.links.flush()
    this.control.transport.flush()
  }

  /**
   * @internal Ends a task's scope (see ReferenceCounter): the objects it made and let go that the coordinator knows
   * of, for its result to release after the coordinator has taken what the result holds.
   */
  endScope(): ObjectId[] {
    return this.publication.released(this.refs.endScope())
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

  /** @internal Refs to these objects leave this connection: see OwnerPublication.escape. */
  escape(ids: readonly ObjectId[]): void {
    this.publication.escape(ids)
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

  /** What this driver does with each message the coordinator sends it. */
  private handlers(): DriverHandlers {
    return {
      objects: (msg) => {
        for (const o of msg.objects) {
          this.objects.resolve(o.objectId as ObjectId, o)
          if (o.error) this.transfer.onRelayFailed(o.objectId as ObjectId, o.error.message)
        }
      },
      'object-chunk': (msg) => this.transfer.onChunk(msg.objectId as ObjectId, msg.offset, msg.total, msg.data),
      error: (msg) => {
        if (msg.frame !== undefined) {
          const carried = this.control.transport.refusedFrame(msg.frame)
          if (carried.length) return this.failCarried(carried, msg.error.message)
        }
        console.error(`[shoal] the coordinator reported: ${msg.error.message}`)
      },
      warning: (msg) => {
        this.waiter.noteInfeasible(msg.taskIds, msg.message)
        if (msg.shapeId) this.direct.onInfeasible(msg.shapeId, msg.message)
        console.warn(`[shoal] ${msg.message}`)
      },
      'peer-recv': (msg) => this.links.receiveRelayed(msg.from, msg.msgs),
      'lease-granted': (msg) => this.direct.onGranted(msg.shapeId, msg.lease),
      'lease-failed': (msg) => this.direct.onFailed(msg.shapeId, msg.error.message),
      'lease-revoked': (msg) => this.direct.onRevoked(msg.leaseIds, msg.nodeId),
      'lease-reclaim': (msg) => this.direct.onReclaim(msg.leaseIds),
      'cancel-owned': (msg) => void this.tasks.cancel(msg.taskId, msg.force),
      'actor-state': (msg) => this.actorCalls.onActorState(msg),
      'delete-objects': (msg) => this.transfer.dropServed(msg.objectIds),
      'upload-object': (msg) =>
        void this.transfer.upload(msg.objectId as ObjectId, () => this.control.transport.bufferedAmount).catch(() => {}),
    }
  }

  /** Closed either way (by the driver, or lost): nothing more goes out, and everything waiting ends with `err`. */
  private shutDown(reason: string, err: ConnectionError): void {
    if (!this.control.shutDown(reason, err)) return
    this.refs.close()
    this.direct.close()
    this.actorCalls.close()
    this.links.close()
    this.events.close()
    this.transfer.close(reason)
    this.objects.failAll(err.toWire())
  }
}
