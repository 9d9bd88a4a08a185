// Benchmark and test runs leave no process behind, also when they fail or are interrupted. Measured
// before (issue #13): a bench run that failed on a missing tool left the service, four Envoys and two
// bare servers running. Here the real bench runs its request-path step from the sources, (a) with a
// tool missing after the first processes are up, and (b) interrupted with SIGINT once its Envoys run.
// Every process it started carries a marker in its environment; afterwards /proc must hold none.
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { TestProcess } from '../support/process.ts';
import { REPO_ROOT } from '../support/tools.ts';

const MARK = 'SBX_LEFTOVER_MARK';

/** Live (not zombie) processes whose environment carries the marker. */
function marked(value: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`${MARK}=${value}`)) continue;
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) continue;
      found.push(`${pid} ${readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').slice(0, 120)}`);
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

// If the guarantee breaks, the leftovers of this test are its own to stop (by pid, not by name).
const values: string[] = [];
afterEach(() => {
  for (const value of values.splice(0)) {
    for (const entry of marked(value)) process.kill(Number(entry.split(' ')[0]), 'SIGKILL');
  }
});

function bench(value: string, env: Record<string, string> = {}): TestProcess {
  values.push(value);
  return new TestProcess('bench', process.execPath, [`${REPO_ROOT}scripts/bench.ts`, '--quick', '--only', 'path', '--no-build'], {
    env: { ...process.env, [MARK]: value, SBX_TRACE_CHILDREN: '1', ...env },
  });
}

describe('a benchmark run leaves no process behind', () => {
  it('when a step fails after starting processes (a load tool is missing)', async () => {
    const value = randomUUID();
    const run = bench(value, { SBX_BARE_GO: '/nonexistent/bare-go-server' });
    await run.waitForLine(/child started: envoy/, 60_000);
    expect(await run.exited).toBe(1);
    expect(run.lines.join('\n')).toContain('SBX_BARE_GO: the real tool is missing');
    expect(marked(value)).toEqual([]);
  });

  it('when it is interrupted (SIGINT) while its processes run', async () => {
    const value = randomUUID();
    const run = bench(value);
    await run.waitForLines((l) => l.startsWith('child started: envoy'), 3, 60_000, 'Envoys started');
    expect(marked(value).length).toBeGreaterThanOrEqual(5);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(130);
    expect(marked(value)).toEqual([]);
  });
});
