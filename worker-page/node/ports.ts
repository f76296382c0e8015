import type { BatchItem, ExecResult, ExecTask, LargeArg, ObjectUpdate } from '../../sdk/protocol/index.ts'

/** A worker as the node sees it. */
export interface WorkerSlot {
  id: string
  jobId?: string
  actorId?: string
  busy: boolean
  /** The task it runs now, so a cancel or crash can name it. */
  taskId?: string
}

/** The node's workers (the browser's WorkerPool; the simulator's own). Every call ends in a result, never hangs. */
export interface NodeWorkers {
  readonly size: number
  acquire(jobId: string, taskId: string): WorkerSlot
  spawnForActor(actorId: string, jobId: string): WorkerSlot
  release(w: WorkerSlot): void
  terminate(w: WorkerSlot): void
  terminateAll(): void
  /** The node gives this many CPUs now: the pool keeps that many workers ready (idle ones beyond it stop). */
  resize?(cpus: number): void
  /**
   * Idle workers stop: those of an ended job that own nothing (no channel), and those whose channels are named (they
   * owned something, and no longer do). Their channels close.
   */
  retire(jobId: string | undefined, channels: readonly string[]): void
  run(w: WorkerSlot, t: ExecTask & { source: string; funcName: string }): Promise<ExecResult>
  /**
   * Several short tasks in one message (optional: without it every task goes alone). The first results may come
   * ahead through `onBatchResults`; it resolves with the rest from index `from` (-1: the worker failed, and these
   * are failures for every task not reported yet).
   */
  runMany?(w: WorkerSlot, ts: BatchItem[]): Promise<{ from: number; results: ExecResult[] }>
  onBatchResults?: (w: WorkerSlot, from: number, results: ExecResult[]) => void
  createActor(w: WorkerSlot, t: ExecTask & { source: string; className: string; maxConcurrency: number }): Promise<ExecResult>
  callActor(w: WorkerSlot, t: ExecTask & { method: string }): Promise<ExecResult>
  /** A frame from the coordinator for one of the workers' channels. */
  deliver(channel: string, frame: Uint8Array): void
  /** A worker died while it held work (it stopped itself, crashed): its task fails as a system error. */
  onCrash: (w: WorkerSlot, reason: string) => void
  /** A frame a worker sends to the coordinator. */
  onRelay: (channel: string, frame: Uint8Array) => void
  onChannelsClosed: (channels: string[]) => void
}

/** The node's objects: large arguments made local, large returns recorded, transfers the coordinator asks for. */
export interface NodeObjects {
  readonly used: number
  readonly spilledBytes: number
  /** Makes every large argument local and pinned. Throws ObjectLostError when no copy can be had. */
  acquire(args: LargeArg[]): Promise<void>
  release(args: LargeArg[]): void
  /** A worker wrote a large return to the store (`bytes` are kept hot in memory if given). */
  stored(id: string, size: number, bytes?: Uint8Array): void
  onChunk(id: string, offset: number, total: number, data: Uint8Array): void
  onObjects(updates: ObjectUpdate[]): void
  upload(id: string): Promise<void>
  delete(ids: string[]): Promise<void>
  /**
   * The coordinator asks this node to hold a copy of these objects (their only holder is leaving): each is pulled and
   * reported stored. Optional: a node with no store of its own (the simulator's) never gets the request.
   */
  copyHere?(objects: LargeArg[]): void
  /** The node left the cluster: pulls under way fail (their tasks are retried elsewhere by their owners). */
  close(why: string): void
}

/** What the node's page shows of what happens on it. */
export interface NodeActivity {
  kind: 'registered' | 'task-start' | 'task-end' | 'disconnected' | 'actor' | 'store'
  text: string
}
