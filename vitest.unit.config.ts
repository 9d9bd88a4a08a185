// The unit project on its own: fast tests, no external processes. vitest.config.ts extends it as its
// `unit` project, and mutation testing (stryker.config.json) runs these tests against each mutant.
import { defineConfig } from 'vitest/config';

export default defineConfig({ test: { include: ['test/unit/**/*.test.ts'] } });
