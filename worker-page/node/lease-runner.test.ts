import { describe, expect, it, vi } from 'vitest'
import { FUNCTION_MISSING, type Lease, type PushedTask } from '../../sdk/protocol/index.ts'
import type { Route } from '../../sdk/transport/peer-links.ts'
import { MAX_QUEUED_PER_LEASE } from './admission.ts'
import { BATCH_STUCK_MS, BATCH_TASK_MS } from './batch-policy.ts'
import { LeaseRunner } from './lease-runner.ts'
import { endOfTurn, fn, lease, nodeParts, OWNER, ok, task } from './node.fixture.ts'

const f = fn('f')
const g = fn('g')

function runner(opts: { batches?: boolean } = {}) {
  const p = nodeParts(opts)
  const leases = new LeaseRunner(p.runs, p.admission, p.functions, p.send)
  const push = (l: Lease, tasks: PushedTask[], route: Route = 'direct') =>
    leases.push(OWNER, { type: 'push', lease: l, namespace: 'ns', tasks, functions: [f, g] }, route)
  const cancel = (leaseId: string, taskId: string) => leases.cancel(OWNER, { type: 'cancel', leaseId, taskId, force: false })
  /** The outcome each task's owner was told, in order. */
  const told = () => p.results().map((r) => `${r.taskId}:${r.ok ? 'ok' : r.error.code}`)
  return { ...p, leases, push, cancel, told }
}

describe('LeaseRunner: a lease’s tasks run one at a time, in the order pushed', () => {
  it('starts the next task when the one before ends, and answers each straight to its owner', async () => {
    const n = runner({ batches: false })
    n.push(lease('L1'), [task('a', f), task('b', f)])
    n.push(lease('L1'), [task('c', g)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a']])
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b']])
    n.workers.pending[0]?.end()
    await endOfTurn()
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b'], ['c']])
    expect(n.told()).toEqual(['a:ok', 'b:ok', 'c:ok'])
    expect(n.results().map((r) => r.route)).toEqual(['direct', 'direct', 'direct'])
    expect(n.stats).toEqual({ running: 0, finished: 3, failed: 0 })
  })

  it('leases run side by side, each in its own worker', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    n.push(lease('L2'), [task('c', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['c']])
    expect(n.leases.ids).toEqual(['L1', 'L2'])
  })

  it('short tasks of one function waiting together go to the worker in one message; another function waits its turn', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f)])
    await endOfTurn()
    n.workers.pending[0]?.end([ok(BATCH_TASK_MS / 2)])
    n.push(lease('L1'), [task('b', f), task('c', f), task('d', g), task('e', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b', 'c']])
    expect(n.workers.handed[1]?.kind).toBe('many')
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages.slice(2)).toEqual([['d']])
    n.workers.pending[0]?.end([ok(BATCH_TASK_MS * 2)])
    await endOfTurn()
    expect(n.workers.messages.slice(3)).toEqual([['e']])
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.told()).toEqual(['a:ok', 'b:ok', 'c:ok', 'd:ok', 'e:ok'])
  })

  it('without a worker that takes batches, short tasks go one by one', async () => {
    const n = runner({ batches: false })
    n.push(lease('L1'), [task('a', f)])
    await endOfTurn()
    n.workers.pending[0]?.end([ok(BATCH_TASK_MS / 2)])
    n.push(lease('L1'), [task('b', f), task('c', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b']])
  })

  it('a long task runs alone next time', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f)])
    await endOfTurn()
    n.workers.pending[0]?.end([ok(BATCH_TASK_MS * 10)])
    n.push(lease('L1'), [task('b', f), task('c', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b']])
  })

  it(`refuses a push that would queue more than ${MAX_QUEUED_PER_LEASE} tasks under one lease`, async () => {
    const n = runner()
    n.push(
      lease('L1'),
      Array.from({ length: MAX_QUEUED_PER_LEASE }, (_, i) => task(`t${i}`, f)),
    )
    await endOfTurn()
    n.push(lease('L1'), [task('x', f), task('y', f)]) // one runs: the queue holds MAX - 1
    await endOfTurn()
    expect(n.told()).toEqual(['x:LEASE_INVALID', 'y:LEASE_INVALID'])
    n.push(lease('L1'), [task('z', f)])
    await endOfTurn()
    expect(n.told().length).toBe(2)
  })

  it('a task whose function the node was not sent fails as FUNCTION_MISSING, and the next runs', async () => {
    const n = runner()
    const h = fn('h')
    n.push(lease('L1'), [task('a', h), task('b', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['b']])
    expect(n.told()).toEqual([`a:${FUNCTION_MISSING}`])
  })
})

describe('LeaseRunner: cancel, crash, end', () => {
  it('a cancelled queued task never runs and is not answered (its owner already failed it)', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f), task('c', f)])
    await endOfTurn()
    n.cancel('L1', 'b')
    n.workers.pending[0]?.end()
    await endOfTurn()
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['c']])
    expect(n.told()).toEqual(['a:ok', 'c:ok'])
  })

  it('a cancel right behind its push, in the same turn, finds the task', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f)])
    await endOfTurn()
    n.push(lease('L1'), [task('b', f)])
    n.cancel('L1', 'b')
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a']])
  })

  it('a cancel of the running task stops its worker; nothing is reported for it and the next task runs', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    await endOfTurn()
    const w = n.workers.pending[0]?.w
    n.cancel('L1', 'a')
    expect(n.workers.terminated).toEqual([w])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b']])
    n.workers.handed[0]?.end() // the stopped worker's late answer is not reported
    n.workers.handed[1]?.end()
    await endOfTurn()
    expect(n.told()).toEqual(['b:ok'])
    expect(n.stats.running).toBe(0)
  })

  it('a cancel of a task in a running batch forgets it (the batch ends within ms); a stuck batch’s worker stops', async () => {
    const now = vi.spyOn(performance, 'now')
    try {
      now.mockReturnValue(0)
      const n = runner()
      n.push(lease('L1'), [task('a', f)])
      await endOfTurn()
      n.workers.pending[0]?.end([ok(BATCH_TASK_MS / 2)])
      n.push(lease('L1'), [task('b', f), task('c', f), task('d', f), task('e', g)])
      await endOfTurn()
      expect(n.workers.messages).toEqual([['a'], ['b', 'c', 'd']])
      n.cancel('L1', 'c')
      expect(n.workers.terminated).toEqual([])
      n.workers.pending[0]?.end([ok(0.1), ok(0.1), ok(0.1)])
      await endOfTurn()
      expect(n.told()).toEqual(['a:ok', 'b:ok', 'd:ok'])
      n.push(lease('L1'), [task('x', f), task('y', f), task('z', f)])
      n.workers.pending[0]?.end([ok(0.1)]) // e: g is short too now
      await endOfTurn()
      expect(n.workers.messages.slice(3)).toEqual([['x', 'y', 'z']])
      now.mockReturnValue(BATCH_STUCK_MS + 1)
      n.cancel('L1', 'y')
      expect(n.workers.terminated.length).toBe(1)
      await endOfTurn()
      expect(n.told().slice(4)).toEqual(['x:WORKER_CRASHED', 'z:WORKER_CRASHED'])
      const x = n.results()[4]
      expect(x?.ok === false && x.error.message).toBe('The worker running task x was stopped to cancel task y of its batch')
      expect(n.stats.running).toBe(0)
    } finally {
      now.mockRestore()
    }
  })

  it('a cancel of a task that is neither queued nor running leaves the running one alone', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    await endOfTurn()
    n.workers.pending[0]?.end()
    await endOfTurn()
    n.cancel('L1', 'a') // already answered
    n.cancel('L1', 'nope')
    expect(n.workers.terminated).toEqual([])
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.told()).toEqual(['a:ok', 'b:ok'])
  })

  it('a cancel from someone other than the lease’s owner is ignored', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    await endOfTurn()
    n.leases.cancel('stranger', { type: 'cancel', leaseId: 'L1', taskId: 'b', force: false })
    n.workers.pending[0]?.end()
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a'], ['b']])
  })

  it('a worker that dies fails its task as WORKER_CRASHED (its owner retries it), lends back a blocked lease, and the next runs', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    await endOfTurn()
    n.leases.blocked('a', true)
    n.leases.blocked('a', true) // said once
    n.leases.workerCrashed(n.workers.pending[0]?.w as never, 'out of memory')
    await endOfTurn()
    expect(n.told()).toEqual(['a:WORKER_CRASHED'])
    expect(n.workers.messages).toEqual([['a'], ['b']])
    expect(n.toCoordinator.filter((m) => m.type === 'lease-blocked')).toEqual([
      { type: 'lease-blocked', leaseId: 'L1', blocked: true },
      { type: 'lease-blocked', leaseId: 'L1', blocked: false },
    ])
  })

  it('a lease ended by its owner’s death stops what runs, drops what waits, and refuses later pushes', async () => {
    const n = runner()
    n.push(lease('L1'), [task('a', f), task('b', f)])
    await endOfTurn()
    n.leases.end('L1', true)
    expect(n.workers.terminated.length).toBe(1)
    n.push(lease('L1'), [task('c', f)])
    await endOfTurn()
    expect(n.workers.messages).toEqual([['a']])
    expect(n.told()).toEqual(['c:LEASE_INVALID'])
    expect(n.leases.ids).toEqual([])
    expect(n.stats.running).toBe(0)
  })
})
