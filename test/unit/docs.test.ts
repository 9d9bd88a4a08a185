// The README documents every error code and every setting, exactly as the code defines them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, ERROR_CODES } from '../../src/core/errors.ts';
import { configTableRows } from '../../scripts/config-table.ts';
import { IMAGE_NODE_FLAGS } from '../support/service-process.ts';
import { ACTIVITY_OUTCOMES } from '../../src/activity/tracker.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { WAKE_OUTCOMES } from '../../src/wake/coordinator.ts';
import { PATCH_OUTCOMES } from '../../src/wake/resumer.ts';
import { SUSPENSION_OUTCOMES } from '../../src/idle/suspender.ts';
import { ACCESS_LOG_RESULTS } from '../../src/protocol/access-log.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every error code with its status, and no code that does not exist', () => {
    for (const code of ERROR_CODES) expect(readme).toContain(`| ${ERRORS[code].status} | \`${code}\` |`);
    const documented = [...readme.matchAll(/^\| \d{3} \| `([a-z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...ERROR_CODES].sort());
  });

  it('has the configuration table generated from the settings (node scripts/config-table.ts)', () => {
    for (const row of configTableRows()) expect(readme).toContain(row);
  });

  // Issue 28: the README listed 5 resume patch outcomes while the code emitted 7. Each metric whose
  // README entry lists its label values ("`name{label}` (a, b, c...)") must list exactly the code's,
  // and its help text must name each (the review added the access log's results and the suspensions).
  it.each([
    ['sandbox_extproc_resume_patches_total', PATCH_OUTCOMES],
    ['sandbox_extproc_wakes_total', WAKE_OUTCOMES],
    ['sandbox_extproc_activity_writes_total', ACTIVITY_OUTCOMES],
    ['sandbox_extproc_access_log_entries_total', ACCESS_LOG_RESULTS],
    ['sandbox_extproc_suspensions_total', SUSPENSION_OUTCOMES],
  ])('lists exactly the outcomes of %s the code emits', async (name, outcomes) => {
    // `name{outcome}`, `name{result}`, `name{reason="idle",outcome}`: the list in parentheses after it.
    const entry = new RegExp(`\`${name}\\{[^}]*\\}\` \\(([^):;]*)`).exec(readme.replace(/\n/g, ' '));
    expect(entry, `README entry for ${name}`).not.toBeNull();
    const listed = (entry?.[1] as string)
      .split(/[;,]/)
      .map((w) => /[a-z_]+/.exec(w)?.[0])
      .filter((w) => w !== undefined);
    expect([...listed].sort()).toEqual([...outcomes].sort());
    const help =
      (
        await createMetrics(() => ({}) as never)
          .registry.getSingleMetric(name)
          ?.get()
      )?.help ?? '';
    for (const outcome of outcomes) expect(help, `${name} help`).toMatch(new RegExp(`\\b${outcome}\\b`));
  });
});

describe('what the benchmark measures is what ships', () => {
  it('runs the bundle with the Dockerfile ENTRYPOINT flags and the package start script', () => {
    const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(entrypoint ?? '[]')).toEqual(['node', ...IMAGE_NODE_FLAGS, 'dist/sandbox-extproc.mjs']);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      scripts: { start: string };
      bin: Record<string, string>;
    };
    expect(pkg.scripts.start).toBe(['node', ...IMAGE_NODE_FLAGS, 'dist/sandbox-extproc.mjs'].join(' '));
    expect(Object.values(pkg.bin)).toEqual(['dist/sandbox-extproc.mjs']);
  });
});
