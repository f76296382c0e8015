/**
 * `npm run bench [-- part…]`: the benchmarks, each beside its baseline measured in the same run; writes
 * bench/results/<part>.json. Parts: tasks, tasks-page, actors, objects, verify, turn, scale (default: all). Kept out of the
 * `shoal` command so the coordinator never imports bench/.
 */
import { runBench } from './run.ts'

try {
  await runBench(process.argv.slice(2))
  process.exit(0)
} catch (e) {
  console.error(`bench: ${(e as Error).message}`)
  process.exit(1)
}
