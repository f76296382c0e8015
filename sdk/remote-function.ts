import { ValidationError } from './errors.ts'
import type { ObjectRef } from './object-ref.ts'
import { parseOptions, type TaskOptions, TaskOptionsSchema } from './options.ts'
import { type Resources, type SchedulingStrategy, verifyProblem } from './protocol/index.ts'
import { quantityProblem } from './resources.ts'

/** Turns numCpus/numGpus/resources into one resource map, refusing the reserved names inside `resources` (as Ray). */
export function resourcesOf(
  o: { numCpus?: number; numGpus?: number; resources?: Resources },
  defaultCpus: number,
  where: string,
): Resources {
  for (const reserved of ['CPU', 'GPU']) {
    if (o.resources && reserved in o.resources)
      throw new ValidationError(`${where}: use num${reserved === 'CPU' ? 'Cpus' : 'Gpus'} instead of resources.${reserved}`)
  }
  const r: Resources = { CPU: o.numCpus ?? defaultCpus, ...o.resources }
  if (o.numGpus) r.GPU = o.numGpus
  for (const [k, q] of Object.entries(r)) {
    const problem = quantityProblem(k, q)
    if (problem) throw new ValidationError(`${where}: ${problem}`)
  }
  return r
}

/** What a RemoteFunction needs from its connection. */
export interface RemoteFunctionSubmitter {
  submitTask(
    fn: { source: string; name: string; kind: 'function' },
    args: unknown[],
    spec: {
      name: string
      resources: Resources
      maxRetries: number
      retryExceptions: boolean | string[]
      numReturns: number
      strategy: SchedulingStrategy
      volunteers: boolean
      verify?: { replicas: number }
    },
  ): ObjectRef[]
}

type Fn = (...args: never[]) => unknown
/** An argument may be given as its value or as an ObjectRef to it. */
export type RemoteArgs<P extends readonly unknown[]> = { [K in keyof P]: P[K] | ObjectRef<P[K]> }

/**
 * A function that runs as tasks on the mesh. Made by `mesh.remote(fn)`.
 * @example
 * const double = mesh.remote(function double(x: number) { return x * 2 })
 * const ref = double.remote(21)
 * const named = double.options({ name: 'dbl', numCpus: 0.5 }).remote(1)
 */
export class RemoteFunction<F extends Fn> {
  readonly name: string
  private readonly source: string

  constructor(
    private readonly submitter: RemoteFunctionSubmitter,
    fn: F,
    private readonly opts: TaskOptions = {},
  ) {
    this.source = Function.prototype.toString.call(fn)
    this.name = fn.name || 'anonymous'
  }

  /**
   * Submits one task; returns the ref of its result at once (or one ref per return with `numReturns` > 1, or none
   * with `numReturns: 0`).
   */
  remote(...args: RemoteArgs<Parameters<F>>): ObjectRef<Awaited<ReturnType<F>>> {
    const o = this.opts
    const refs = this.submitter.submitTask({ source: this.source, name: this.name, kind: 'function' }, args as unknown[], {
      name: o.name ?? this.name,
      resources: this.resources(),
      maxRetries: o.maxRetries ?? 3,
      retryExceptions: o.retryExceptions ?? false,
      numReturns: o.numReturns ?? 1,
      strategy: o.schedulingStrategy ?? 'DEFAULT',
      volunteers: o.volunteers ?? false,
      ...(o.verify && { verify: o.verify }),
    })
    const n = o.numReturns ?? 1
    return (n === 1 ? refs[0] : n === 0 ? undefined : refs) as ObjectRef<Awaited<ReturnType<F>>>
  }

  /** A copy with these options changed (Ray's `.options()`). Bad options throw ValidationError at once. */
  options(opts: TaskOptions): RemoteFunction<F> {
    const parsed = parseOptions(TaskOptionsSchema, opts, `${this.name}.options`)
    resourcesOf(parsed, 1, `${this.name}.options`)
    const merged = { ...this.opts, ...parsed }
    const unverifiable = verifyProblem(merged.verify, merged.schedulingStrategy)
    if (unverifiable) throw new ValidationError(`${this.name}.options: ${unverifiable}`)
    const copy = Object.create(RemoteFunction.prototype) as RemoteFunction<F>
    Object.assign(copy, this, { opts: merged, resourcesMade: undefined })
    return copy
  }

  /** Its tasks' resources: one frozen map shared by all of them (a loop of a million calls makes one). */
  private resources(): Resources {
    this.resourcesMade ??= Object.freeze(resourcesOf(this.opts, 1, `${this.name}.options`))
    return this.resourcesMade
  }
  private resourcesMade: Resources | undefined
}
