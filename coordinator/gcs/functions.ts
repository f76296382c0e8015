import { ValidationError } from '../../sdk/errors.ts'
import { functionIdOf } from '../../sdk/ids.ts'
import type { FunctionDef } from '../../sdk/protocol/index.ts'
import type { ControlStore } from '../store/control-store.ts'

/** How many functions one job may register (a job defines a few; a flood is refused). */
export const MAX_FUNCTIONS_PER_JOB = 10_000

/**
 * The function table: task functions and actor classes, each the registering job's own (docs/trust.md). An id is its
 * source's hash, computed here again: a registration whose id is not its source's is refused, and one job's
 * registration can never change the code another job's id stands for (there is no table they share).
 */
export class FunctionTable {
  private byJob = new Map<string, Map<string, FunctionDef>>()

  constructor(
    /** Where functions are kept across restarts (a restarted coordinator needs no re-registration). */
    private readonly store?: ControlStore,
    private readonly storeFailed: (e: unknown) => void = () => {},
  ) {}

  /** Loads what a previous run kept. */
  async restore(): Promise<void> {
    if (!this.store) return
    for (const [key, def] of await this.store.getAll<FunctionDef>('functions')) {
      const jobId = key.slice(0, key.indexOf(':'))
      let fns = this.byJob.get(jobId)
      if (!fns) this.byJob.set(jobId, (fns = new Map()))
      fns.set(def.functionId, def)
    }
  }

  /** Stores `def` for `jobId`; the first registration of an id stands. Throws on a forged id or a flood. */
  put(jobId: string, def: FunctionDef): void {
    if (functionIdOf(def.source) !== def.functionId)
      throw new ValidationError(`function ${def.name}: its id ${def.functionId.slice(0, 40)} is not the hash of its source`)
    let fns = this.byJob.get(jobId)
    if (!fns) this.byJob.set(jobId, (fns = new Map()))
    if (fns.has(def.functionId)) return
    if (fns.size >= MAX_FUNCTIONS_PER_JOB) throw new ValidationError(`a job may register at most ${MAX_FUNCTIONS_PER_JOB} functions`)
    fns.set(def.functionId, def)
    this.store?.put('functions', `${jobId}:${def.functionId}`, def).catch(this.storeFailed)
  }

  /**
   * A job ended and nothing of it can run again (no detached actor of it lives on): its functions leave the store,
   * which would otherwise keep every job's functions forever. The table in memory keeps them while the process runs.
   */
  forgetStored(jobId: string): void {
    for (const id of this.byJob.get(jobId)?.keys() ?? []) this.store?.delete('functions', `${jobId}:${id}`).catch(this.storeFailed)
  }

  get(jobId: string, id: string): FunctionDef | undefined {
    return this.byJob.get(jobId)?.get(id)
  }

  get size(): number {
    let n = 0
    for (const fns of this.byJob.values()) n += fns.size
    return n
  }
}
