import { functionIdOf } from '../../sdk/ids.ts'
import type { FunctionDef } from '../../sdk/protocol/index.ts'

/**
 * The function definitions this node was sent, under their job: ids are the job's own (docs/trust.md), so one job's
 * definition never answers for another job's id.
 */
export class Functions {
  private readonly byKey = new Map<string, FunctionDef>()

  get(jobId: string, functionId: string): FunctionDef | undefined {
    return this.byKey.get(key(jobId, functionId))
  }

  /** A definition the coordinator sent (it checked it). */
  set(jobId: string, f: FunctionDef): void {
    this.byKey.set(key(jobId, f.functionId), f)
  }

  /** Definitions an owner pushed: a function's id is its source's hash, so a push cannot make another run under a known id. */
  learn(jobId: string, fs: readonly FunctionDef[]): void {
    for (const f of fs) if (functionIdOf(f.source) === f.functionId) this.set(jobId, f)
  }
}

const key = (jobId: string, functionId: string) => `${jobId}:${functionId}`
