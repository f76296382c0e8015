import { mkdir, writeFile } from 'node:fs/promises'
import { cpus as osCpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { startTurnServer } from '../coordinator/local-turn-server.ts'
import { benchActors } from './actors.bench.ts'
import { benchCluster } from './cluster.ts'
import { benchObjects } from './objects.bench.ts'
import { benchScale } from './scale.bench.ts'
import { benchTasks } from './tasks.bench.ts'
import { benchTasksFromPage } from './tasks-page.bench.ts'
import { benchTurn } from './turn.bench.ts'
import { benchVerify } from './verify.bench.ts'

const PARTS = ['tasks', 'tasks-page', 'actors', 'objects', 'verify', 'turn', 'scale'] as const
/**
 * The cluster each part runs on: [nodes, CPUs per node]: the shapes the README's figures were measured on (a browser
 * driver on 2 × 2, a Node driver on 3 × 4).
 */
const SHAPES: Record<Exclude<Part, 'scale'>, [number, number]> = {
  tasks: [3, 4],
  'tasks-page': [2, 2],
  actors: [3, 4],
  objects: [2, 2],
  verify: [3, 4],
  turn: [2, 2],
}
type Part = (typeof PARTS)[number]

/** Runs the chosen benchmarks (default: all) and writes bench/results/<part>.json. */
export async function runBench(parts: string[]): Promise<void> {
  const unknown = parts.filter((p) => !PARTS.includes(p as Part))
  if (unknown.length) throw new Error(`unknown benchmark ${unknown.join(', ')}; choose from ${PARTS.join(', ')}`)
  const chosen = (parts.length ? parts : PARTS) as Part[]
  const dir = fileURLToPath(new URL('./results/', import.meta.url))
  await mkdir(dir, { recursive: true })
  const machine = { cpus: osCpus().length, model: osCpus()[0]?.model ?? '?', node: process.version, date: new Date().toISOString() }
  for (const part of chosen) {
    if (part === 'scale') {
      // Simulated nodes (bench/sim) and a coordinator of its own: no browser.
      const result = await benchScale()
      await writeFile(`${dir}${part}.json`, `${JSON.stringify({ machine, ...result }, null, 2)}\n`)
      console.log(`  → bench/results/${part}.json`)
      continue
    }
    const [nodes, cpusPerNode] = SHAPES[part]
    // The TURN part: coturn on loopback beside the coordinator, which mints its credentials (policy `all`: the
    // benchmark switches the pages' policy itself).
    const secret = 'shoal-bench-turn-secret'
    const turn = part === 'turn' ? await startTurnServer(secret) : undefined
    const c = await benchCluster(
      nodes,
      cpusPerNode,
      part === 'objects' || part === 'turn' ? '2GiB' : undefined,
      turn ? ['--ice-server', turn.url, '--turn-secret', secret] : [],
    ).catch(async (e) => {
      await turn?.stop()
      throw e
    })
    try {
      const result =
        part === 'tasks'
          ? await benchTasks(c, cpusPerNode)
          : part === 'tasks-page'
            ? await benchTasksFromPage(c, cpusPerNode)
            : part === 'actors'
              ? await benchActors(c, cpusPerNode)
              : part === 'verify'
                ? await benchVerify(c, cpusPerNode)
                : part === 'turn'
                  ? await benchTurn(c)
                  : await benchObjects(c)
      await writeFile(`${dir}${part}.json`, `${JSON.stringify({ machine, ...result }, null, 2)}\n`)
      console.log(`  → bench/results/${part}.json`)
    } finally {
      await c.stop()
      await turn?.stop()
    }
  }
}
