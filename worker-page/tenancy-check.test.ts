import { describe, expect, it } from 'vitest'
import type { ClientMessage } from '../sdk/protocol/index.ts'
import { TenancyCheck } from './tenancy-check.ts'

const JOB = '0a000000'
const SAME_TENANT = '0b000000'
const OTHER_TENANT = '0c000000'
const obj = (job: string, n: number) => `${n.toString(16).padStart(40, '0')}${job}00000001`

describe('TenancyCheck: a pushed task takes only its own tenant’s objects', () => {
  it('allows its own job’s objects without asking; asks the coordinator once per pair of jobs for others', async () => {
    const sent: Extract<ClientMessage, { type: 'may-use' }>[] = []
    const check = new TenancyCheck((m) => void sent.push(m as never))
    expect(await check.foreign(JOB, [obj(JOB, 1), obj(JOB, 2)])).toEqual([])
    expect(sent).toEqual([])
    const pending = check.foreign(JOB, [obj(SAME_TENANT, 1), obj(OTHER_TENANT, 1), obj(SAME_TENANT, 2)])
    expect(sent.map((m) => m.objectJobIds)).toEqual([[SAME_TENANT], [OTHER_TENANT]])
    // The coordinator answers which jobs share the tenant.
    check.onReply(sent[0]?.reqId as number, true, [SAME_TENANT])
    check.onReply(sent[1]?.reqId as number, true, [])
    expect(await pending).toEqual([obj(OTHER_TENANT, 1)])
    // Remembered: no more questions for these pairs.
    expect(await check.foreign(JOB, [obj(SAME_TENANT, 3), obj(OTHER_TENANT, 3)])).toEqual([obj(OTHER_TENANT, 3)])
    expect(sent.length).toBe(2)
    // Replies it did not ask for are not its own.
    expect(check.onReply(999, true, [OTHER_TENANT])).toBe(false)
  })

  it('a refused question, or a connection that ended before the answer, allows nothing', async () => {
    const sent: Extract<ClientMessage, { type: 'may-use' }>[] = []
    const check = new TenancyCheck((m) => void sent.push(m as never))
    const refused = check.foreign(JOB, [obj(SAME_TENANT, 1)])
    check.onReply(sent[0]?.reqId as number, false, undefined)
    expect(await refused).toEqual([obj(SAME_TENANT, 1)])
    const unanswered = check.foreign(JOB, [obj(OTHER_TENANT, 1)])
    check.closed()
    expect(await unanswered).toEqual([obj(OTHER_TENANT, 1)])
  })
})
