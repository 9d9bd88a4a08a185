// What the chart ships beside its templates stays in step with its sources (issue 28): the Envoy
// config is a real file (a symlink out of the chart breaks `helm package` and `helm pull` users), a copy
// of envoy/envoy.yaml; the README is the one generated from values.yaml and the settings.
import { lstatSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART_README, chartReadme } from '../../scripts/chart-readme.ts';

const chartFile = (path: string) => new URL(`../../charts/sandbox-extproc/${path}`, import.meta.url);

describe('the chart’s files', () => {
  it('have a values.yaml with each key once (Helm takes the last of two; a strict YAML reader refuses it)', () => {
    expect(() => parse(readFileSync(chartFile('values.yaml'), 'utf8'), { uniqueKeys: true })).not.toThrow();
  });
  it('ship envoy/envoy.yaml as a copy, not a symlink out of the chart (cp envoy/envoy.yaml charts/sandbox-extproc/files/)', () => {
    expect(lstatSync(chartFile('files/envoy.yaml')).isSymbolicLink()).toBe(false);
    expect(readFileSync(chartFile('files/envoy.yaml'), 'utf8')).toBe(
      readFileSync(new URL('../../envoy/envoy.yaml', import.meta.url), 'utf8'),
    );
  });

  it('have the README generated from values.yaml and the settings (node scripts/chart-readme.ts)', () => {
    expect(readFileSync(CHART_README, 'utf8')).toBe(chartReadme());
  });

  it('have no home: URL that leads nowhere, and require Kubernetes 1.30 (native sidecars, ValidatingAdmissionPolicy v1)', () => {
    const chart = readFileSync(chartFile('Chart.yaml'), 'utf8');
    expect(chart).not.toMatch(/^home:/m);
    expect(chart).toMatch(/^kubeVersion: '>=1\.30\.0-0'$/m);
  });
});
