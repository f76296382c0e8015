import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url))

/**
 * Two builds:
 * - default: the pages the coordinator hosts (`/node`, `/dashboard`) with their workers, into dist/;
 * - `--mode sdk`: the SDK as one ES module, served as `/sdk.js` and used by Node through package.json `exports`.
 * Tests are Vitest projects: `unit` (Node, beside the code) and `e2e` (real Chromium via playwright-core).
 */
export default defineConfig(({ mode }) => {
  if (mode === 'sdk') {
    return {
      build: {
        outDir: here('dist/sdk'),
        emptyOutDir: true,
        target: 'es2022',
        sourcemap: true,
        lib: { entry: here('sdk/index.ts'), formats: ['es'], fileName: () => 'sdk.js' },
        // One file: /sdk.js is served alone (the peer mesh is imported lazily, only in browser pages).
        rollupOptions: { external: ['ws'], output: { codeSplitting: false } },
      },
    }
  }
  return {
    root: here('.'),
    build: {
      outDir: here('dist'),
      emptyOutDir: false,
      target: 'es2022',
      sourcemap: true,
      rollupOptions: {
        input: {
          node: here('worker-page/index.html'),
          dashboard: here('dashboard/index.html'),
          baseline: here('bench/baseline.html'),
        },
      },
    },
    worker: { format: 'es' },
    test: {
      projects: [
        {
          extends: true,
          // --expose-gc: reference-counting tests collect garbage on demand.
          test: {
            name: 'unit',
            // Unit tests (floods, the simulation's 1,000 seeds) run first and alone: Vitest runs projects of one
            // group at the same time, and their CPU load starved the e2e project's browser tabs into timeouts.
            sequence: { groupOrder: 0 },
            include: ['{sdk,coordinator,worker-page,sim}/**/*.test.ts', 'bench/sim/**/*.test.ts'],
            environment: 'node',
            execArgv: ['--expose-gc'],
          },
        },
        {
          extends: true,
          test: {
            name: 'e2e',
            sequence: { groupOrder: 1 },
            include: ['e2e/**/*.spec.ts'],
            environment: 'node',
            // Reference-counting tests collect a driver's dropped refs deterministically (Ray's tests rely on `del x`).
            execArgv: ['--expose-gc'],
            testTimeout: 120_000,
            hookTimeout: 120_000,
            fileParallelism: false,
            globalSetup: ['e2e/fixtures/global-setup.ts'],
          },
        },
      ],
    },
  }
})
