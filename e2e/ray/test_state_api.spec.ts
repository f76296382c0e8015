import { beforeAll, describe, expect, it } from 'vitest'
import { type ActorHandle, type Mesh, type ObjectRef, TaskError, type TaskRow, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { useJobPerTest, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_state_api.py (the list_* cases of its newest revision, plus test_filter from an
// earlier one) and python/ray/tests/test_state_api_2.py (merged here: one case). Ray starts each case in a fresh
// instance and lists the whole cluster; here the cases share one 2 × 2-CPU cluster and each runs as a job of its own
// (a fresh driver, closed after it), so "the cluster's tasks" are that job's. The node-death case comes last.

/** Long enough for anything that should happen here: a case waiting on what never comes fails by it. */
const WAIT = { timeout: 15_000 }
const isHex = (s: unknown, len: number) => typeof s === 'string' && new RegExp(`^[0-9a-f]{${len}}$`).test(s)

let mesh: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  mesh = await cluster().connect()
})
/** A driver of its own for one case, as Ray's fixtures give each case its own `ray.init`. */
const job = useJobPerTest(cluster)
const nodeIds = () => cluster().nodes.map((n) => n.nodeId)
/** Ray's `get_task(ref or id)`: the rows of the task that makes `ref` (one per attempt). */
const getTask = (ref: ObjectRef | string) =>
  mesh.state.listTasks({ filters: [['taskId', '=', typeof ref === 'string' ? ref : ref.id.slice(0, 48)]] })
/** Ray's `verify_task_from_objectref`. */
function verifyTaskFromObjectref(task: TaskRow | undefined, jobId: string, tasks: TaskRow[]) {
  expect(task?.jobId).toBe(jobId)
  expect(task?.actorId).toBe(null)
  expect(tasks.some((t) => t.taskId === task?.taskId)).toBe(true)
}
const count = (tasks: TaskRow[], state: string) => tasks.filter((t) => String(t.state) === state).length
const sleepFn = async function sleep(ms: number) {
  await new Promise((r) => setTimeout(r, ms))
}

describe('test_state_api.py', () => {
  it('test_state_api.py::TestListActors::test_list_get_actors', async () => {
    const m = await job()
    const A = m.remote(class A {})
    const UnschedulableActor = m.remote(class UnschedulableActor {}).options({ numGpus: 1 })
    const a = A.remote()
    const b = UnschedulableActor.remote()

    await waitForCondition(async () => {
      // List.
      let actors = await m.state.listActors({ filters: [['actorId', '=', a.actorId]] })
      expect(actors).toHaveLength(1)
      expect(actors[0]?.state).toBe('ALIVE')
      expect(isHex(actors[0]?.actorId, 32)).toBe(true)
      expect(actors[0]?.actorId).toBe(a.actorId)
      expect(actors[0]?.jobId).toBe(m.jobId)
      expect(nodeIds()).toContain(actors[0]?.nodeId) // Ray: the (only) node's id

      // The second actor's node id is null: it is not scheduled.
      actors = await m.state.listActors({ filters: [['actorId', '=', b.actorId]] })
      expect(actors[0]?.nodeId).toBe(null)

      // Get (Ray's get_actor: the row by its id).
      for (const actor of await m.state.listActors({ filters: [['jobId', '=', m.jobId]] })) {
        const got = await m.state.listActors({ filters: [['actorId', '=', actor.actorId]] })
        expect(got[0]).toEqual(actor)
      }
      return true
    }, 'the actors to be listed')
  })

  it('test_state_api.py::TestListActors::test_list_actors_namespace', async () => {
    const m = await job()
    const A = m.remote(class A {})
    const namespace1 = `namespace_${crypto.randomUUID()}`
    const namespace2 = `namespace_${crypto.randomUUID()}`
    A.options({ namespace: namespace1, name: 'x' }).remote()
    A.options({ namespace: namespace2, name: 'y' }).remote()

    const actors = await m.state.listActors()
    const namespaces = new Map<string, number>()
    for (const actor of actors) namespaces.set(actor.namespace, (namespaces.get(actor.namespace) ?? 0) + 1)
    expect(namespaces.get(namespace1)).toBe(1)
    expect(namespaces.get(namespace2)).toBe(1)

    // Filter by namespace.
    const namespace1Actors = await m.state.listActors({ filters: [['namespace', '=', namespace1]] })
    expect(namespace1Actors).toHaveLength(1)
    expect(namespace1Actors[0]?.namespace).toBe(namespace1)
  })

  it('test_state_api.py::test_list_get_tasks', async () => {
    const m = await job()
    const jobId = m.jobId
    // Ray's instance has 2 CPUs, so two 1-CPU `f` run and the third waits; with 2 nodes × 2 CPUs each `f` takes 2.
    const f = m.remote(sleepFn).options({ numCpus: 2 })
    const g = m.remote(async function g(_dep: unknown) {
      await new Promise((r) => setTimeout(r, 30_000))
    })
    const impossible = m.remote(function impossible() {}).options({ numGpus: 1 })

    const fRefs = [0, 1].map((i) => f.options({ name: `f_${i}` }).remote(30_000))
    const gRef = g.remote(f.remote(30_000))
    const imRef = impossible.remote()

    await waitForCondition(async () => {
      let tasks = await m.state.listTasks({ filters: [['jobId', '=', jobId]] })
      expect(tasks).toHaveLength(5)
      for (const task of tasks) expect(task.jobId).toBe(jobId)
      for (const task of tasks) expect(task.actorId).toBe(null)

      // get_task by ObjectRef.
      for (const ref of fRefs) verifyTaskFromObjectref((await getTask(ref))[0], jobId, tasks)
      verifyTaskFromObjectref((await getTask(gRef))[0], jobId, tasks)
      verifyTaskFromObjectref((await getTask(imRef))[0], jobId, tasks)

      expect(count(tasks, 'SUBMITTED_TO_WORKER')).toBe(0)
      expect(count(tasks, 'PENDING_NODE_ASSIGNMENT')).toBe(2)
      expect(count(tasks, 'PENDING_ARGS_AVAIL')).toBe(1)
      expect(count(tasks, 'RUNNING')).toBe(2)

      // get_task by id gives the listed row.
      for (const task of tasks) expect((await getTask(task.taskId))[0]).toEqual(task)

      // Node ids.
      tasks = await m.state.listTasks({
        filters: [
          ['jobId', '=', jobId],
          ['state', '=', 'PENDING_NODE_ASSIGNMENT'],
        ],
      })
      for (const task of tasks) expect(task.nodeId).toBe(null)
      tasks = await m.state.listTasks({
        filters: [
          ['jobId', '=', jobId],
          ['state', '=', 'RUNNING'],
        ],
      })
      for (const task of tasks) expect(nodeIds()).toContain(task.nodeId)

      tasks = await m.state.listTasks({ filters: [['jobId', '=', jobId]] })
      for (const task of tasks) expect(task.jobId).toBe(jobId)

      tasks = await m.state.listTasks({
        filters: [
          ['jobId', '=', jobId],
          ['name', '=', 'f_0'],
        ],
        limit: 1,
      })
      expect(tasks).toHaveLength(1)

      // Filter keys are matched whatever their case (Ray's test filters on "STATE").
      tasks = await m.state.listTasks({
        filters: [
          ['jobId', '=', jobId],
          ['STATE', '=', 'PENDING_ARGS_AVAIL'],
        ],
        limit: 1,
      })
      expect(tasks).toHaveLength(1)
      return true
    }, 'the tasks to be listed')
  })

  it('test_state_api.py::test_list_get_task_multiple_attempt_all_failed', async () => {
    const m = await job()
    const f = m
      .remote(function f() {
        throw new Error('f is expected to failed')
      })
      .options({ retryExceptions: true, maxRetries: 2 })
    await expect(m.get(f.remote(), WAIT)).rejects.toBeInstanceOf(TaskError)

    const verify = (taskAttempts: TaskRow[]) => {
      expect(taskAttempts).toHaveLength(3) // 2 retries + the first run
      for (const taskAttempt of taskAttempts) {
        expect(taskAttempt.jobId).toBe(m.jobId)
        expect(taskAttempt.state).toBe('FAILED')
        expect(nodeIds()).toContain(taskAttempt.nodeId)
      }
      expect(new Set(taskAttempts.map((t) => t.attempt))).toEqual(new Set([0, 1, 2]))
      expect(new Set(taskAttempts.map((t) => t.taskId)).size).toBe(1) // the same task id
      return true
    }
    await waitForCondition(async () => verify(await m.state.listTasks({ filters: [['jobId', '=', m.jobId]] })), 'three failed attempts')

    // get_task by id returns every attempt.
    const [first] = await m.state.listTasks({ filters: [['jobId', '=', m.jobId]] })
    await waitForCondition(async () => verify(await getTask(first?.taskId ?? '')), 'get_task to give three attempts')
  })

  it('test_state_api.py::test_list_get_task_multiple_attempt_finished_after_retry', async () => {
    const m = await job()
    // Success after retries.
    const Phaser = m.remote(
      class Phaser {
        i = 0
        inc() {
          this.i += 1
          if (this.i < 3) throw new Error(`First two tries are expected to fail (try=${this.i}).`)
        }
      },
    )
    const phaser = Phaser.remote()
    // Ray's `f` reaches the phaser through its closure; a JS task takes it as an argument.
    const f = m
      .remote(async function f(phaser: ActorHandle<{ inc(): void }>) {
        const shoal = (self as unknown as { shoal: Mesh }).shoal
        await shoal.get(phaser.inc.remote())
      })
      .options({ retryExceptions: true, maxRetries: 3 })
    await m.get(f.remote(phaser), WAIT)

    await waitForCondition(async () => {
      const taskAttempts = await m.state.listTasks({
        filters: [
          ['jobId', '=', m.jobId],
          ['name', '=', 'f'],
        ],
      })
      expect(taskAttempts).toHaveLength(3)
      for (const t of taskAttempts) expect(t.state).toBe(t.attempt === 2 ? 'FINISHED' : 'FAILED')
      expect(new Set(taskAttempts.map((t) => t.attempt))).toEqual(new Set([0, 1, 2]))
      return true
    }, 'two failed attempts and a finished one')
  })

  it('test_state_api.py::test_list_actor_tasks', async () => {
    const m = await job()
    const jobId = m.jobId
    const Actor = m
      .remote(
        class Actor {
          async call() {
            await new Promise((r) => setTimeout(r, 30_000))
          }
        },
      )
      .options({ maxConcurrency: 2 })
    const a = Actor.remote()
    const actorId = a.actorId
    for (let i = 0; i < 10; i++) a.call.remote()

    await waitForCondition(async () => {
      const tasks = await m.state.listTasks({ filters: [['jobId', '=', jobId]] })
      for (const task of tasks) expect(task.jobId).toBe(jobId)
      for (const task of tasks) expect(task.actorId).toBe(actorId)
      // Actor.__init__: 1 finished; Actor.call: 2 running, 8 waiting for their turn.
      expect(tasks).toHaveLength(11)
      expect(count(tasks, 'PENDING_ACTOR_TASK_ORDERING_OR_CONCURRENCY')).toBe(8)
      expect(count(tasks, 'PENDING_NODE_ASSIGNMENT')).toBe(0)
      expect(count(tasks, 'PENDING_ARGS_AVAIL')).toBe(0)
      expect(count(tasks, 'RUNNING')).toBe(2)

      // Filters on the actor id.
      const byActor = (op: '=' | '!=') =>
        m.state.listTasks({
          filters: [
            ['jobId', '=', jobId],
            ['actorId', op, actorId],
          ],
        })
      expect(await byActor('=')).toHaveLength(11)
      expect(await byActor('!=')).toHaveLength(0)
      return true
    }, 'the actor tasks to be listed')
  })

  it('test_state_api.py::test_list_get_objects', async () => {
    const m = await job()
    const data = new Uint8Array(1024 * 1024).fill(1) // Ray: 50 MiB
    const plasmaObj = await m.put(data)
    const f = m.remote(function f(obj: Uint8Array) {
      return obj.length
    })
    await m.get(f.remote(plasmaObj), WAIT)

    await waitForCondition(async () => {
      // The only object this job still refers to (f's result ref is gone).
      await cluster().collectGarbage()
      const objs = (await m.state.listObjects()).filter((o) => o.objectId.slice(40, 48) === m.jobId)
      expect(objs.map((o) => o.objectId)).toEqual([plasmaObj.id])
      expect(objs[0]?.size).toBeGreaterThanOrEqual(1024 * 1024)
      // get_objects(id): the same row.
      const got = await m.state.listObjects({ filters: [['objectId', '=', plasmaObj.id]] })
      expect(got).toHaveLength(1)
      expect(got[0]).toEqual(objs[0])
      return true
    }, 'the object to be listed')
  })

  it('test_state_api.py::test_limit', async () => {
    const m = await job()
    // Differs from Ray on purpose: an actor holds its numCpus (default 1) while it lives (README), where Ray's holds
    // none once created; these four only wait, so they take 0 and leave the CPUs to other work.
    // Differs from Ray on purpose: `ready` is reserved on Shoal's actor handles (`handle.ready()` is the ref of the
    // actor's creation), so the class has no `ready` method and the handle's own is awaited.
    const A = m.remote(class A {}).options({ numCpus: 0 })
    const actors = Array.from({ length: 4 }, () => A.remote())
    await m.get(
      actors.map((actor) => actor.ready() as ObjectRef),
      WAIT,
    )

    const output = await m.state.listActors({ limit: 2 })
    expect(output).toHaveLength(2)
    // The output is deterministic.
    expect(await m.state.listActors({ limit: 2 })).toEqual(output)
  })

  it('test_state_api.py::test_filter', async () => {
    const m = await job()
    // Unsupported predicates are refused.
    const bad = await Promise.resolve()
      .then(() => m.state.listActors({ filters: [['state', '>' as '=', 'DEAD']] }))
      .catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(ValidationError)

    // Differs from Ray on purpose: `ready` is reserved on Shoal's actor handles (`handle.ready()` is the ref of the
    // actor's creation), so the class has no `ready` method and the handle's own is awaited.
    const Actor = m.remote(class Actor {})
    const a = Actor.remote()
    const b = Actor.remote()
    await m.get([a.ready() as ObjectRef, b.ready() as ObjectRef], WAIT)
    await m.kill(b)

    await waitForCondition(async () => {
      let result = await m.state.listActors({
        filters: [
          ['jobId', '=', m.jobId],
          ['state', '=', 'DEAD'],
        ],
      })
      expect(result).toHaveLength(1)
      expect(result[0]?.actorId).toBe(b.actorId) // Ray: the pid

      result = await m.state.listActors({
        filters: [
          ['jobId', '=', m.jobId],
          ['state', '!=', 'DEAD'],
        ],
      })
      expect(result).toHaveLength(1)
      expect(result[0]?.actorId).toBe(a.actorId)
      return true
    }, 'the filters to select the dead and the live actor')
  })

  // The driver half of Ray's case (job submission is not Shoal's): a second driver runs and ends.
  it('test_state_api.py::test_list_get_jobs', async () => {
    const m = await job()
    const script = await cluster().connect()
    await script.get(
      script
        .remote(function f() {
          return null
        })
        .remote(),
      WAIT,
    )
    await script.close()

    await waitForCondition(async () => {
      const jobs = (await m.state.listJobs()).filter((j) => j.jobId === m.jobId || j.jobId === script.jobId)
      expect(jobs).toHaveLength(2) // this driver and the script run above
      for (const driverJob of jobs) expect(driverJob.startTime).toBeGreaterThan(0)
      const ended = jobs.find((j) => j.jobId === script.jobId)
      expect(ended?.state).toBe('FINISHED')
      expect(ended?.endTime).toBeGreaterThanOrEqual(ended?.startTime ?? Number.POSITIVE_INFINITY)
      expect(jobs.find((j) => j.jobId === m.jobId)?.state).toBe('RUNNING')
      // get_job(id): the row by its id.
      const [got] = await m.state.listJobs({ filters: [['jobId', '=', script.jobId]] })
      expect(got).toEqual(ended)
      return true
    }, 'both driver jobs to be listed')
  })

  // It kills a node: one added for it, as late as this file allows.
  it('test_state_api.py::test_list_get_nodes', async () => {
    const workerNode = await cluster().addNode(1)
    await workerNode.close()

    await waitForCondition(async () => {
      const nodes = await mesh.state.listNodes()
      for (const node of nodes) {
        expect(isHex(node.nodeId, 56)).toBe(true)
        if (node.nodeId === workerNode.nodeId) {
          expect(node.state).toBe('DEAD')
          expect(node.deathReason).toEqual(expect.any(String)) // Ray: "Expected termination: received SIGTERM"
        } else if (nodeIds().slice(0, 2).includes(node.nodeId)) {
          expect(node.state).toBe('ALIVE')
          expect(node.deathReason).toBe(null)
        }
      }
      // get_node(id): the row by its id.
      for (const node of nodes) {
        const [got] = await mesh.state.listNodes({ filters: [['nodeId', '=', node.nodeId]] })
        expect(got).toMatchObject({ nodeId: node.nodeId, state: node.state, name: node.name, deathReason: node.deathReason })
      }
      return true
    }, 'the dead node to be listed')
  })
})

describe('test_state_api_2.py', () => {
  // The part of Ray's case without __repr__ (a Python notion) and without per-call names (Shoal's actor methods take
  // only numReturns): an actor task is named after its class and method.
  it('test_state_api_2.py::test_actor_task_with_repr_name', async () => {
    const m = await job()
    const Actor = m.remote(
      class Actor {
        f() {}
      },
    )
    const c = Actor.remote()
    await m.get(c.f.remote(), WAIT)

    await waitForCondition(async () => {
      const tasks = await m.state.listTasks({
        filters: [
          ['actorId', '=', c.actorId],
          ['type', '=', 'ACTOR_TASK'],
        ],
      })
      expect(tasks).toHaveLength(1)
      expect(tasks[0]?.name).toBe('Actor.f')
      expect(tasks[0]?.funcOrClassName).toBe('Actor.f')
      return true
    }, 'the actor task to be listed')
  })
})
