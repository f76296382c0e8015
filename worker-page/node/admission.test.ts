import { createHmac } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import { type Lease, leaseSigningText, type PeerMessageOf } from '../../sdk/protocol/index.ts'
import type { LeaseCheck } from '../lease-verifier.ts'
import { LeaseAdmission, type LeaseSessions, MAX_QUEUED_PER_LEASE } from './admission.ts'
import { endOfTurn, fn, lease, NODE, nodeParts, OWNER, task } from './node.fixture.ts'

const f = fn('f')
const push = (l: Lease, n = 1): PeerMessageOf<'push'> => ({
  type: 'push',
  lease: l,
  namespace: 'ns',
  tasks: Array.from({ length: n }, (_, i) => task(`t${i}`, f)),
})

/** Sessions kept in a map; `here` says whether what the leases are for is still here. */
function sessions(what = 'lease') {
  const opened = new Map<string, { lease: Lease }>()
  const s: LeaseSessions<{ lease: Lease }> & { opened: typeof opened; isHere: boolean } = {
    what,
    opened,
    isHere: true,
    here: () => s.isHere,
    notHere: (l) => ({ code: 'GONE', why: `${l.leaseId} is gone` }),
    known: (l) => opened.get(l.leaseId),
    open: (l) => {
      const session = { lease: l }
      opened.set(l.leaseId, session)
      return session
    },
  }
  return s
}

/** A check whose answers the test gives, one per lease shown. */
function heldCheck() {
  const waiting: ((ok: boolean) => void)[] = []
  const check: LeaseCheck & { answer(ok: boolean): void; asked: number } = {
    asked: 0,
    verify: () => {
      check.asked++
      return new Promise<boolean>((resolve) => waiting.push(resolve))
    },
    answer: (ok) => waiting.shift()?.(ok),
  }
  return check
}

/** The refusals sent back, as `code: message`, one per task. */
const refusals = (p: ReturnType<typeof nodeParts>) =>
  p.results().map((r) => (r.ok ? 'ok' : `${r.error.code}: ${r.error.message.replace(`node ${NODE} refused the tasks: `, '')}`))

describe('LeaseAdmission: one admission for leased tasks and actor calls', () => {
  it('takes a push only from its lease’s owner, under a lease signed for this node', async () => {
    const p = nodeParts()
    const s = sessions()
    const admitted: unknown[] = []
    p.admission.admit('someone-else', push(lease('L1')), 'direct', s, (x) => admitted.push(x))
    p.admission.admit(OWNER, push(lease('L2', { sig: 'forged' })), 'direct', s, (x) => admitted.push(x))
    await endOfTurn()
    expect(admitted).toEqual([])
    expect(s.opened.size).toBe(0)
    expect(refusals(p)).toEqual([
      `LEASE_INVALID: the lease belongs to ${OWNER}, not someone-else`,
      'LEASE_INVALID: the lease is not signed by the coordinator for this node',
    ])
    // The refusal goes back the way the push came, to whoever sent it.
    expect(p.toPeers.map((m) => [m.to, m.route])).toEqual([
      ['someone-else', 'direct'],
      [OWNER, 'direct'],
    ])
  })

  it('names the kind of lease that is not signed', async () => {
    const p = nodeParts()
    p.admission.admit(OWNER, push(lease('L1', { sig: 'forged' })), 'relay', sessions('actor lease'), () => {})
    await endOfTurn()
    expect(refusals(p)).toEqual(['LEASE_INVALID: the actor lease is not signed by the coordinator for this node'])
    expect(p.toPeers[0]?.route).toBe('relay')
  })

  it('a known lease is taken in the same turn (a cancel right behind its push finds its tasks); another signature is refused', async () => {
    const p = nodeParts()
    const s = sessions()
    const admitted: { lease: Lease }[] = []
    p.admission.admit(OWNER, push(lease('L1')), 'direct', s, (x) => admitted.push(x))
    await endOfTurn()
    expect(admitted.length).toBe(1)
    p.admission.admit(OWNER, push(lease('L1')), 'direct', s, (x) => admitted.push(x))
    expect(admitted.length).toBe(2) // no await between: taken synchronously
    expect(admitted[1]).toBe(admitted[0])
    p.admission.admit(OWNER, push(lease('L1', { sig: 'sig-other' })), 'direct', s, (x) => admitted.push(x))
    await endOfTurn()
    expect(admitted.length).toBe(2)
    expect(refusals(p)).toEqual(['LEASE_INVALID: the lease does not match the one first shown'])
  })

  it('two pushes of a lease first shown while its signature is checked open one session', async () => {
    const check = heldCheck()
    const p = nodeParts({ verifier: check })
    const s = sessions()
    const admitted: { lease: Lease }[] = []
    p.admission.admit(OWNER, push(lease('L1')), 'direct', s, (x) => admitted.push(x))
    p.admission.admit(OWNER, push(lease('L1')), 'relay', s, (x) => admitted.push(x))
    expect(check.asked).toBe(2)
    check.answer(true)
    check.answer(true)
    await endOfTurn()
    expect(admitted.length).toBe(2)
    expect(admitted[0]).toBe(admitted[1])
    expect(s.opened.size).toBe(1)
  })

  it('an ended lease, or one whose session is gone, is refused as the session says — also when it ended while its signature was checked', async () => {
    const check = heldCheck()
    const p = nodeParts({ verifier: check })
    const s = sessions()
    const admitted: unknown[] = []
    p.admission.end('L1')
    p.admission.admit(OWNER, push(lease('L1')), 'direct', s, (x) => admitted.push(x))
    expect(check.asked).toBe(0) // refused before its signature is looked at
    p.admission.admit(OWNER, push(lease('L2')), 'direct', s, (x) => admitted.push(x))
    p.admission.end('L2')
    check.answer(true)
    p.admission.admit(OWNER, push(lease('L3')), 'direct', s, (x) => admitted.push(x))
    s.isHere = false
    check.answer(true)
    await endOfTurn()
    expect(admitted).toEqual([])
    expect(s.opened.size).toBe(0)
    expect(refusals(p)).toEqual(['GONE: L1 is gone', 'GONE: L2 is gone', 'GONE: L3 is gone'])
  })

  it('with no check and no key nothing is taken; the coordinator’s key (its welcome) makes signed leases good', async () => {
    const sent: unknown[] = []
    const admission = new LeaseAdmission(NODE, undefined, (_to, msg) => sent.push(msg))
    const s = sessions()
    const key = '11'.repeat(32)
    const nodeId = 'ab'.repeat(28)
    const unsigned = { ...lease('L1'), nodeId }
    const signed = { ...unsigned, sig: createHmac('sha256', Buffer.from(key, 'hex')).update(leaseSigningText(unsigned)).digest('hex') }
    const admitted: unknown[] = []
    admission.admit(OWNER, push(signed), 'direct', s, (x) => admitted.push(x))
    expect(sent.length).toBe(1)
    const keyed = new LeaseAdmission(nodeId, undefined, (_to, msg) => sent.push(msg))
    keyed.keyFrom(key)
    keyed.admit(OWNER, push(signed), 'direct', s, (x) => admitted.push(x))
    keyed.admit(OWNER, push({ ...signed, leaseId: 'L2' }), 'direct', s, (x) => admitted.push(x))
    // Web Crypto answers on another thread.
    await vi.waitFor(() => {
      expect(admitted.length).toBe(1)
      expect(sent.length).toBe(2) // the first push, before the key; the lease not signed with it
    })
  })

  it(`refuses a push that would put more than ${MAX_QUEUED_PER_LEASE} tasks in waiting under one lease`, async () => {
    const p = nodeParts()
    const msg = push(lease('L1'), 2)
    expect(p.admission.refuseOverflow(OWNER, msg, 'direct', MAX_QUEUED_PER_LEASE - 2, 'tasks queued')).toBe(false)
    expect(p.admission.refuseOverflow(OWNER, msg, 'direct', MAX_QUEUED_PER_LEASE - 1, 'tasks queued')).toBe(true)
    await endOfTurn()
    expect(refusals(p)).toEqual([
      `LEASE_INVALID: more than ${MAX_QUEUED_PER_LEASE} tasks queued under one lease`,
      `LEASE_INVALID: more than ${MAX_QUEUED_PER_LEASE} tasks queued under one lease`,
    ])
  })
})
