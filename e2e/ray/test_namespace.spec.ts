import { beforeAll, describe, expect, it } from 'vitest'
import { type Mesh, type ObjectRef, ValidationError } from '../../sdk/index.ts'
import { useCluster } from '../fixtures/cluster.ts'
import { useActorCleanup, useJobPerTest, waitForCondition } from './helpers.ts'

// Ported from python/ray/tests/test_namespace.py. Each Ray test starts its own driver with `ray.init(namespace=…)` and
// runs other drivers with `run_string_as_driver`; here each is a connection of its own to one shared cluster.
let admin: Mesh
const cluster = useCluster({ nodes: 2, cpus: 2 })
beforeAll(async () => {
  // Used only to clean up between tests.
  admin = await cluster().connect({ namespace: 'test_namespace_admin' })
})
// After each test its drivers are closed, then every actor still alive (detached ones included) is killed: afterEach
// hooks run last registered first.
useActorCleanup(() => admin, { everyActor: true })
const newDriver = useJobPerTest(cluster)

/** Extra helper: a driver of its own (Ray's `ray.init(namespace=…)`), closed after the test. */
const driverIn = (namespace: string) => newDriver({ namespace })

/** Extra helper: `p`, or a rejection once `ms` pass (for calls that take no timeout and might never settle). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/**
 * Extra helper: the driver script of test_isolation and test_default_namespace, run as its own job. It makes a
 * detached actor named 'Pinger', calls it, and exits.
 */
async function runPingerDriver(namespace?: string): Promise<void> {
  const d = await cluster().connect(namespace !== undefined ? { namespace } : {})
  try {
    const DetachedActor = d.remote(
      class DetachedActor {
        ping() {
          return 'pong from other job'
        }
      },
    )
    const actor = DetachedActor.options({ name: 'Pinger', lifetime: 'detached' }).remote()
    expect(await d.get(actor.ping.remote(), { timeout: 10_000 })).toBe('pong from other job')
  } finally {
    await d.close()
  }
}

describe('test_namespace.py', () => {
  it('test_namespace.py::test_isolation', async () => {
    const driver = await driverIn('namespace')
    // Start a detached actor in a different namespace.
    await runPingerDriver('different')

    const Actor = driver.remote(
      class Actor {
        ping() {
          return 'pong'
        }
      },
    )
    // Creating an actor of that name succeeds here: the other one is in a different namespace.
    const probeOnce = async () => {
      const probe = Actor.options({ name: 'Pinger' }).remote()
      expect(await driver.get(probe.ping.remote(), { timeout: 10_000 })).toBe('pong')
    }
    await probeOnce() // and `del probe`
    await cluster().collectGarbage()

    // Wait for the actor's removal.
    await waitForCondition(
      () =>
        driver.getActor('Pinger').then(
          () => false,
          () => true,
        ),
      'the probe to be removed once its handle is gone',
      10_000,
    )
    await expect(driver.getActor('Pinger')).rejects.toThrow(ValidationError)

    // Now make the actor in this namespace, from a different job.
    await runPingerDriver('namespace')
    const detachedActor = await driver.getActor<{ ping(): string }>('Pinger')
    expect(await driver.get(detachedActor.ping.remote(), { timeout: 10_000 })).toBe('pong from other job')

    // The name is taken.
    // Differs from Ray on purpose: `.remote()` never waits, so a taken name is reported by ready() (and every call),
    // not thrown by `.remote()` itself.
    const dup = Actor.options({ name: 'Pinger', lifetime: 'detached' }).remote()
    await expect(driver.get(dup.ready() as ObjectRef, { timeout: 10_000 })).rejects.toThrow(/already/)
  })

  it('test_namespace.py::test_default_namespace', async () => {
    await driverIn('namespace')
    // Each run of the script creates a detached actor named 'Pinger'. Drivers that name no namespace each get an
    // anonymous one of their own, so both succeed (in one shared namespace the second would fail).
    await runPingerDriver()
    await runPingerDriver()
  })

  it('test_namespace.py::test_runtime_context', async () => {
    const driver = await driverIn('abc')
    expect(driver.namespace).toBe('abc')
  })

  it('test_namespace.py::test_namespace_validation', async () => {
    await expect(cluster().connect({ namespace: 123 as never })).rejects.toThrow(ValidationError)
    await expect(cluster().connect({ namespace: '' })).rejects.toThrow(ValidationError)

    const driver = await driverIn('abc')
    const A = driver.remote(class A {})
    expect(() => A.options({ namespace: 123 as never }).remote()).toThrow(ValidationError)
    expect(() => A.options({ namespace: '' }).remote()).toThrow(ValidationError)

    A.options({ name: 'a', namespace: 'test', lifetime: 'detached' }).remote()
    await expect(within(driver.getActor('a', { namespace: 123 as never }), 5000, 'getActor')).rejects.toThrow(ValidationError)
    await expect(within(driver.getActor('a', { namespace: '' }), 5000, 'getActor')).rejects.toThrow(ValidationError)
    await within(driver.getActor('a', { namespace: 'test' }), 5000, 'getActor')
  })
})
