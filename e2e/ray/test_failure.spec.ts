import { beforeAll, describe, expect, it } from 'vitest'
import { ActorDiedError, type ActorHandle, GetTimeoutError, type Mesh, type ObjectRef, ShoalError, TaskError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { killWorker, rejection, type SignalActor, signalActor, useJobPerTest, waitForCondition } from './helpers.ts'

// Ported from Ray's python/ray/tests/test_failure.py. Ray's ray_start_regular is one node; here 2 nodes × 2 CPUs.
let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})

// Each test runs in a job of its own, ended after it: ending a job cancels its tasks and kills its actors, so what a
// test leaves hanging (a worker that died unnoticed, a call that never returns) does not hold CPUs in the next one.
const newJob = useJobPerTest(cluster, { waitForFreeCpus: () => mesh })

const T = 10_000 // every get is bounded: a hang fails the test instead of the file

describe('test_failure.py', () => {
  it('test_failure.py::test_get_throws_quickly_when_found_exception', async () => {
    const m = await newJob()
    const Actor = m.remote(
      class Actor {
        badFunc1() {
          throw new Error('Test function intentionally failed.')
        }
        async badFunc2() {
          // Ray's os._exit(0): the worker process ends in the middle of the call.
          self.close()
          await new Promise(() => {})
        }
        async slowFunc(signal: ActorHandle<SignalActor>) {
          await (self as unknown as { shoal: Mesh }).shoal.get(signal.wait.remote())
        }
      },
    )

    const signal1 = signalActor(m)
    const actor = Actor.options({ maxConcurrency: 2 }).remote()
    const err1 = await rejection(m.get([actor.badFunc1.remote(), actor.slowFunc.remote(signal1)], { timeout: T }))
    expect(err1).toBeInstanceOf(TaskError)
    await m.get(signal1.send.remote(), { timeout: T })

    const signal2 = signalActor(m)
    const actor2 = Actor.options({ maxConcurrency: 2 }).remote()
    const err2 = await rejection(m.get([actor2.badFunc2.remote(), actor2.slowFunc.remote(signal2)], { timeout: T }))
    expect(err2).toBeInstanceOf(ActorDiedError)
    await m.get(signal2.send.remote(), { timeout: T })
  })

  it('test_failure.py::test_failed_actor_init', async () => {
    const m = await newJob()
    const errorMessage1 = 'actor constructor failed'
    const FailedActor = m.remote(
      class FailedActor {
        constructor() {
          throw new Error('actor constructor failed')
        }
        failMethod() {
          throw new Error('actor method failed')
        }
      },
    )
    const a = FailedActor.remote()
    // Incoming methods get the exception of the creation task.
    const err = await rejection(m.get(a.failMethod.remote(), { timeout: T }))
    expect(err).toBeInstanceOf(ActorDiedError)
    expect(err?.message).toContain(errorMessage1)
  })

  it('test_failure.py::test_worker_dying', async () => {
    const m = await newJob()
    // A remote function that kills the worker that runs it (Ray: eval("exit()")).
    const f = m
      .remote(async function f() {
        self.close()
        await new Promise(() => {})
      })
      .options({ maxRetries: 0 })
    const err = await rejection(m.get(f.remote(), { timeout: T }))
    expect(err?.name).toBe('WorkerCrashedError')
    expect(err?.code).toBe('WORKER_CRASHED')
  })

  it('test_failure.py::test_actor_worker_dying', async () => {
    const m = await newJob()
    const Actor = m.remote(
      class Actor {
        async kill() {
          self.close()
          await new Promise(() => {})
        }
      },
    )
    const consume = m.remote(function consume(_x: unknown) {})

    const a = Actor.remote()
    const { ready } = await m.wait([a.kill.remote()], { timeout: 5000 })
    const [obj] = ready
    expect(obj).toBeDefined()
    expect(await rejection(m.get(obj as ObjectRef, { timeout: T }))).toBeInstanceOf(ActorDiedError)
    // Ray raises RayTaskError(ActorDiedError), which is also an ActorDiedError: a task whose argument failed fails with
    // the argument's error.
    expect(await rejection(m.get(consume.remote(obj as ObjectRef), { timeout: T }))).toBeInstanceOf(ActorDiedError)
  })

  it('test_failure.py::test_actor_worker_dying_future_tasks', async () => {
    const m = await newJob()
    const Actor = m.remote(
      class Actor {
        getpid() {
          return (self as unknown as { shoalContext: { workerId: string } }).shoalContext.workerId
        }
        async sleep() {
          await new Promise((r) => setTimeout(r, 200))
        }
      },
    )
    const a = Actor.options({ maxRestarts: 0 }).remote()
    const pid = await m.get(a.getpid.remote(), { timeout: T })
    const tasks1 = Array.from({ length: 10 }, () => a.sleep.remote())
    await killWorker(cluster(), { workerId: pid })
    const tasks2 = Array.from({ length: 10 }, () => a.sleep.remote())
    for (const obj of [...tasks1, ...tasks2]) {
      const err = await rejection(m.get(obj, { timeout: T }))
      expect(err).toBeInstanceOf(ShoalError)
      expect(err).not.toBeInstanceOf(GetTimeoutError)
    }
  })

  // Ray passes the function to run (raise, or sleep forever) to the actor; a function is not a value here, so a word
  // says which. Ray makes 10 actors; 4 here, holding no CPU.
  it('test_failure.py::test_mixed_hanging_and_exception_should_not_hang', async () => {
    const m = await newJob()
    const Actor = m.remote(
      class Actor {
        id: number
        constructor(id: number) {
          this.id = id
        }
        async execute(fn: 'printAndRaiseError' | 'printAndSleepForever') {
          console.log(this.id)
          if (fn === 'printAndRaiseError') {
            class ValueError extends Error {
              override name = 'ValueError'
            }
            throw new ValueError()
          }
          while (true) await new Promise((r) => setTimeout(r, 3600_000))
        }
      },
    )
    const actors = Array.from({ length: 4 }, (_, i) => Actor.options({ numCpus: 0 }).remote(i))
    const refs = actors.slice(0, 2).map((a) => a.execute.remote('printAndRaiseError'))

    const err1 = await rejection(m.get(refs, { timeout: T }))
    expect(err1).toBeInstanceOf(TaskError)
    expect(err1?.remoteName).toBe('ValueError')

    refs.push(...actors.slice(2).map((a) => a.execute.remote('printAndSleepForever')))
    const err2 = await rejection(m.get(refs, { timeout: T }))
    expect(err2).toBeInstanceOf(TaskError)
    expect(err2?.remoteName).toBe('ValueError')
  })

  // Ray: `bar` divides by zero (ZeroDivisionError); `foo` gets bar's result. The error foo's caller sees is both a
  // RayTaskError and the ZeroDivisionError. In JS 1/0 is Infinity, so bar throws a RangeError.
  it('test_failure.py::test_exception_chain', async () => {
    const m = await newJob()
    const foo = m.remote(async function foo() {
      const shoal = (self as unknown as { shoal: Mesh }).shoal
      const bar = shoal.remote(function bar() {
        throw new RangeError('division by zero')
      })
      return shoal.get(bar.remote())
    })
    const err = await rejection(m.get(foo.remote(), { timeout: T }))
    expect(err).toBeInstanceOf(TaskError)
    expect(err?.message).toContain('division by zero')
    expect(err?.cause).toMatchObject({ name: 'RangeError', message: 'division by zero' })
  })

  // Ray: an exception holding a threading.Lock cannot be pickled; get raises RayTaskError whose cause is a RayError
  // saying it "isn't serializable". Here the error holds a function, which no value encoding can carry.
  it('test_failure.py::test_unserializable_exception', async () => {
    const m = await newJob()
    const func = m.remote(function func() {
      class UnserializableException extends Error {
        override name = 'UnserializableException'
        lock = () => {}
      }
      throw new UnserializableException()
    })
    const err = await rejection(m.get(func.remote(), { timeout: T }))
    expect(err).toBeInstanceOf(TaskError)
    expect(err?.cause).toBeInstanceOf(Error)
    expect(String((err?.cause as Error | undefined)?.message)).toMatch(/serializ/i)
  })

  // Ray: a user exception class that cannot be subclassed is raised as RayTaskError only, with the user's exception as
  // `cause`. In JS no rebuilt error is an instance of the user's class: `cause` carries its name and message.
  it('test_failure.py::test_final_user_exception', async () => {
    const m = await newJob()
    class MyFinalException extends Error {
      override name = 'MyFinalException'
    }
    expect(() => {
      throw new MyFinalException('MyFinalException from driver')
    }).toThrow(MyFinalException)

    const func = m.remote(function func() {
      class MyFinalException extends Error {
        override name = 'MyFinalException'
      }
      throw new MyFinalException('MyFinalException from task')
    })
    const err = await rejection(m.get(func.remote(), { timeout: T }))
    expect(err).toBeInstanceOf(TaskError)
    expect(err?.cause).toBeInstanceOf(Error)
    expect((err?.cause as Error | undefined)?.name).toBe('MyFinalException')
    expect(String((err?.cause as Error | undefined)?.message)).toBe('MyFinalException from task')
  })

  // Last: it kills a node. Ray's head node has no CPU, so the actor lands on the one worker node, which is removed and
  // replaced; here the actor is pinned (softly) to a fresh node, and the two other nodes are there for its restart.
  it('test_failure.py::test_actor_failover_with_bad_network', async () => {
    const m = await newJob()
    const node = await cluster().addNode(1)
    const Actor = m.remote(
      class Actor {
        getpid() {
          return (self as unknown as { shoalContext: { workerId: string } }).shoalContext.workerId
        }
        async neverReturn() {
          while (true) await new Promise((r) => setTimeout(r, 1000))
        }
      },
    )
    // The actor should be placed on the new node.
    const actor = Actor.options({ maxRestarts: 1, schedulingStrategy: { nodeId: node.nodeId, soft: true } }).remote()
    await m.get(actor.getpid.remote(), { timeout: T })

    // A never-returning call: its result is not ready.
    const obj1 = actor.neverReturn.remote()
    expect(await rejection(m.get(obj1, { timeout: 300 }))).toBeInstanceOf(GetTimeoutError)

    // Kill the actor's node: the call fails, and the actor restarts on another node.
    await node.close()
    expect(await rejection(m.get(obj1, { timeout: T }))).toBeInstanceOf(ActorDiedError)

    await waitForCondition(async () => {
      const [row] = await mesh.state.listActors({ filters: [['actorId', '=', actor.actorId]] })
      return row?.state === 'ALIVE' && row.restarts === 1
    }, 'the actor to be ALIVE again after one restart')

    // A call on the new instance succeeds.
    await m.get(actor.getpid.remote(), { timeout: T })
  })
})
