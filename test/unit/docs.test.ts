// The README documents every error code and every setting, exactly as the code defines them.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS, ERROR_CODES } from '../../src/core/errors.ts';
import { configTableRows } from '../../scripts/config-table.ts';

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
