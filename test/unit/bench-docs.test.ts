// docs/benchmarks.md and its plots are generated from the committed results artifact
// (docs/bench/latest.json) by scripts/bench-docs.ts, never copied by hand: the committed page must be
// exactly what the generator makes of the committed artifact, and every table cell must find its figure.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ARTIFACT, PAGE, PLOTS, readPeers, render, TEMPLATE, type Artifact } from '../../scripts/bench-docs.ts';

const artifact = JSON.parse(readFileSync(ARTIFACT, 'utf8')) as Artifact;
const peers = readPeers();
const rendered = render(artifact, readFileSync(TEMPLATE, 'utf8'), peers);

describe('docs/benchmarks.md', () => {
  it('is what node scripts/bench-docs.ts makes of docs/bench/latest.json', () => {
    expect(readFileSync(PAGE, 'utf8')).toBe(rendered.page);
  });

  it('has its plots drawn from the same artifact', () => {
    for (const [name, svg] of Object.entries(rendered.plots)) expect(readFileSync(PLOTS[name as keyof typeof PLOTS], 'utf8')).toBe(svg);
    expect(Object.keys(rendered.plots).sort()).toEqual(['latency', 'wake']);
  });

  it('finds a figure for every cell of its tables (a renamed figure would leave a dash)', () => {
    const tables = rendered.page.split('\n').filter((l) => l.startsWith('| '));
    expect(tables.filter((l) => l.includes('—'))).toEqual([]);
  });

  it('comes from a complete run of every step, with the machine and versions recorded', () => {
    expect(artifact.failedSteps).toEqual([]);
    expect(artifact.machine.cpus).toBeGreaterThan(0);
    for (const tool of ['envoy', 'kubeApiserver', 'etcd', 'vegeta', 'h2load', 'ghz', 'node'])
      expect(artifact.versions[tool]).toMatch(/\d+\.\d+/);
    expect(Date.parse(artifact.date)).not.toBeNaN();
  });

  it('has its router table from a run that completed that step, and names any step that failed', () => {
    // From the full artifact once a full run has them, else from docs/bench/peers.json.
    const source = artifact.figures.some((f) => f.name.startsWith('router')) ? artifact : peers;
    expect(source?.failedSteps.map((f) => f.step)).not.toContain('router');
    expect(source?.figures.some((f) => f.name.startsWith('router @1000 rps'))).toBe(true);
    for (const failed of source?.failedSteps ?? []) expect(rendered.page).toContain(`${failed.step} (${failed.error.slice(0, 80)}`);
  });

  it('refuses a template placeholder it does not know', () => {
    expect(() => render(artifact, '{{nope}}')).toThrow('unknown placeholder {{nope}}');
  });
});
