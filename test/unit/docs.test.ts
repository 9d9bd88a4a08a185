// The README documents every error code and every setting, exactly as the code defines them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, ERROR_CODES } from '../../src/core/errors.ts';
import { configTableRows } from '../../scripts/config-table.ts';
import { IMAGE_NODE_FLAGS } from '../support/service-process.ts';

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
