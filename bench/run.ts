import { mkdir, writeFile } from 'node:fs/promises'
import { cpus as osCpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { benchActors } from './actors.bench.ts'
import { benchCluster } from './cluster.ts'
import { benchObjects } from './objects.bench.ts'
import { benchTasks } from './tasks.bench.ts'

const PARTS = ['tasks', 'actors', 'objects'] as const
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
    const cpusPerNode = part === 'objects' ? 2 : 4
    const c = await benchCluster(part === 'objects' ? 2 : 3, cpusPerNode, part === 'objects' ? '2GiB' : undefined)
    try {
      const result =
        part === 'tasks' ? await benchTasks(c, cpusPerNode) : part === 'actors' ? await benchActors(c, cpusPerNode) : await benchObjects(c)
      await writeFile(`${dir}${part}.json`, `${JSON.stringify({ machine, ...result }, null, 2)}\n`)
      console.log(`  → bench/results/${part}.json`)
    } finally {
      await c.stop()
    }
  }
}
