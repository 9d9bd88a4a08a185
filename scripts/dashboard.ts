// Writes charts/sandbox-extproc/files/dashboard.json, the Grafana dashboard the chart ships
// (grafanaDashboard.enabled). Panels are listed here, one line each, so the JSON stays consistent;
// test/unit/dashboard.test.ts keeps the file in step and test/integration/observability.test.ts proves
// every series it queries is exported by the running service.
// Usage: node scripts/dashboard.ts [--write]
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DASHBOARD_FILE = fileURLToPath(new URL('../charts/sandbox-extproc/files/dashboard.json', import.meta.url));

interface PanelSpec {
  readonly title: string;
  readonly unit: string;
  /** PromQL and its legend. */
  readonly targets: readonly (readonly [string, string])[];
  readonly stack?: boolean;
}

const SEL = 'namespace=~"$namespace", pod=~"$pod"';
/** The standard process metrics (process_*, nodejs_*) carry no service prefix: keep this service's pods. */
const OWN = 'and on (namespace, pod) sandbox_extproc_build_info';
const ROWS: readonly (readonly [string, readonly PanelSpec[]])[] = [
  [
    'Traffic',
    [
      {
        title: 'Requests by outcome',
        unit: 'reqps',
        stack: true,
        targets: [[`sum by (outcome) (rate(sandbox_extproc_requests_total{${SEL}}[$__rate_interval]))`, '{{outcome}}']],
      },
      {
        title: 'Decision latency',
        unit: 's',
        targets: [
          [
            `histogram_quantile(0.5, sum by (le) (rate(sandbox_extproc_decision_duration_seconds_bucket{${SEL}}[$__rate_interval])))`,
            'p50',
          ],
          [
            `histogram_quantile(0.99, sum by (le) (rate(sandbox_extproc_decision_duration_seconds_bucket{${SEL}}[$__rate_interval])))`,
            'p99',
          ],
        ],
      },
      {
        title: 'Streams in flight vs limit',
        unit: 'short',
        targets: [
          [`sum by (pod) (sandbox_extproc_streams_active{${SEL}})`, '{{pod}} active'],
          [`max by (pod) (sandbox_extproc_max_streams{${SEL}})`, '{{pod}} limit'],
        ],
      },
    ],
  ],
  [
    'Wakes',
    [
      {
        title: 'Wakes by outcome',
        unit: 'short',
        stack: true,
        targets: [[`sum by (outcome) (increase(sandbox_extproc_wakes_total{${SEL}}[$__rate_interval]))`, '{{outcome}}']],
      },
      {
        title: 'Wake phases (p99)',
        unit: 's',
        targets: [
          [
            `histogram_quantile(0.99, sum by (le) (rate(sandbox_extproc_wake_patch_duration_seconds_bucket{${SEL}}[$__rate_interval])))`,
            'resume patch',
          ],
          [
            `histogram_quantile(0.99, sum by (le) (rate(sandbox_extproc_wake_wait_duration_seconds_bucket{${SEL}}[$__rate_interval])))`,
            'patch to running',
          ],
          [`max(sandbox_extproc_wake_timeout_seconds{${SEL}})`, 'deadline'],
        ],
      },
      {
        title: 'Waiters vs limit',
        unit: 'short',
        targets: [
          [`sum by (pod) (sandbox_extproc_wake_waiters{${SEL}})`, '{{pod}} waiting'],
          [`max by (pod) (sandbox_extproc_max_waiters{${SEL}})`, '{{pod}} limit'],
        ],
      },
      {
        title: 'Resume patches by outcome',
        unit: 'short',
        stack: true,
        targets: [[`sum by (outcome) (increase(sandbox_extproc_resume_patches_total{${SEL}}[$__rate_interval]))`, '{{outcome}}']],
      },
      {
        title: 'Kept awake by activity',
        unit: 'short',
        targets: [
          [`sum(sandbox_extproc_kept_awake_sandboxes{${SEL}})`, 'sandboxes pushed (10 min)'],
          [`sum by (outcome) (increase(sandbox_extproc_activity_writes_total{${SEL}}[$__rate_interval]))`, 'writes {{outcome}}'],
        ],
      },
    ],
  ],
  [
    'Scale to zero',
    [
      {
        title: 'Idle suspensions by outcome',
        unit: 'short',
        stack: true,
        targets: [[`sum by (outcome) (increase(sandbox_extproc_suspensions_total{${SEL}}[$__rate_interval]))`, '{{outcome}}']],
      },
      {
        title: 'Idle sandboxes and flaps',
        unit: 'short',
        targets: [
          [`max(sandbox_extproc_idle_sandboxes{${SEL}})`, 'idle past their timeout'],
          [`sum(increase(sandbox_extproc_idle_flaps_total{${SEL}}[$__rate_interval]))`, 'flaps (woken within a minute)'],
        ],
      },
      {
        title: 'Idle suspender leader',
        unit: 'short',
        targets: [
          [`max by (pod) (sandbox_extproc_idle_suspender_leader{${SEL}})`, '{{pod}}'],
          [`max(sandbox_extproc_idle_suspension_enabled{${SEL}})`, 'enabled'],
        ],
      },
      {
        title: 'Idle sweep CPU (p99)',
        unit: 's',
        targets: [
          [
            `histogram_quantile(0.99, sum by (le) (rate(sandbox_extproc_idle_sweep_duration_seconds_bucket{${SEL}}[$__rate_interval])))`,
            'p99',
          ],
        ],
      },
    ],
  ],
  [
    'Routes and watch',
    [
      { title: 'Routes by state', unit: 'short', stack: true, targets: [[`max by (state) (sandbox_extproc_routes{${SEL}})`, '{{state}}']] },
      {
        title: 'Watch health',
        unit: 'short',
        targets: [
          [`sum by (reason) (increase(sandbox_extproc_watch_restarts_total{${SEL}}[$__rate_interval]))`, 'restarts {{reason}}'],
          [`sum(rate(sandbox_extproc_watch_events_total{${SEL}}[$__rate_interval]))`, 'events/s'],
          [`sum(rate(sandbox_extproc_route_changes_total{${SEL}}[$__rate_interval]))`, 'route changes/s'],
        ],
      },
      {
        title: 'Readiness and refusals',
        unit: 'short',
        targets: [
          [`min by (pod) (sandbox_extproc_ready{${SEL}})`, '{{pod}} ready'],
          [`max(sandbox_extproc_route_conflicts{${SEL}})`, 'IDs in conflict'],
          [`sum(increase(sandbox_extproc_upstream_addresses_refused_total{${SEL}}[$__rate_interval]))`, 'pod IPs refused'],
        ],
      },
    ],
  ],
  [
    'Process',
    [
      {
        title: 'Memory',
        unit: 'bytes',
        targets: [
          [`max by (pod) (process_resident_memory_bytes{${SEL}} ${OWN})`, '{{pod}} RSS'],
          [`max by (pod) (nodejs_heap_size_used_bytes{${SEL}} ${OWN})`, '{{pod}} heap used'],
        ],
      },
      {
        title: 'CPU',
        unit: 'percentunit',
        targets: [[`sum by (pod) (rate(process_cpu_seconds_total{${SEL}}[$__rate_interval]) ${OWN})`, '{{pod}}']],
      },
      {
        title: 'Event-loop delay p99',
        unit: 's',
        targets: [[`max by (pod) (nodejs_eventloop_lag_p99_seconds{${SEL}} ${OWN})`, '{{pod}}']],
      },
      {
        title: 'Handles and restarts',
        unit: 'short',
        targets: [
          [`max by (pod) (nodejs_active_handles_total{${SEL}} ${OWN})`, '{{pod}} handles'],
          [`changes(process_start_time_seconds{${SEL}}[1h]) ${OWN}`, '{{pod}} restarts (1 h)'],
        ],
      },
    ],
  ],
];

export function dashboard(): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const [row, specs] of ROWS) {
    panels.push({ type: 'row', title: row, id: id++, collapsed: false, gridPos: { x: 0, y: y++, w: 24, h: 1 }, panels: [] });
    specs.forEach((spec, i) => {
      const width = specs.length > 3 ? 12 : 8;
      const perRow = 24 / width;
      panels.push({
        type: 'timeseries',
        title: spec.title,
        id: id++,
        datasource: { type: 'prometheus', uid: '${datasource}' },
        gridPos: { x: (i % perRow) * width, y: y + Math.floor(i / perRow) * 8, w: width, h: 8 },
        fieldConfig: {
          defaults: {
            unit: spec.unit,
            custom: { fillOpacity: spec.stack === true ? 30 : 0, stacking: { mode: spec.stack === true ? 'normal' : 'none' } },
          },
          overrides: [],
        },
        options: { legend: { displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'multi' } },
        targets: spec.targets.map(([expr, legend], t) => ({
          refId: String.fromCharCode(65 + t),
          expr,
          legendFormat: legend,
          datasource: { type: 'prometheus', uid: '${datasource}' },
        })),
      });
    });
    y += Math.ceil(specs.length / (24 / (specs.length > 3 ? 12 : 8))) * 8;
  }
  const variable = (name: string, query: string) => ({
    name,
    type: 'query',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    query: { query, refId: name },
    definition: query,
    includeAll: true,
    multi: true,
    allValue: '.*',
    refresh: 2,
    current: { text: 'All', value: '$__all' },
  });
  return {
    title: 'sandbox-extproc',
    uid: 'sandbox-extproc',
    tags: ['sandbox-extproc', 'envoy'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-3h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', type: 'datasource', query: 'prometheus', current: { text: 'Prometheus', value: 'prometheus' } },
        variable('namespace', 'label_values(sandbox_extproc_requests_total, namespace)'),
        variable('pod', 'label_values(sandbox_extproc_requests_total{namespace=~"$namespace"}, pod)'),
      ],
    },
    panels,
  };
}

export const dashboardText = (): string => `${JSON.stringify(dashboard(), null, 2)}\n`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--write')) writeFileSync(DASHBOARD_FILE, dashboardText());
  else if (readFileSync(DASHBOARD_FILE, 'utf8') !== dashboardText()) {
    console.error(`${DASHBOARD_FILE} is out of date: run node scripts/dashboard.ts --write`);
    process.exit(1);
  }
}
