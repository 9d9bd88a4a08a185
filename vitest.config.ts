import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      { extends: './vitest.unit.config.ts', test: { name: 'unit' } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Real Envoy, kube-apiserver and etcd processes: one file at a time on a 2-core machine.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      // Long, bounded fault runs (npm run test:chaos); not part of npm test.
      { test: { name: 'chaos', include: ['test/chaos/**/*.test.ts'], fileParallelism: false, testTimeout: 180_000, hookTimeout: 120_000 } },
      { test: { name: 'e2e', include: ['test/e2e/*.test.ts'], fileParallelism: false, testTimeout: 300_000, hookTimeout: 900_000 } },
      // The image, the chart's pods and Envoy on the real Docker engine (skipped, saying why, without one).
      {
        test: {
          name: 'containers',
          include: ['test/e2e/containers/**/*.test.ts'],
          globalSetup: ['test/e2e/containers/setup.ts'],
          // After the other projects of a run (npm test), not beside them: 2 cores.
          sequence: { groupOrder: 1 },
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
