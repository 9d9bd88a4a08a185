// The release path (docs/release.md), run as written against a registry on loopback (issue 28):
// scripts/release.sh --local builds the image, pushes it, reads its digest, writes its SBOM with syft
// from the pushed digest, packages the chart as an OCI artifact, pushes it and pulls it back.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { execTracked } from '../../support/process.ts';
import { REPO_ROOT } from '../../support/tools.ts';

const skip = inject('containerSkip');

describe.skipIf(skip !== '')('the release path', () => {
  it('publishes the image and the chart by digest, with an SBOM listing the image’s packages', async () => {
    const out = mkdtempSync(join(tmpdir(), 'sbx-release-'));
    await execTracked('bash', [`${REPO_ROOT}scripts/release.sh`, '--local', out], { maxBuffer: 16 * 1024 * 1024 });
    const release = JSON.parse(readFileSync(join(out, 'release.json'), 'utf8')) as Record<string, string>;
    expect(release['image']).toMatch(/^127\.0\.0\.1:\d+\/sandbox-extproc@sha256:[0-9a-f]{64}$/);
    expect(release['chart']).toMatch(/^oci:\/\/127\.0\.0\.1:\d+\/charts\/sandbox-extproc:0\.1\.0@sha256:[0-9a-f]{64}$/);
    expect(release['commit']).toMatch(/^[0-9a-f]{12}$/);
    const sbom = JSON.parse(readFileSync(join(out, release['sbom'] as string), 'utf8')) as { packages: { name: string }[] };
    const names = new Set(sbom.packages.map((p) => p.name));
    for (const name of ['libc6', 'libstdc++6', 'node']) expect(names, name).toContain(name);
  });
});
