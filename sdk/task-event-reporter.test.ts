import { afterEach, describe, expect, it, vi } from 'vitest'
import type { ClientMessage } from './protocol/index.ts'
import { TaskEventReporter } from './task-event-reporter.ts'

type Sent = Extract<ClientMessage, { type: 'task-events' }>
const taskId = (i: number) => i.toString(16).padStart(48, '0')

describe('TaskEventReporter: a bounded buffer, as Ray workers keep theirs', () => {
  afterEach(() => vi.useRealTimers())

  it('keeps the newest events past its bound, and says how many it dropped', () => {
    const sent: Sent[] = []
    const r = new TaskEventReporter((m) => sent.push(m as Sent), 100)
    for (let i = 0; i < 150; i++) r.state(taskId(i), 0, 'PENDING_NODE_ASSIGNMENT')
    r.flush()
    expect(sent.flatMap((m) => m.events).map((e) => e.taskId)).toEqual(Array.from({ length: 100 }, (_, i) => taskId(i + 50)))
    expect(sent.reduce((n, m) => n + (m.dropped ?? 0), 0)).toBe(50)
    r.close()
  })

  it('keeps order and what each event carries across growing, wrapping and draining its buffer', () => {
    const sent: Sent[] = []
    const r = new TaskEventReporter((m) => sent.push(m as Sent), 100)
    const extra = { nodeId: 'ab'.repeat(28) }
    for (let i = 0; i < 80; i++) r.state(taskId(i), i % 3, i % 2 ? 'RUNNING' : 'FINISHED', i === 7 ? extra : undefined)
    r.flush()
    const first = sent.flatMap((m) => m.events)
    expect(first.map((e) => e.taskId)).toEqual(Array.from({ length: 80 }, (_, i) => taskId(i)))
    expect(first[7]).toMatchObject({ attempt: 1, state: 'RUNNING', nodeId: extra.nodeId })
    expect(first[8]).toEqual({ taskId: taskId(8), attempt: 2, state: 'FINISHED', time: expect.any(Number) })
    sent.length = 0
    for (let i = 0; i < 230; i++) r.state(taskId(1000 + i), 0, 'PENDING_NODE_ASSIGNMENT')
    r.flush()
    expect(sent.flatMap((m) => m.events).map((e) => e.taskId)).toEqual(Array.from({ length: 100 }, (_, i) => taskId(1130 + i)))
    expect(sent.reduce((n, m) => n + (m.dropped ?? 0), 0)).toBe(130)
    r.close()
  })

  it('sends on a timer, at most 20,000 events a tick in messages of at most 5,000, the rest on the next ticks', async () => {
    vi.useFakeTimers()
    const sent: Sent[] = []
    const r = new TaskEventReporter((m) => sent.push(m as Sent))
    for (let i = 0; i < 45_000; i++) r.state(taskId(i), 0, 'PENDING_NODE_ASSIGNMENT')
    expect(sent).toEqual([]) // nothing in the submitting turn: a huge loop costs the buffer only
    await vi.advanceTimersByTimeAsync(100)
    expect(sent.map((m) => m.events.length)).toEqual([5000, 5000, 5000, 5000])
    await vi.advanceTimersByTimeAsync(200)
    expect(sent.reduce((n, m) => n + m.events.length, 0)).toBe(45_000)
    expect(sent.every((m) => m.events.length <= 5000 && !m.dropped)).toBe(true)
    r.close()
  })
})
