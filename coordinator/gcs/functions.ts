import type { FunctionDef } from '../../sdk/protocol/index.ts'

/** The function table: task functions and actor classes by content hash, shipped to nodes on first use. */
export class FunctionTable {
  private fns = new Map<string, FunctionDef>()

  put(def: FunctionDef): void {
    if (!this.fns.has(def.functionId)) this.fns.set(def.functionId, def)
  }

  get(id: string): FunctionDef | undefined {
    return this.fns.get(id)
  }

  get size(): number {
    return this.fns.size
  }
}
