import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
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
      { test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], fileParallelism: false, testTimeout: 300_000, hookTimeout: 900_000 } },
    ],
  },
});
