// Operations as code (issue #19): the chart's alerts and dashboard, checked by the real tools.
// - promtool's rule unit tests (test/fixtures/alerts.promtool.yaml) run against the PrometheusRule the
//   chart renders: every alert fires on the series that should fire it and stays silent on a healthy one;
// - every series the alerts and the dashboard query is exported by the running service (its /metrics
//   on the real stack, OpenKruise's own controller included), so they cannot drift apart.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboard } from '../../scripts/dashboard.ts';
import { renderChart } from '../support/helm.ts';
import { httpGet } from '../support/http.ts';
import { startStack, type Stack } from '../support/stack.ts';
import { REPO_ROOT, toolPath } from '../support/tools.ts';

interface Rule {
  readonly alert: string;
  readonly expr: string;
}

function renderedRules(): Rule[] {
  const rule = renderChart('rel', 'monitoring', { 'prometheusRule.enabled': 'true' }).find(
    (o) => o.kind === 'PrometheusRule',
  ) as unknown as {
    spec: { groups: { rules: Rule[] }[] };
  };
  return rule.spec.groups.flatMap((g) => g.rules);
}

/** Metric families a PromQL expression reads (histogram series map to their family). */
function families(expr: string): string[] {
  return [...expr.matchAll(/\b(?:sandbox_extproc|process|nodejs)_[a-z0-9_]+/g)].map(([name]) => name.replace(/_(bucket|sum|count)$/, ''));
}

describe('alerts', () => {
  it('pass promtool’s rule unit tests: each fires on its failure and stays silent when healthy', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbx-alerts-'));
    writeFileSync(join(dir, 'rules.yaml'), JSON.stringify({ groups: [{ name: 'sandbox-extproc', rules: renderedRules() }] }));
    copyFileSync(`${REPO_ROOT}test/fixtures/alerts.promtool.yaml`, join(dir, 'alerts.promtool.yaml'));
    const out = execFileSync(toolPath('SBX_PROMTOOL'), ['test', 'rules', 'alerts.promtool.yaml'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(out).toContain('SUCCESS');
  });

  it('each alert has a firing case in the promtool tests and a runbook section in docs/operations.md', () => {
    const tests = parseYaml(readFileSync(`${REPO_ROOT}test/fixtures/alerts.promtool.yaml`, 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const firing = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    const operations = readFileSync(`${REPO_ROOT}docs/operations.md`, 'utf8');
    for (const { alert } of renderedRules()) {
      expect(firing, alert).toContain(alert);
      expect(operations, alert).toContain(`### ${alert}`);
    }
  });
});

describe('the alerts and the dashboard read only series the service exports', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ namespaces: ['metrics'] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('every metric family they query is on the running service’s /metrics', async () => {
    const text = (await httpGet(`http://127.0.0.1:${stack.service.listening.httpPort}/metrics`)).body;
    const exported = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map(([, name]) => name as string));
    const queried = new Set<string>();
    for (const rule of renderedRules()) for (const f of families(rule.expr)) queried.add(f);
    const panels = (dashboard()['panels'] as { targets?: { expr: string }[] }[]).flatMap((p) => p.targets ?? []);
    for (const target of panels) for (const f of families(target.expr)) queried.add(f);
    expect(queried.size).toBeGreaterThan(20);
    expect([...queried].filter((name) => !exported.has(name))).toEqual([]);
  });
});
