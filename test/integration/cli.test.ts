// The sandbox-extproc command as a process: start-up, readiness and graceful stop on SIGTERM.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TestProcess } from '../support/process.ts';
import { REPO_ROOT } from '../support/tools.ts';

const cli = `${REPO_ROOT}src/cli.ts`;

function routesFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-cli-'));
  const path = join(dir, 'routes.yaml');
  writeFileSync(path, 'routes: [{ id: a, podIP: 10.0.0.1 }]\n');
  return path;
}

describe('the sandbox-extproc command', () => {
  it('logs where it listens, is ready, and exits 0 on SIGTERM after logging the stop', async () => {
    const proc = new TestProcess('sandbox-extproc', process.execPath, [
      cli,
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--route-source',
      'file',
      '--routes-file',
      routesFile(),
    ]);
    const line = await proc.waitForLine(/"msg":"sandbox-extproc listening"/, 20_000);
    const { httpPort } = JSON.parse(line) as { httpPort: number };
    expect((await fetch(`http://127.0.0.1:${httpPort}/readyz`)).status).toBe(200);
    proc.child.kill('SIGTERM');
    await proc.waitForLine(/"msg":"stopped"/, 20_000);
    expect(await proc.exited).toBe(0);
    // No per-request lines at info, and every line is JSON.
    for (const l of proc.lines) expect(() => JSON.parse(l)).not.toThrow();
  });

  it('exits 2 naming the setting when a value is bad', async () => {
    const proc = new TestProcess('sandbox-extproc', process.execPath, [cli, '--wake-timeout', 'soon']);
    expect(await proc.exited).toBe(2);
    expect(proc.lines.join('\n')).toContain('--wake-timeout (SANDBOX_EXTPROC_WAKE_TIMEOUT)');
  });

  it('reads settings from the environment', async () => {
    const proc = new TestProcess('sandbox-extproc', process.execPath, [cli], {
      env: { ...process.env, SANDBOX_EXTPROC_DEFAULT_PORT: '0' },
    });
    expect(await proc.exited).toBe(2);
    expect(proc.lines.join('\n')).toContain('SANDBOX_EXTPROC_DEFAULT_PORT');
  });
});
