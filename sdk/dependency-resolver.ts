import type { WireError } from './errors.ts'
import type { ObjectId } from './ids.ts'

/** What the resolver needs of an object store: the owner's object table or the coordinator's directory. */
export interface DependencySource {
  isReady(id: ObjectId): boolean
  /** Calls `cb` once the object has its value, its locations or its error. */
  onReady(id: ObjectId, cb: () => void): unknown
  read(id: ObjectId): { readonly error?: WireError } | undefined
}

/**
 * A task that waits for its dependencies. Its count of those not ready yet is kept on the task itself (a driver may
 * hold a million tasks: no record beside each); it stops waiting when its phase leaves 'waiting-deps' (cancelled or
 * failed meanwhile).
 */
export interface Dependent {
  missing: number
  readonly phase: string
}

/**
 * Waits for a task's dependencies — its top-level ref arguments only, as in Ray — and says when all are ready, with
 * the error of the first that failed (the task then fails with that same error, as in Ray). Ray's
 * `LocalDependencyResolver`; used by the owner's table of its tasks and by the coordinator's placed tasks.
 */
export class DependencyResolver<T extends Dependent> {
  constructor(
    private readonly objects: DependencySource,
    /** All of `t`'s dependencies are ready (at once, if they were): `failed` is the first one's error, if any failed. */
    private readonly resolved: (t: T, failed: WireError | undefined) => void,
  ) {}

  /** Waits for `deps`, in the order the task names them (that order picks which error it fails with). */
  wait(t: T, deps: readonly ObjectId[]): void {
    for (const id of deps) {
      if (this.objects.isReady(id)) continue
      t.missing++
      this.objects.onReady(id, () => {
        if (--t.missing === 0 && t.phase === 'waiting-deps') this.resolved(t, this.firstError(deps))
      })
    }
    if (t.missing === 0) this.resolved(t, this.firstError(deps))
  }

  private firstError(deps: readonly ObjectId[]): WireError | undefined {
    for (const id of deps) {
      const error = this.objects.read(id)?.error
      if (error) return error
    }
    return undefined
  }
}
