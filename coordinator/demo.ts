import { SingleBar } from 'cli-progress'
import { connect } from '../sdk/index.ts'

/**
 * The seed's first scenario: N tasks that each sleep a second, run in parallel on the mesh, collected as they
 * complete, with the elapsed time against the ideal for the cluster's CPUs.
 */
export async function runDemo(
  address: string,
  opts: { tasks: number; seconds: number; token?: string },
): Promise<{ elapsedMs: number; idealMs: number }> {
  const mesh = await connect({ address, ...(opts.token && { token: opts.token }) })
  try {
    const nodes = (await mesh.state.listNodes({ filters: [['state', '=', 'ALIVE']] })) ?? []
    const cpus = nodes.reduce((n, r) => n + (r.resources.CPU ?? 0), 0)
    if (!cpus) throw new Error('no alive nodes with CPUs: start some with `shoal node` or open /node in a browser')
    const expensiveComputation = mesh.remote(async function expensiveComputation(ms: number) {
      await new Promise((r) => setTimeout(r, ms))
      return 1
    })
    console.log(`demo: ${opts.tasks} × ${opts.seconds}s tasks on ${nodes.length} node(s), ${cpus} CPU(s)`)
    const bar = new SingleBar({ format: '  {bar} {value}/{total} tasks | {duration_formatted}', hideCursor: true, clearOnComplete: false })
    const t0 = performance.now()
    const refs = Array.from({ length: opts.tasks }, () => expensiveComputation.remote(opts.seconds * 1000))
    bar.start(opts.tasks, 0)
    let sum = 0
    for await (const [, value] of mesh.asCompleted(refs)) {
      sum += value
      bar.increment()
    }
    bar.stop()
    const elapsedMs = performance.now() - t0
    const idealMs = Math.ceil(opts.tasks / cpus) * opts.seconds * 1000
    if (sum !== opts.tasks) throw new Error(`expected the results to sum to ${opts.tasks}, got ${sum}`)
    console.log(
      `demo: sum of results = ${sum}; elapsed ${(elapsedMs / 1000).toFixed(2)} s vs ideal ${(idealMs / 1000).toFixed(2)} s (${(elapsedMs / idealMs).toFixed(2)}×)`,
    )
    return { elapsedMs, idealMs }
  } finally {
    await mesh.close()
  }
}
