// `npm run demo` is the README's first command: it must run to the end and show each outcome.
import { describe, expect, it } from 'vitest';
import { TestProcess } from '../support/process.ts';
import { REPO_ROOT } from '../support/tools.ts';

describe('npm run demo', () => {
  it('brings the stack up, shows forward, not found, a wake and a refused token for both families, and tears down', async () => {
    const demo = new TestProcess('demo', process.execPath, [`${REPO_ROOT}scripts/demo.ts`, '--once'], { cwd: REPO_ROOT });
    await demo.waitForLine(/^Done\.$/, 120_000);
    expect(await demo.exited).toBe(0);
    const out = demo.lines.join('\n');
    // The pods' addresses are kwok's: the demo says which each running sandbox got.
    const [, web, notebook] = /pods: web at ([\d.]+), notebook at ([\d.]+)/.exec(out) ?? [];
    expect(web).toMatch(/^127\.1\.0\.\d+$/);
    expect(out).toContain(`-> 200 in`);
    expect(out).toContain(`"upstream":"${web}"`);
    expect(out).toContain('"error":"sandbox_not_found"');
    expect(out).toMatch(/-> 200 in \d+ ms, x-sandbox-wake-ms: \d+/);
    expect(out).toContain('resume patches the API server received: 1');
    expect(out).toContain('-> 401');
    expect(out).toContain('resume patches for vault: 0');
    expect(out).toContain('"decision":"wake"');
    // agent-sandbox: routed by its router's headers, woken with one patch, a client-chosen pod IP ignored.
    expect(out).toMatch(
      new RegExp(`6\\. A running agent-sandbox Sandbox[^\\n]*\\n.*\\n {2}-> 200 in \\d+ ms\\n.*"upstream":"${notebook}"`),
    );
    expect(out).toContain('operatingMode: Running; resume patches for lab: 1');
    expect(out).toMatch(new RegExp(`8\\. [^\\n]*\\n.*\\n {2}-> 200 in \\d+ ms\\n.*"upstream":"${notebook}"`));
    expect(out).toContain('"error":"namespace_not_allowed"');
    expect(out).toContain('"sandbox_id":"demo/lab"');
    // Scale to zero: napper suspended for idleness by the service, once, then woken by a request.
    expect(out).toMatch(/suspended after [\d.]+ s idle: operatingMode Suspended[^\n]*idle suspensions: 1/);
    expect(out).toMatch(/the next request wakes it\n.*\n {2}-> 200 in \d+ ms, x-sandbox-wake-ms: \d+/);
  });
});
