import { type ActorHandleWire, registerActorHandleClass } from './codec.ts'
import { ValidationError } from './errors.ts'
import type { ActorId, ObjectId } from './ids.ts'
import type { ObjectRef } from './object-ref.ts'
import { type ActorOptions, ActorOptionsSchema, parseOptions } from './options.ts'
import type { ActorCreation, Resources, SchedulingStrategy } from './protocol/index.ts'
import { type RemoteArgs, resourcesOf } from './remote-function.ts'

/** What actor classes and handles need from their connection. */
export interface ActorSubmitter {
  readonly namespace: string
  createActor(
    cls: { source: string; name: string },
    args: unknown[],
    spec: { actor: ActorCreation; resources: Resources; strategy: SchedulingStrategy; volunteers: boolean },
  ): { actorId: ActorId; ready: ObjectRef<null> }
  /** `handleId`: the object the actor's handles are counted through (kept alive while the call is pending). */
  submitActorTask(
    actorId: ActorId,
    className: string,
    method: string,
    args: unknown[],
    numReturns: number,
    handleId?: ObjectId,
  ): ObjectRef[]
}

type AnyClass = abstract new (...args: never[]) => object
type Method = (...args: never[]) => unknown
/** `handle.method.remote(...)` for every method of the class. */
export type ActorMethods<T> = {
  [K in keyof T as T[K] extends Method ? K : never]: T[K] extends Method
    ? {
        remote(...args: RemoteArgs<Parameters<T[K]>>): ObjectRef<Awaited<ReturnType<T[K]>>>
        options(o: { numReturns?: number }): { remote(...args: RemoteArgs<Parameters<T[K]>>): ObjectRef[] }
      }
    : never
}

/** The method names of a class, own and inherited, without the constructor. */
export function methodNamesOf(cls: AnyClass): string[] {
  const names = new Set<string>()
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === 'constructor') continue
      const d = Object.getOwnPropertyDescriptor(p, k)
      if (d && typeof d.value === 'function') names.add(k)
    }
  }
  return [...names]
}

/**
 * A reference to a live actor. Pass it to tasks and other actors like any value; they can call it too.
 * @example
 * const c = Counter.remote()
 * await mesh.get(c.inc.remote()) // 1
 */
export class ActorHandleBase {
  /** Reserved names cannot be methods: they belong to the handle. */
  static readonly RESERVED = new Set(['actorId', 'className', 'toWireHandle', 'toString', 'ready'])
  constructor(
    readonly actorId: ActorId,
    readonly className: string,
    private readonly methodNames: string[],
    private readonly submitter: ActorSubmitter | undefined,
    private readonly readyRef?: ObjectRef<null>,
  ) {
    for (const m of methodNames) {
      if (ActorHandleBase.RESERVED.has(m)) continue
      const call =
        (numReturns: number) =>
        (...args: unknown[]) => {
          if (!this.submitter) throw new ValidationError(`this handle to ${className} was decoded outside a Shoal connection`)
          const refs = this.submitter.submitActorTask(actorId, className, m, args, numReturns, this.readyRef?.id)
          return numReturns === 1 ? refs[0] : numReturns === 0 ? undefined : refs
        }
      Object.defineProperty(this, m, {
        enumerable: false,
        value: { remote: call(1), options: (o: { numReturns?: number }) => ({ remote: call(o.numReturns ?? 1) }) },
      })
    }
  }
  /**
   * A ref that resolves (to null) once the actor is constructed, or rejects if it could not be. Every handle holds
   * it: the actor's handles are counted through it.
   */
  ready(): ObjectRef<null> | undefined {
    return this.readyRef
  }
  toWireHandle(): ActorHandleWire {
    return {
      actorId: this.actorId,
      className: this.className,
      methods: this.methodNames,
      ...(this.readyRef && { handleId: this.readyRef.id }),
    }
  }
  toString(): string {
    return `Actor(${this.className}, ${this.actorId})`
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString()
  }
}
registerActorHandleClass(ActorHandleBase)

export type ActorHandle<T = object> = ActorHandleBase & ActorMethods<T>

/**
 * A class whose instances live as actors on the mesh. Made by `mesh.remote(SomeClass)`.
 * @example
 * const Counter = mesh.remote(class Counter { n = 0; inc() { return ++this.n } })
 * const c = Counter.options({ name: 'counter', lifetime: 'detached' }).remote()
 */
export class ActorClass<C extends AnyClass> {
  readonly name: string
  private readonly source: string
  private readonly methods: string[]

  constructor(
    private readonly submitter: ActorSubmitter,
    cls: C,
    private readonly opts: ActorOptions = {},
  ) {
    this.source = Function.prototype.toString.call(cls)
    this.name = cls.name || 'AnonymousActor'
    this.methods = methodNamesOf(cls)
    const clash = this.methods.find((m) => ActorHandleBase.RESERVED.has(m))
    if (clash) throw new ValidationError(`actor class ${this.name}: method name '${clash}' is reserved by actor handles; rename it`)
  }

  /** Creates the actor; returns its handle at once while the coordinator places it. */
  remote(...args: ConstructorParameters<C>): ActorHandle<InstanceType<C>> {
    const o = this.opts
    const { actorId, ready } = this.submitter.createActor({ source: this.source, name: this.name }, args, {
      resources: resourcesOf(o, 1, `${this.name}.options`),
      strategy: o.schedulingStrategy ?? 'DEFAULT',
      volunteers: o.volunteers ?? false,
      actor: {
        className: this.name,
        methods: this.methods,
        name: o.name,
        namespace: o.namespace ?? this.submitter.namespace,
        getIfExists: o.getIfExists ?? false,
        detached: o.lifetime === 'detached',
        // One call at a time unless asked: in JS every waiting method is async, so Ray's "async actor ⇒ 1000" rule
        // would make the plain counter interleave. Set maxConcurrency to let async methods overlap.
        maxConcurrency: o.maxConcurrency ?? 1,
        maxRestarts: o.maxRestarts ?? 0,
        maxTaskRetries: o.maxTaskRetries ?? 0,
      },
    })
    return new ActorHandleBase(actorId, this.name, this.methods, this.submitter, ready) as ActorHandle<InstanceType<C>>
  }

  options(opts: ActorOptions): ActorClass<C> {
    const parsed = parseOptions(ActorOptionsSchema, opts, `${this.name}.options`)
    resourcesOf(parsed, 1, `${this.name}.options`)
    if (parsed.getIfExists && !parsed.name) throw new ValidationError(`${this.name}.options: getIfExists needs a name`)
    const copy = Object.create(ActorClass.prototype) as ActorClass<C>
    Object.assign(copy, this, { opts: { ...this.opts, ...parsed } })
    return copy
  }
}
