import { newWorkerId } from '../sdk/ids.ts'
import type { NodeWorkers, WorkerSlot } from '../worker-page/node/ports.ts'

/**
 * The bookkeeping of a node's simulated workers, shared by the deterministic simulator (`sim/`) and the scale
 * simulator (`bench/sim/`): which slots exist, which are busy, whose job or actor each serves. A slot is chosen as
 * the browser's WorkerPool chooses a worker (an idle one of the same job first, then an unused one). How work ends
 * is each simulator's own: `forget` drops what a stopped slot was doing.
 */
export abstract class SimulatedWorkerSlots<S extends WorkerSlot = WorkerSlot>
  implements Omit<NodeWorkers, 'run' | 'createActor' | 'callActor'>
{
  slots: S[] = []
  onCrash: (w: WorkerSlot, reason: string) => void = () => {}
  onRelay: (channel: string, frame: Uint8Array) => void = () => {}
  onChannelsClosed: (channels: string[]) => void = () => {}

  /** What a stopped slot was doing never ends (as a terminated Web Worker's): the simulator drops it. */
  protected abstract forget(w: S): void

  get size(): number {
    return this.slots.length
  }

  acquire(jobId: string, taskId: string): WorkerSlot {
    let w = this.slots.find((x) => !x.busy && !x.actorId && x.jobId === jobId)
    w ??= this.slots.find((x) => !x.busy && !x.actorId && x.jobId === undefined)
    if (!w) this.slots.push((w = { id: newWorkerId(), busy: false } as unknown as S))
    w.busy = true
    w.jobId = jobId
    w.taskId = taskId
    return w
  }

  spawnForActor(actorId: string, jobId: string): WorkerSlot {
    const w = { id: newWorkerId(), busy: true, actorId, jobId } as unknown as S
    this.slots.push(w)
    return w
  }

  release(w: WorkerSlot): void {
    w.busy = false
    w.taskId = undefined
  }

  terminate(w: WorkerSlot): void {
    this.slots = this.slots.filter((x) => x !== w)
    this.forget(w as S)
  }

  terminateAll(): void {
    for (const w of [...this.slots]) this.terminate(w)
  }

  retire(jobId: string | undefined): void {
    // Simulated tasks use no `self.shoal`: their workers open no channels, so they never own anything.
    for (const w of [...this.slots]) if (w.jobId === jobId && !w.busy && !w.actorId) this.terminate(w)
  }

  deliver(): void {
    // No `self.shoal` in a simulated task: no worker channel ever carries a frame.
  }
}
