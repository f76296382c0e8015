import { describe, expect, it } from 'vitest'
import { decodeValue, encodeValue } from './codec.ts'
import type { WireError } from './errors.ts'
import { functionIdOf, type JobId, newActorId, newNodeId, newTaskId, type ObjectId, objectIdOf, type TaskId } from './ids.ts'
import { ObjectTable } from './object-table.ts'
import { type OwnedTask, OwnedTasks, type OwnedValue, type TaskScheduling } from './owned-tasks.ts'
import type { ClientMessage, TaskResult, TaskSpec } from './protocol/index.ts'
import { ReferenceCounter } from './reference-counter.ts'
import { type TaskEvent, TaskEventReporter } from './task-event-reporter.ts'
import { actorCallFields, taskSpec } from './task-spec.fixture.ts'

const JOB = '0000002a' as JobId
const FN = functionIdOf('function f(x) { return x }')

/** Records what the owned-task table asks of its submitter; tests move tasks from the queue to a node by hand. */
class FakeScheduling implements TaskScheduling {
  queue: OwnedTask[] = []
  readonly cancelled: { taskId: string; force: boolean; leaseId?: string }[] = []
  enqueue(t: OwnedTask, front: boolean): void {
    if (front) this.queue.unshift(t)
    else this.queue.push(t)
  }
  dequeue(t: OwnedTask): void {
    this.queue = this.queue.filter((q) => q !== t)
  }
  cancelPushed(t: OwnedTask, force: boolean): void {
    this.cancelled.push({ taskId: t.taskId, force, leaseId: t.leaseId })
  }
}

/** An owned-task table over the real object table, reference counter and event reporter, with a recording channel. */
function owner() {
  const objects = new ObjectTable()
  const control: ClientMessage[] = []
  const refs = new ReferenceCounter({ release: () => {}, borrow: () => {}, unborrow: () => {} }, (id) => objects.delete(id))
  const events = new TaskEventReporter((m) => control.push(m))
  const said = { subscribed: [] as ObjectId[], resolved: [] as OwnedValue[], registered: [] as ObjectId[] }
  const tm = new OwnedTasks({
    objects,
    refs,
    events,
    subscribe: (ids) => said.subscribed.push(...ids),
    resolvedOwned: (values) => said.resolved.push(...values),
    registered: (ids) => said.registered.push(...ids),
  })
  const scheduling = new FakeScheduling()
  tm.scheduling = scheduling
  const node = newNodeId()
  /** The driver's refs to the returns (as `remote` hands them out): they keep the returns' entries alive. */
  const held: unknown[] = []
  return {
    tm,
    objects,
    refs,
    said,
    scheduling,
    node,
    /** Submits a task as the connection does: its returns are owned and expected first. */
    submit(over: Partial<TaskSpec> = {}, rejected?: WireError) {
      const s = spec(over)
      for (let i = 1; i <= s.numReturns; i++) {
        const id = objectIdOf(s.taskId as TaskId, i)
        held.push(refs.own(id))
        objects.expect(id)
      }
      tm.submit(s, rejected)
      return s
    },
    /** The submitter pushes the queued task to `node` under a lease. */
    push(taskId: string, leaseId = 'ab'.repeat(16), nodeId = node): OwnedTask {
      const t = tm.get(taskId) as OwnedTask
      expect(t.phase).toBe('queued')
      scheduling.dequeue(t)
      tm.pushed(t, leaseId, nodeId)
      return t
    },
    /** The task's events so far, as `STATE@attempt`. */
    states(taskId: string): string[] {
      events.flush()
      return control
        .flatMap((m) => (m.type === 'task-events' ? m.events : []))
        .filter((e: TaskEvent) => e.taskId === taskId)
        .map((e) => `${e.state}@${e.attempt}`)
    },
    error: (taskId: string, i = 1) => objects.read(objectIdOf(taskId as TaskId, i))?.error,
    value: (taskId: string, i = 1) => {
      const data = objects.read(objectIdOf(taskId as TaskId, i))?.data
      return data && decodeValue(data)
    },
  }
}

const spec = (over: Partial<TaskSpec> = {}): TaskSpec => taskSpec(JOB, FN, over)

const ok = (t: OwnedTask, ...values: unknown[]): TaskResult => ({
  taskId: t.taskId,
  attempt: t.attempt,
  ok: true,
  returns: (values.length ? values : [t.attempt]).map((v) => encodeValue(v, 'r')),
})
const userError = (t: OwnedTask, remoteName = 'Error'): TaskResult => ({
  taskId: t.taskId,
  attempt: t.attempt,
  ok: false,
  error: { name: 'TaskError', code: 'TASK_ERROR', message: 'boom', data: { remoteName } },
  userError: true,
})

describe('OwnedTasks (owner side)', () => {
  it('says where a pending task is, for a timeout', () => {
    const o = owner()
    const s = o.submit()
    expect(o.tm.whereIs(s.taskId)).toMatch(/^task f \(\w{8}, attempt 1\) waits for a worker lease$/)
    o.push(s.taskId, 'cd'.repeat(16))
    expect(o.tm.whereIs(s.taskId)).toMatch(/was pushed to node \w{8} \(lease cdcdcdcd\) and has not answered$/)
    expect(o.tm.whereIs('ef'.repeat(24))).toBeUndefined()
  })

  it('keeps one template for a loop of the same calls, and a lone argument bare', () => {
    const o = owner()
    const resources = Object.freeze({ CPU: 1 })
    const a = o.submit({ resources })
    const b = o.submit({ resources })
    const c = o.submit({ resources, name: 'other' })
    const [ta, tb, tc] = [a, b, c].map((s) => o.tm.get(s.taskId) as OwnedTask)
    expect(ta?.template).toBe(tb?.template)
    expect(tc?.template).not.toBe(ta?.template)
    expect(tc?.template.name).toBe('other')
    expect(ta?.args).toBeInstanceOf(Uint8Array)
    expect(decodeValue(ta?.args as Uint8Array)).toBe(1)
  })

  it('waits for its top-level ref arguments, subscribing to those it does not hold, then queues the task', () => {
    const o = owner()
    const producer = o.submit()
    const produced = objectIdOf(producer.taskId as TaskId, 1)
    const foreign = 'cd'.repeat(28) as ObjectId
    const consumer = o.submit({ args: [{ ref: produced }, { ref: foreign }] })
    expect(o.scheduling.queue.map((t) => t.taskId)).toEqual([producer.taskId])
    expect(o.tm.get(consumer.taskId)?.phase).toBe('waiting-deps')
    expect(o.states(consumer.taskId)).toEqual(['PENDING_ARGS_AVAIL@0'])
    // Its own return is expected already; only the foreign object needs a subscription.
    expect(o.said.subscribed).toEqual([foreign])
    // Both arguments are kept alive while it is pending.
    expect(o.refs.table().get(foreign)).toEqual({ local: 0, submitted: 1 })

    o.tm.completed(o.push(producer.taskId), ok(o.tm.get(producer.taskId) as OwnedTask, 5), o.node, false)
    expect(o.tm.get(consumer.taskId)?.phase).toBe('waiting-deps')
    o.objects.resolve(foreign, { data: encodeValue(2, 'x') })
    expect(o.scheduling.queue.map((t) => t.taskId)).toEqual([consumer.taskId])
    expect(o.states(consumer.taskId)).toEqual(['PENDING_ARGS_AVAIL@0', 'PENDING_NODE_ASSIGNMENT@0'])
  })

  it('fails a task whose argument failed with the same error, and lets go of what it kept alive', () => {
    const o = owner()
    const producer = o.submit()
    const consumer = o.submit({ args: [{ ref: objectIdOf(producer.taskId as TaskId, 1) }] })
    const t = o.push(producer.taskId)
    o.tm.completed(t, userError(t), o.node, false) // retryExceptions is false: not retried
    expect(o.error(producer.taskId)?.code).toBe('TASK_ERROR')
    expect(o.error(consumer.taskId)).toMatchObject({ code: 'TASK_ERROR', message: 'boom' })
    expect(o.scheduling.queue).toEqual([])
    expect(o.tm.pending).toBe(0)
    // The consumer kept the producer's return alive; now only the driver's own refs hold anything.
    expect([...o.refs.table().values()].every((c) => c.submitted === 0)).toBe(true)
  })

  it('retries a node death while maxRetries allows, then fails the task with NodeDiedError naming the node', () => {
    const o = owner()
    const s = o.submit({ maxRetries: 2 })
    const other = o.submit()
    for (let attempt = 0; attempt < 2; attempt++) {
      const t = o.push(s.taskId)
      expect(t.attempt).toBe(attempt)
      o.tm.nodeDied(t, o.node)
      // Retried as the next attempt, at the front of its queue (it waited its turn once already).
      expect(t.phase).toBe('queued')
      expect(t.attempt).toBe(attempt + 1)
      expect(o.scheduling.queue.map((q) => q.taskId)).toEqual([s.taskId, other.taskId])
      expect(o.error(s.taskId)).toBeUndefined()
    }
    o.tm.nodeDied(o.push(s.taskId), o.node)
    const err = o.error(s.taskId)
    expect(err?.code).toBe('NODE_DIED')
    expect(err?.name).toBe('NodeDiedError')
    expect(err?.message).toContain(o.node)
    expect(err?.message).toContain('after 3 attempt(s)')
    expect(err?.data).toMatchObject({ nodeId: o.node, taskId: s.taskId })
    expect(o.tm.get(s.taskId)).toBeUndefined()
    expect(o.said.resolved).toEqual([{ objectId: objectIdOf(s.taskId as TaskId, 1), error: err }])
    expect(o.states(s.taskId).filter((e) => e.startsWith('FAILED'))).toEqual(['FAILED@0', 'FAILED@1', 'FAILED@2'])
    expect(o.tm.get(other.taskId)?.phase).toBe('queued')
  })

  it('maxRetries 0 fails at the first node death; -1 retries without end', () => {
    const o = owner()
    const once = o.submit({ maxRetries: 0 })
    o.tm.nodeDied(o.push(once.taskId), o.node)
    expect(o.error(once.taskId)?.code).toBe('NODE_DIED')
    expect(o.error(once.taskId)?.message).toContain('after 1 attempt(s)')

    const forever = o.submit({ maxRetries: -1 })
    for (let i = 0; i < 20; i++) o.tm.nodeDied(o.push(forever.taskId), o.node)
    const t = o.tm.get(forever.taskId) as OwnedTask
    expect(t.phase).toBe('queued')
    expect(t.attempt).toBe(20)
    o.tm.completed(o.push(forever.taskId), ok(t), o.node, false)
    expect(o.value(forever.taskId)).toBe(20)
  })

  it('retries a user error only with retryExceptions: true, or a list naming the error', () => {
    const o = owner()
    const cases = {
      never: o.submit({ retryExceptions: false }),
      always: o.submit({ retryExceptions: true }),
      named: o.submit({ retryExceptions: ['ValueError'] }),
      otherName: o.submit({ retryExceptions: ['TypeError'] }),
      namedNoRetriesLeft: o.submit({ retryExceptions: ['ValueError'], maxRetries: 0 }),
    }
    for (const s of Object.values(cases)) {
      const t = o.push(s.taskId)
      o.tm.completed(t, userError(t, 'ValueError'), o.node, false)
    }
    const retried = Object.entries(cases)
      .filter(([, s]) => o.tm.get(s.taskId)?.phase === 'queued')
      .map(([k]) => k)
    expect(retried).toEqual(['always', 'named'])
    for (const k of ['never', 'otherName', 'namedNoRetriesLeft'] as const) {
      expect(o.error(cases[k].taskId)).toMatchObject({ code: 'TASK_ERROR', data: { remoteName: 'ValueError' } })
    }
    // A system failure is retried whatever retryExceptions says.
    const system = o.submit({ retryExceptions: false })
    const t = o.push(system.taskId)
    o.tm.completed(
      t,
      {
        taskId: t.taskId,
        attempt: 0,
        ok: false,
        error: { name: 'WorkerCrashedError', code: 'WORKER_CRASHED', message: 'x' },
        userError: false,
      },
      o.node,
      false,
    )
    expect(o.tm.get(system.taskId)?.attempt).toBe(1)
    // The retried one then succeeds with its second attempt's value.
    const again = o.push(cases.always.taskId)
    expect(again.attempt).toBe(1)
    o.tm.completed(again, ok(again), o.node, false)
    expect(o.value(cases.always.taskId)).toBe(1)
  })

  it('fails a task whose result has more or fewer values than numReturns with a ValidationError', () => {
    const o = owner()
    const two = o.submit({ numReturns: 2 })
    const t = o.push(two.taskId)
    o.tm.completed(t, ok(t, 'only one'), o.node, false)
    for (const i of [1, 2]) {
      expect(o.error(two.taskId, i)).toMatchObject({ name: 'ValidationError', code: 'VALIDATION' })
      expect(o.error(two.taskId, i)?.message).toMatch(/returned 1 value\(s\) but numReturns is 2/)
    }
    expect(o.tm.pending).toBe(0)

    const none = o.submit({ numReturns: 0 })
    const n = o.push(none.taskId)
    o.tm.completed(n, ok(n, 'unexpected'), o.node, false)
    expect(o.tm.get(none.taskId)).toBeUndefined()
    expect(o.states(none.taskId).at(-1)).toBe('FAILED@0')
  })

  it('puts returns in the object table: inline values handed to resolvedOwned, registered ones to registered()', () => {
    const o = owner()
    const inline = o.submit({ numReturns: 2 })
    const t = o.push(inline.taskId)
    o.tm.completed(t, ok(t, 'a', 'b'), o.node, false)
    expect([o.value(inline.taskId, 1), o.value(inline.taskId, 2)]).toEqual(['a', 'b'])
    expect(o.said.resolved.map((v) => v.objectId)).toEqual([1, 2].map((i) => objectIdOf(inline.taskId as TaskId, i)))
    expect(o.states(inline.taskId)).toEqual(['PENDING_ARGS_AVAIL@0', 'PENDING_NODE_ASSIGNMENT@0', 'SUBMITTED_TO_WORKER@0', 'FINISHED@0'])

    const stored = o.submit()
    const s = o.push(stored.taskId)
    o.tm.completed(s, { taskId: stored.taskId, attempt: 0, ok: true, returns: [{ stored: 5_000_000 }] }, o.node, true)
    const id = objectIdOf(stored.taskId as TaskId, 1)
    expect(o.objects.peek(id)).toMatchObject({ size: 5_000_000, locations: [o.node] })
    expect(o.said.registered).toEqual([id])
    expect(o.said.resolved).toHaveLength(2)
  })

  it('cancels a queued task: it leaves its queue and its returns hold TaskCancelledError', () => {
    const o = owner()
    const [a, b, c] = [o.submit(), o.submit(), o.submit()]
    expect(o.tm.cancel(b.taskId, false)).toBe(true)
    expect(o.scheduling.queue.map((t) => t.taskId)).toEqual([a.taskId, c.taskId])
    expect(o.scheduling.cancelled).toEqual([])
    expect(o.error(b.taskId)).toMatchObject({ name: 'TaskCancelledError', code: 'TASK_CANCELLED', data: { taskId: b.taskId } })
    expect(o.tm.get(b.taskId)).toBeUndefined()
    // Cancelled twice, or a task that is not (or no longer) pending here: false, nothing else happens.
    expect(o.tm.cancel(b.taskId, false)).toBe(false)
    expect(o.tm.cancel(newTaskId(JOB), false)).toBe(false)
  })

  it("cancels a pushed task through its lease's node (force passed on), and a waiting one is never queued", () => {
    const o = owner()
    const running = o.submit()
    const lease = 'cd'.repeat(16)
    o.push(running.taskId, lease)
    expect(o.tm.cancel(running.taskId, true)).toBe(true)
    expect(o.scheduling.cancelled).toEqual([{ taskId: running.taskId, force: true, leaseId: lease }])
    expect(o.error(running.taskId)?.code).toBe('TASK_CANCELLED')

    const dep = o.submit()
    const waiting = o.submit({ args: [{ ref: objectIdOf(dep.taskId as TaskId, 1) }] })
    expect(o.tm.cancel(waiting.taskId, false)).toBe(true)
    expect(o.error(waiting.taskId)?.code).toBe('TASK_CANCELLED')
    const d = o.push(dep.taskId)
    o.tm.completed(d, ok(d), o.node, false)
    expect(o.scheduling.queue).toEqual([])
    expect(o.scheduling.cancelled).toHaveLength(1)
  })

  it('a pushed actor call once cancelled never goes again, however its attempt ends (its place in the order is gone)', () => {
    const o = owner()
    o.tm.actorCalls = o.scheduling
    const call = { ...actorCallFields(newActorId(JOB)), maxRetries: 2 }
    const [answered, died, refused, ran] = [o.submit(call), o.submit(call), o.submit(call), o.submit(call)]
    const pushed = [answered, died, refused, ran].map((s) => o.push(s.taskId))
    for (const s of [answered, died, refused, ran]) expect(o.tm.cancel(s.taskId, false)).toBe(true)
    // Nothing ends before the node answers: a call that started runs to its end.
    expect(o.error(answered.taskId)).toBeUndefined()
    const [a, d, r, x] = pushed as [OwnedTask, OwnedTask, OwnedTask, OwnedTask]
    // Its node dropped it before it started (a system error, which would otherwise be retried).
    const dropped: WireError = { name: 'TaskCancelledError', code: 'TASK_CANCELLED', message: 'cancelled before it started' }
    o.tm.completed(a, { taskId: a.taskId, attempt: 0, ok: false, error: dropped, userError: false }, o.node, false)
    expect(o.error(answered.taskId)?.code).toBe('TASK_CANCELLED')
    // Its actor restarted meanwhile (the cancel went to the old incarnation): it fails with why, and is not run again.
    o.tm.attemptFailed(d, { name: 'ActorDiedError', code: 'ACTOR_DIED', message: 'died' }, false)
    expect(o.error(died.taskId)?.code).toBe('ACTOR_DIED')
    // Its node refused it (the actor had moved): it never ran, and ends cancelled.
    o.tm.requeue(r)
    expect(o.error(refused.taskId)?.code).toBe('TASK_CANCELLED')
    // It had started: its result stands.
    o.tm.completed(x, ok(x, 'v'), o.node, false)
    expect(o.value(ran.taskId)).toBe('v')
    expect(pushed.map((t) => t.attempt)).toEqual([0, 0, 0, 0])
    expect(o.scheduling.queue).toEqual([])
    expect(o.tm.pending).toBe(0)
  })

  it('a failed task stays failed: a later failure of it changes nothing', () => {
    const o = owner()
    const s = o.submit()
    const t = o.push(s.taskId)
    o.tm.cancel(s.taskId, false)
    const resolved = o.said.resolved.length
    o.tm.fail(t, { name: 'Error', code: 'TASK_ERROR', message: 'late' })
    expect(o.tm.abort(s.taskId, { name: 'Error', code: 'TASK_ERROR', message: 'late' })).toBe(false)
    expect(o.error(s.taskId)?.code).toBe('TASK_CANCELLED')
    expect(o.said.resolved).toHaveLength(resolved)
    expect(t.phase).toBe('done')
    expect(o.scheduling.queue).toEqual([])
  })

  it('a task refused on its way fails at once with the reason, and is never queued', () => {
    const o = owner()
    const s = o.submit({}, { name: 'ValidationError', code: 'VALIDATION', message: 'too big' })
    expect(o.error(s.taskId)?.message).toBe('too big')
    expect(o.scheduling.queue).toEqual([])
    expect(o.tm.pending).toBe(0)
  })
})
