/**
 * The node page ↔ its Web Workers: what travels besides comlink's calls (whose types live with the executor).
 */
/** What a worker posts to its page on the same port as comlink's replies, so the two stay in one order. */
export type WorkerToPage =
  | { __shoal: 'up'; channel: string; frame: Uint8Array }
  | { __shoal: 'close'; channel: string }
  /** The worker is about to stop itself (`self.close()`): the page treats it as a crash. */
  | { __shoal: 'closing'; reason: string }
  /**
   * Results of a batch's first tasks, sent while its later ones still run (a batch that takes longer than a few
   * milliseconds must not hold back the results of its quick tasks): results[i] is the batch's task `from + i`, an
   * ExecResult (worker-page/executor.worker.ts).
   */
  | { __shoal: 'results'; from: number; results: unknown[] }

/** What the page posts to the worker's down port: a frame from the coordinator for one of its channels. */
export interface PageToWorker {
  channel: string
  frame: Uint8Array
}

export const isWorkerToPage = (data: unknown): data is WorkerToPage =>
  typeof data === 'object' && data !== null && typeof (data as { __shoal?: unknown }).__shoal === 'string'
