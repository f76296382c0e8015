export async function runBench(_parts: string[]): Promise<void> {}
