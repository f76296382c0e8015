import { beforeAll, describe, expect, it } from 'vitest'
import type { Mesh, ObjectRef } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { useJobPerTest, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_reference_counting_standalone.py: reference counting cases that need a cluster of
// their own in Ray. Here they share one 2 × 2-CPU cluster, each case running as a job of its own (a fresh driver,
// closed after it); the node-failure case comes first and kills a node added for it.

const MiB = 1024 * 1024
/** Long enough for anything that should happen here: a case waiting on what never comes fails by it. */
const WAIT = { timeout: 15_000 }

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
/** A driver of its own for one case, as Ray starts a fresh instance for each. */
const job = useJobPerTest(cluster)

/** Ray's `memory_summary(stats_only=True)` "Plasma memory usage": bytes in the plasma stores of alive nodes. */
async function plasmaBytes(): Promise<number> {
  const nodes = await mesh.state.listNodes({ filters: [['state', '=', 'ALIVE']] })
  return nodes.reduce((n, r) => n + r.objectStoreUsed, 0)
}

describe('test_reference_counting_standalone.py', () => {
  // Objects held by actors are freed when the actors' node dies and when they are killed. First, so that it counts
  // plasma usage on a cluster nothing else has used yet, as Ray's fresh cluster; it kills a node added for it.
  it('test_reference_counting_standalone.py::test_object_unpin', async () => {
    const m = await job()
    // Ray: a head node without CPUs and two 1-CPU worker nodes; here one existing node and one added for the case.
    const [node0] = cluster().nodes
    const node1 = await cluster().addNode(1)

    const ObjectsHolder = m.remote(
      class ObjectsHolder {
        tenMbObjs: ObjectRef[] = []
        oneMbObjs: ObjectRef[] = []
        async put10Mb() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          this.tenMbObjs.push(await shoal.put(new Uint8Array(10 * 1024 * 1024).fill(1)))
        }
        async put1Mb() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          this.oneMbObjs.push(await shoal.put(new Uint8Array(1024 * 1024).fill(1)))
        }
        pop10Mb() {
          if (this.tenMbObjs.length === 0) return false
          this.tenMbObjs.pop()
          return true
        }
        pop1Mb() {
          if (this.oneMbObjs.length === 0) return false
          this.oneMbObjs.pop()
          return true
        }
      },
    )

    // Counted from what the stores hold now (nothing, on a fresh cluster).
    const base = await plasmaBytes()
    let last = 0
    const checkMemory = (mb: number) =>
      waitForCondition(
        async () => {
          await cluster().collectGarbage()
          last = Math.round(((await plasmaBytes()) - base) / MiB)
          return last === mb
        },
        `plasma memory usage ${mb} MiB`,
        20_000,
      ).catch((e: Error) => {
        throw new Error(`${e.message} (it is ${last} MiB)`)
      })

    // The driver puts 11 MiB.
    const oneMbArrays: ObjectRef[] = []
    const tenMbArrays: ObjectRef[] = []
    oneMbArrays.push(await m.put(new Uint8Array(MiB).fill(1)))
    tenMbArrays.push(await m.put(new Uint8Array(10 * MiB).fill(1)))
    await checkMemory(11)

    // Pop the 1 MiB array.
    oneMbArrays.pop()
    await checkMemory(10)
    // Pop the 10 MiB one.
    tenMbArrays.pop()
    await checkMemory(0)

    // 11 MiB for each actor.
    const actorOnNode1 = ObjectsHolder.options({ schedulingStrategy: { nodeId: node0?.nodeId ?? '', soft: false } }).remote()
    const actorOnNode2 = ObjectsHolder.options({ schedulingStrategy: { nodeId: node1.nodeId, soft: false } }).remote()
    await m.get(actorOnNode1.put1Mb.remote(), WAIT)
    await m.get(actorOnNode1.put10Mb.remote(), WAIT)
    await m.get(actorOnNode2.put1Mb.remote(), WAIT)
    await m.get(actorOnNode2.put10Mb.remote(), WAIT)
    await checkMemory(22)

    // Actor 1 keeps 10 MiB, actor 2 keeps 1 MiB.
    await m.get(actorOnNode1.pop1Mb.remote(), WAIT)
    await m.get(actorOnNode2.pop10Mb.remote(), WAIT)
    await checkMemory(11)

    // The second node dies, and actor 2 with it.
    await node1.close()
    await waitForCondition(
      async () => (await mesh.state.listNodes({ filters: [['nodeId', '=', node1.nodeId]] }))[0]?.state === 'DEAD',
      'the node to be dead',
    )
    await checkMemory(10)

    // Actor 1 is killed: its object is freed.
    await m.kill(actorOnNode1)
    await checkMemory(0)
  })

  // Ray's `inline_args=False` variant sets max_direct_call_object_size=0, which Shoal does not expose: one case.
  it('test_reference_counting_standalone.py::test_inlined_nested_refs', async () => {
    const m = await job()
    const Actor = m.remote(
      class Actor {
        nested() {
          const shoal = (self as unknown as { shoal: Mesh }).shoal
          return shoal.put('x')
        }
      },
    )
    const nestedNested = m.remote(function nestedNested(a: { nested: { remote(): ObjectRef } }) {
      return a.nested.remote()
    })
    const foo = m.remote(async function foo(ref: ObjectRef) {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      await new Promise((r) => setTimeout(r, 200)) // time.sleep(1)
      return shoal.get(ref)
    })

    const a = Actor.remote()
    let nestedNestedRef: ObjectRef | undefined = nestedNested.remote(a)
    // The nested ref's value comes straight from its owner.
    let nestedRef: ObjectRef | undefined = (await m.get(nestedNestedRef, WAIT)) as ObjectRef
    nestedNestedRef = undefined
    const x = foo.remote(nestedRef)
    nestedRef = undefined
    // (Python frees on `del`: collect while foo still runs.)
    await cluster().collectGarbage()
    expect(await m.get(x, WAIT)).toBe('x')
  })

  // https://github.com/ray-project/ray/issues/17553: refs nested inside a value passed on by a task stay alive.
  // Ray passes them inside a lambda's closure; a JS task can take no function, so they travel inside an object.
  it('test_reference_counting_standalone.py::test_return_nested_ids', async () => {
    const m = await job()
    const test = m.remote(async function test() {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const echo = shoal.remote(function echo(fn: { value: unknown }) {
        return fn.value
      })
      const createNested = shoal.remote(async function createNested() {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        const refs = []
        for (let i = 0; i < 10; i++) refs.push(await shoal.put(new Float64Array(16 * 1024).fill(Math.random())))
        return { blocks: refs } // Nested(refs)
      })
      let ref: ObjectRef | undefined = createNested.remote()
      let result1: { blocks: ObjectRef[] } | undefined = (await shoal.get(ref)) as { blocks: ObjectRef[] }
      ref = undefined
      const result = echo.remote({ value: result1 })
      result1 = undefined
      // time.sleep(5): let the dropped refs go (this worker collects its garbage).
      ;(globalThis as { gc?: () => void }).gc?.()
      await new Promise((r) => setTimeout(r, 500))
      const block = ((await shoal.get(result)) as { blocks: ObjectRef[] }).blocks[0] as ObjectRef
      return ((await shoal.get(block)) as Float64Array).length
    })
    expect(await m.get(test.remote(), WAIT)).toBe(16 * 1024)
  })
})
