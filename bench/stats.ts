/** Medians, because these machines are noisy: one slow run must not move the figure. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}

export async function repeat(runs: number, fn: () => Promise<number>): Promise<{ median: number; runs: number[] }> {
  await fn() // warm-up: JIT, worker start, first connection
  const out: number[] = []
  for (let i = 0; i < runs; i++) out.push(await fn())
  return { median: median(out), runs: out.map((x) => Math.round(x)) }
}

/** a / b to 3 decimals: how every bench line states a figure against its same-run baseline. */
export const ratio = (a: number, b: number) => Number((a / b).toFixed(3))

export const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

/** Every wait of a benchmark is bounded: a benchmark fails with a clear error, it never hangs. */
export const BOUNDED = { timeout: 120_000 }
