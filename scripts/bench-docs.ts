// Generates docs/benchmarks.md and its plots (docs/img/latency.svg, docs/img/wake.svg) from a results
// artifact of `npm run bench` (docs/bench/latest.json by default) and the hand-written prose in
// docs/bench/benchmarks.template.md. Tables and plots are never copied by hand: a unit test checks
// that the committed page is what this script makes of the committed artifact.
//   node scripts/bench-docs.ts [artifact.json]
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface Artifact {
  readonly date: string;
  readonly mode: 'quick' | 'full';
  readonly command: string;
  readonly sandboxes: number;
  readonly durationSeconds: number;
  readonly failedSteps: readonly { step: string; error: string }[];
  readonly commit: string;
  readonly uncommittedChanges: boolean;
  readonly machine: { cpus: number; cpuModel: string; memoryGiB: number; kernel: string; loadAverageAtStart: number[] };
  readonly versions: Record<string, string>;
  readonly passed: boolean;
  readonly figures: readonly { name: string; value: number; unit: string; target: string; pass: boolean }[];
  readonly curves: Record<string, Record<string, [number, number][]>>;
}

const ROOT = new URL('../', import.meta.url);
export const ARTIFACT = fileURLToPath(new URL('docs/bench/latest.json', ROOT));
export const TEMPLATE = fileURLToPath(new URL('docs/bench/benchmarks.template.md', ROOT));
export const PAGE = fileURLToPath(new URL('docs/benchmarks.md', ROOT));
/**
 * The peer comparison and the real-controller scale steps, from a run of their own
 * (`npm run bench -- --only kwok,router --out docs/bench/peers.json`) while the full artifact predates
 * them: used for those tables only when the full artifact has no figures of theirs.
 */
export const PEERS = fileURLToPath(new URL('docs/bench/peers.json', ROOT));
export const PLOTS = {
  latency: fileURLToPath(new URL('docs/img/latency.svg', ROOT)),
  wake: fileURLToPath(new URL('docs/img/wake.svg', ROOT)),
};

/** A number as the tables show it: thousands separators, fewer decimals the larger it is. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return v.toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: digits });
}

function figureOf(artifact: Artifact, name: string) {
  return artifact.figures.find((f) => f.name === name);
}

function show(artifact: Artifact, name: string, unit = true): string {
  const f = figureOf(artifact, name);
  if (f === undefined) return '—';
  return unit ? `${formatNumber(f.value)} ${f.unit}` : formatNumber(f.value);
}

const cell = (text: string) => text.replaceAll('|', '\\|');
const table = (head: readonly string[], rows: readonly (readonly string[])[]) =>
  [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');

function runParagraph(a: Artifact): string {
  const v = a.versions;
  const minutes = Math.floor(a.durationSeconds / 60);
  const lines = [
    `These figures come from one run of \`${a.command}\` (${a.mode} mode, ${minutes} min ${a.durationSeconds % 60} s) on ${a.date.slice(0, 10)}`,
    `at commit \`${a.commit.slice(0, 12)}\`${a.uncommittedChanges ? ' (with uncommitted changes)' : ''}, on a ${a.machine.cpus}-core ${a.machine.cpuModel}`,
    `with ${a.machine.memoryGiB} GiB (kernel ${a.machine.kernel}; load average ${a.machine.loadAverageAtStart.map((l) => l.toFixed(2)).join(', ')} at the start),`,
    `against the real Envoy ${v['envoy']}, kube-apiserver ${v['kubeApiserver']} and etcd ${v['etcd']} on Node ${v['node']}, with real load generators`,
    `(vegeta ${v['vegeta']} for HTTP, h2load ${v['h2load']} and ghz ${v['ghz']} for gRPC). The artifact is`,
    '[`docs/bench/latest.json`](bench/latest.json); every table and plot below is generated from it by `node scripts/bench-docs.ts`.',
  ];
  const notes: string[] = [];
  if (a.mode === 'quick') {
    notes.push(
      '**This is a `--quick` run** (CI size: smaller loads, one 2,000-sandbox tier, looser regression bounds): its figures show the ' +
        'shape, not the product targets. `npm run bench` (full mode) on a quiet machine writes the artifact the targets are judged on.',
    );
  }
  if (a.failedSteps.length > 0) notes.push(`**Steps that failed:** ${a.failedSteps.map((f) => `${f.step} (${f.error})`).join('; ')}.`);
  if (!a.passed) notes.push('**Some figures missed their target** (marked below).');
  return [lines.join('\n'), ...notes].join('\n\n');
}

function targetsTable(a: Artifact): string {
  const bounded = a.figures.filter((f) => f.target.startsWith('<=') || f.target.startsWith('>='));
  const exact = a.figures.filter((f) => f.target.startsWith('='));
  const rows = bounded.map((f) => [f.name, `${formatNumber(f.value)} ${f.unit}`, `${f.target} ${f.unit}`, f.pass ? 'met' : '**missed**']);
  const missedExact = exact.filter((f) => !f.pass);
  rows.push([
    `Exact checks (every request answered 200, exact answer bytes, gRPC status OK, route counts, patches, wakes held)`,
    `${exact.length - missedExact.length} of ${exact.length} hold`,
    'all hold',
    missedExact.length === 0 ? 'met' : `**missed**: ${missedExact.map((f) => f.name).join('; ')}`,
  ]);
  return table(['Figure', 'Measured', 'Target', ''], rows);
}

function floorsTable(a: Artifact): string {
  const rows = [
    [
      'sandbox-extproc',
      '(ext_proc filter + sandbox-extproc; both sides ORIGINAL_DST)',
      'Envoy + sandbox-extproc / Envoy alone, both ORIGINAL_DST',
      'sandbox-extproc',
    ],
    [
      'bare grpc-js server (`test/bench/bare-grpc-server.ts`)',
      ', bare grpc-js ext_proc server (floor)',
      'bare grpc-js ext_proc server (floor)',
      'bare grpc-js server',
    ],
    [
      'bare Node http2, gRPC framing by hand (`bare-http2-server.ts`)',
      ', bare Node http2 ext_proc server (floor)',
      'bare Node http2 ext_proc server (floor)',
      'bare Node http2, gRPC framing by hand',
    ],
    [
      'bare Go net/http HTTP/2, gRPC framing by hand (`bare-go-server/`)',
      ', bare Go HTTP/2 ext_proc server (floor)',
      'bare Go HTTP/2 ext_proc server (floor)',
      'bare Go net/http HTTP/2, gRPC framing by hand',
    ],
  ].map(([label, latency, saturation, streams], i) => {
    const lat = (pct: number) =>
      show(a, i === 0 ? `added latency p${pct} @1000 rps ${latency}` : `added latency p${pct} @1000 rps${latency}`, false);
    const sat = show(a, i === 0 ? `saturation ratio (${saturation})` : `saturation ratio, ${saturation}`, false);
    const rate = show(a, `${streams}, one core, 8 in flight: streams/s`, false);
    return [label as string, `${lat(50)} / ${lat(99)} ms`, sat, `${rate} (${show(a, `${streams}, one core, 8 in flight: p99`, false)} ms)`];
  });
  return table(
    ["Server in the service's place", 'Added p50 / p99 at 1,000 req/s', 'Saturation ratio', 'Streams/s on one core (p99)'],
    rows,
  );
}

/** The tail step: each side's added latency, against the bare Node http2 floor, and what it spent. */
function tailTable(a: Artifact): string {
  const sides = a.figures.map((f) => /^tail: added latency p50 @1000 rps, (.+)$/.exec(f.name)?.[1]).filter((s) => s !== undefined);
  if (sides.length === 0) return '(no tail figures in this artifact)';
  const value = (name: string) => figureOf(a, name)?.value;
  const floor = value('tail: added latency p99 @1000 rps, bare Node http2 ext_proc server (floor)');
  const rows = sides.map((side) => {
    const added = (pct: number) => show(a, `tail: added latency p${pct} @1000 rps, ${side}`, false);
    const p99 = value(`tail: added latency p99 @1000 rps, ${side}`);
    const ratio = p99 === undefined || floor === undefined || floor <= 0 ? '—' : `${formatNumber(p99 / floor)}x`;
    return [
      side.replace(/^sandbox-extproc, /, ''),
      `${added(50)} / ${added(99)} / ${added(99.9)} ms`,
      ratio,
      // A floor is no service: it has no /metrics to read these from.
      figureOf(a, `tail: CPU per request, ${side}`) === undefined ? '' : show(a, `tail: CPU per request, ${side}`),
      figureOf(a, `tail: share of wall time in garbage collection, ${side}`) === undefined
        ? ''
        : show(a, `tail: share of wall time in garbage collection, ${side}`),
    ];
  });
  return table(
    [
      'Side (the service differs from "as it ships" in one thing)',
      'Added p50 / p99 / p99.9',
      'p99 / floor',
      'CPU per request',
      'Time in GC',
    ],
    rows,
  );
}

function scaleTable(a: Artifact): string {
  const tiers = a.figures
    .map((f) => /^((?:agent-sandbox: )?[\d,]+ sandboxes): create, last write/.exec(f.name)?.[1])
    .filter((t): t is string => t !== undefined);
  const rows = tiers.map((tag) => {
    const find = (pattern: RegExp) => a.figures.find((f) => f.name.startsWith(`${tag}: `) && pattern.test(f.name));
    const v = (pattern: RegExp) => {
      const f = find(pattern);
      return f === undefined ? '—' : `${formatNumber(f.value)} ${f.unit}`;
    };
    const n = (pattern: RegExp) => {
      const f = find(pattern);
      return f === undefined ? '—' : formatNumber(f.value);
    };
    return [
      tag.replace(' sandboxes', '').replace('agent-sandbox: ', 'agent-sandbox, '),
      v(/: create, last write/),
      v(/: service RSS$/),
      v(/: pause \d+, last write/),
      `${n(/: wake \d+ paused sandboxes at once, served/)}, ${n(/: wake \d+: resume patches the API server applied/)}, ${v(/: wake \d+: request -> forwarded, p99/)}`,
      v(/: delete, last write/),
    ];
  });
  return table(
    [
      'Tier',
      'Create: last write -> table matches',
      'RSS after create',
      'Pause 1,000',
      'Wake 100 at once: served, patches applied, p99',
      'Delete: last write -> table matches',
    ],
    rows,
  );
}

/** Which side a row favours: lower or higher is better. */
function ahead(ours: number | undefined, theirs: number | undefined, better: 'lower' | 'higher'): string {
  if (ours === undefined || theirs === undefined || !Number.isFinite(ours) || !Number.isFinite(theirs)) return 'no figure';
  if (ours === theirs) return 'even';
  return (better === 'lower' ? ours < theirs : ours > theirs) ? 'Envoy + sandbox-extproc' : '**sandbox-router**';
}

const ROUTER = 'sandbox-router';
const OURS = 'Envoy + sandbox-extproc';

/** agent-sandbox's router against Envoy + sandbox-extproc, figure by figure, from the router step. */
function routerTable(a: Artifact): string {
  const value = (name: string) => figureOf(a, name)?.value;
  const rows: string[][] = [];
  // A latency figure exists only for a side that answered every request 200 in its variant (and only
  // when the client -> upstream side did too): otherwise the cell says why there is none.
  const pair = (label: string, theirs: string, ours: string, better: 'lower' | 'higher', missing = '—') => {
    const t = value(theirs);
    const o = value(ours);
    const cell = (name: string) => (figureOf(a, name) === undefined ? missing : show(a, name));
    const lead = t !== undefined && o === undefined ? `**${ROUTER}**` : t === undefined && o !== undefined ? OURS : ahead(o, t, better);
    rows.push([label, cell(theirs), cell(ours), lead]);
  };
  const answered = (name: string) => {
    const f = figureOf(a, name);
    return f === undefined ? '—' : `${formatNumber(f.value)} of ${f.target.replace(/^= /, '')}${f.pass ? '' : ' (**not all 200**)'}`;
  };
  for (const rate of [1000, 5000]) {
    for (const connection of ['keep-alive', 'new connection per request']) {
      const variant = `router @${rate} rps, ${connection}`;
      // Variants a --quick run leaves out.
      if (figureOf(a, `${variant}, ${ROUTER}: requests sent and answered 200`) === undefined) continue;
      rows.push([
        `Answered 200, ${rate.toLocaleString('en-US')} req/s, ${connection}`,
        answered(`${variant}, ${ROUTER}: requests sent and answered 200`),
        answered(`${variant}, ${OURS}: requests sent and answered 200`),
        '',
      ]);
      const directClean = figureOf(a, `${variant}, client -> upstream (no proxy): requests sent and answered 200`)?.pass === true;
      for (const pct of [50, 99, 99.9]) {
        const base = `router @${rate} rps, ${connection}: added p${pct}`;
        pair(
          `Added latency p${pct}, ${rate.toLocaleString('en-US')} req/s, ${connection}`,
          `${base}, ${ROUTER}`,
          `${base}, ${OURS}`,
          'lower',
          directClean ? 'none: not all 200' : 'none: the direct side failed',
        );
      }
    }
  }
  const sat = 'router saturation (p99 < 50 ms, all 200; proxy on one core)';
  if (figureOf(a, `${sat}, ${ROUTER}`) !== undefined) {
    pair('Saturation: req/s at p99 < 50 ms, proxy on one core', `${sat}, ${ROUTER}`, `${sat}, ${OURS}`, 'higher');
    rows.push(['(the same for the client -> upstream side, no proxy)', show(a, `${sat}, client -> upstream (no proxy)`), '', '']);
  }
  const ready = 'router: Ready -> first routable request (probed every 1 ms)';
  for (const pct of [50, 99]) {
    pair(
      `Pod Ready -> first routable request, p${pct}`,
      `${ready}, from the pod's Ready, ${ROUTER} (its Pod informer), p${pct}`,
      `${ready}, from the pod's Ready, ${OURS} (its Sandbox watch), p${pct}`,
      'lower',
    );
  }
  for (const pct of [50, 99]) {
    pair(
      `Sandbox Ready -> first routable request, p${pct}`,
      `${ready}, from the Sandbox's Ready, ${ROUTER} (its Pod informer), p${pct}`,
      `${ready}, from the Sandbox's Ready, ${OURS} (its Sandbox watch), p${pct}`,
      'lower',
    );
  }
  pair(
    'The Ready probes once routable: latency p50 (median over the trials)',
    `${ready}, ${ROUTER}: latency of the probes answered 200 (after the release), p50, median over the trials`,
    `${ready}, ${OURS}: latency of the probes answered 200 (after the release), p50, median over the trials`,
    'lower',
  );
  const lag = "router: the controller copying the pod's Ready to its Sandbox (pod Ready -> Sandbox Ready)";
  rows.push([
    "(agent-sandbox's controller copying the pod's Ready to the Sandbox, p50 / p99: part of ours, not theirs)",
    '',
    `${show(a, `${lag}, p50`)} / ${show(a, `${lag}, p99`)}`,
    '',
  ]);
  const tiers = a.figures
    .map((f) => /^router: ([\d,]+) Sandboxes: sandbox-router RSS after its initial sync$/.exec(f.name)?.[1])
    .filter((t): t is string => t !== undefined);
  for (const tier of tiers) {
    const tag = `router: ${tier} Sandboxes`;
    pair(
      `RSS after the initial sync, ${tier} Sandboxes`,
      `${tag}: ${ROUTER} RSS after its initial sync`,
      `${tag}: sandbox-extproc RSS after its initial sync`,
      'lower',
    );
    pair(`Start -> synced, ${tier} Sandboxes`, `${tag}: ${ROUTER} start -> synced`, `${tag}: sandbox-extproc start -> synced`, 'lower');
  }
  return table(['Figure', ROUTER, OURS, 'Ahead'], rows);
}

/** Our wake next to what agent-sandbox's users wait for a sandbox today. */
function waitTable(a: Artifact): string {
  const rows = [
    [
      'Our wake: suspended Sandbox -> request at the upstream (Envoy + sandbox-extproc)',
      'router: our wake, suspended Sandbox -> request at the upstream (real controller, kwok pod)',
    ],
    [
      'Their SDK: SandboxClaim on a warm pool -> claim Ready',
      "router: their users' wait, SandboxClaim on a warm pool -> claim Ready (their SDK)",
    ],
    ['Sandbox created -> Ready (no pool)', "router: their users' wait, Sandbox created -> Ready (no pool)"],
  ].map(([label, name]) => [label as string, show(a, `${name}, p50`), show(a, `${name}, p99`)]);
  return table(['What the user waits for', 'p50', 'p99'], rows);
}

/** The scale scenarios with the real controllers: one row per family and churn phase. */
function kwokTable(a: Artifact): string {
  const phases = a.figures
    .map((f) => /^(kwok: (?:agent-sandbox: )?churn [\d.]+\/s, \d replicas?): route freshness p50/.exec(f.name)?.[1])
    .filter((t): t is string => t !== undefined);
  const rows = phases.map((phase) => {
    const family = phase.includes('agent-sandbox: ') ? 'agent-sandbox' : 'OpenKruise';
    const prefix = family === 'agent-sandbox' ? 'kwok: agent-sandbox: ' : 'kwok: ';
    const size = a.figures.find((f) => f.name === `${prefix}Sandboxes brought up by the real controller and kwok`);
    const replicas = Number(/(\d) replicas?$/.exec(phase)?.[1] ?? 1);
    const perReplica = Array.from({ length: replicas }, (_, i) =>
      show(a, `${phase}, replica ${i + 1}: resume patches it made`, false),
    ).join(' / ');
    const events = Array.from({ length: replicas }, (_, i) =>
      show(a, `${phase}, replica ${i + 1}: watch events it received per second`, false),
    ).join(' / ');
    return [
      `${family}, ${size === undefined ? '—' : formatNumber(size.value)} Sandboxes, ${phase.replace(/^kwok: (agent-sandbox: )?/, '')}`,
      `${show(a, `${phase}: route freshness p50 (Sandbox Ready seen by a plain watch -> the held request forwarded)`, false)} / ${show(a, `${phase}: route freshness p99`, false)} ms`,
      `${show(a, `${phase}: wake p50 (request -> forwarded: resume patch, controller, kwok, watch)`, false)} / ${show(a, `${phase}: wake p99`, false)} ms`,
      perReplica,
      events,
      `${show(a, `${phase}: API requests per second caused by the service (audit log)`, false)} of ${show(a, `${phase}: API requests per second, all clients (apiserver_request_total)`, false)}`,
    ];
  });
  return table(
    [
      'Family, Sandboxes, phase',
      'Route freshness p50 / p99',
      'Wake p50 / p99',
      'Resume patches per replica',
      'Watch events/s per replica',
      'API requests/s: the service, of all clients',
    ],
    rows,
  );
}

function allTable(a: Artifact): string {
  return table(
    ['Figure', 'Value', 'Target', ''],
    a.figures.map((f) => [
      f.name,
      `${formatNumber(f.value)} ${f.unit}`,
      f.target === '' ? '' : `${f.target} ${f.unit}`,
      f.target === '' ? '' : f.pass ? 'pass' : '**FAIL**',
    ]),
  );
}

// Plots: plain SVG, no dependencies.
const W = 720;
const H = 360;
const M = { left: 64, right: 24, top: 40, bottom: 48 };
const COLORS = ['#2b7bb9', '#d9480f', '#868e96', '#2f9e44', '#ae3ec9'];
const nines = (p: number) => -Math.log10(1 - p / 100);

export function chart(title: string, yLabel: string, series: Record<string, [number, number][]>): string {
  const entries = Object.entries(series).map(([label, points], i) => ({
    label,
    color: COLORS[i % COLORS.length] as string,
    points: points.filter(([p, v]) => p < 100 && Number.isFinite(v)).map(([p, v]) => [nines(p), v] as [number, number]),
  }));
  const xs = entries.flatMap((s) => s.points.map((p) => p[0]));
  const ys = entries.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const y1 = niceCeil(Math.max(...ys));
  const px = (x: number) => M.left + ((x - x0) / (x1 - x0 || 1)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - (y / y1) * (H - M.top - M.bottom);
  const yTicks = Array.from({ length: 6 }, (_, i) => (y1 * i) / 5);
  const xTicks = [0, 50, 90, 99, 99.9].map((p) => [nines(p), `p${p}`] as const);
  const fmt = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(1));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>`,
    ...yTicks.map(
      (t) =>
        `<line x1="${M.left}" x2="${W - M.right}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/><text x="${M.left - 8}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`,
    ),
    ...xTicks.map(
      ([x, label]) =>
        `<line x1="${px(x)}" x2="${px(x)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#f0f0f0"/><text x="${px(x)}" y="${H - M.bottom + 16}" text-anchor="middle">${label}</text>`,
    ),
    `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">percentile</text>`,
    `<text transform="translate(16 ${H / 2}) rotate(-90)" text-anchor="middle">${yLabel}</text>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/><line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>`,
    ...entries.map(
      (s) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`,
    ),
    ...entries.map(
      (s, i) =>
        `<rect x="${M.left + 12}" y="${M.top + 6 + i * 18}" width="14" height="4" fill="${s.color}"/><text x="${M.left + 32}" y="${M.top + 12 + i * 18}">${s.label}</text>`,
    ),
    '</svg>',
    '',
  ].join('\n');
}

function niceCeil(v: number): number {
  const step = 10 ** Math.floor(Math.log10(v || 1));
  return Math.ceil(v / step) * step;
}

export interface Rendered {
  readonly page: string;
  readonly plots: Partial<Record<keyof typeof PLOTS, string>>;
}

/** The page and plots an artifact and the template make. */
/** Where the router and kwok tables come from: the full artifact once it has them, else the peers run. */
function peerSource(artifact: Artifact, peers: Artifact | undefined): Artifact {
  const has = (a: Artifact) => a.figures.some((f) => f.name.startsWith('router') || f.name.startsWith('kwok: '));
  return has(artifact) || peers === undefined ? artifact : peers;
}

function peersParagraph(artifact: Artifact, source: Artifact): string {
  if (source === artifact) return 'These figures come from the run described at the top of this page.';
  const minutes = Math.floor(source.durationSeconds / 60);
  const notes = [
    `These figures come from a run of their own, \`${source.command}\` (${source.mode} mode, ${minutes} min ${source.durationSeconds % 60} s) on`,
    `${source.date.slice(0, 10)} at commit \`${source.commit.slice(0, 12)}\`${source.uncommittedChanges ? ' (with uncommitted changes)' : ''}, on the same`,
    `${source.machine.cpus}-core machine (load average ${source.machine.loadAverageAtStart.map((l) => l.toFixed(2)).join(', ')} at the start: shared with`,
    'other work, so absolute figures are noisy; compare the sides, measured in interleaved rounds of the same run).',
    'The artifact is [`docs/bench/peers.json`](bench/peers.json).',
  ].join('\n');
  const failed =
    source.failedSteps.length > 0
      ? `\n\n**Steps that failed:** ${source.failedSteps.map((f) => `${f.step} (${f.error.length > 160 ? `${f.error.slice(0, 160)}…` : f.error})`).join('; ')}.`
      : '';
  const missed = source.figures.filter((f) => !f.pass);
  const targets =
    missed.length > 0
      ? `\n\n**Missed in that run:** ${missed.map((f) => `${f.name} (${formatNumber(f.value)} ${f.unit}, target ${f.target})`).join('; ')}.`
      : '';
  return notes + failed + targets;
}

export function render(artifact: Artifact, template: string, peers?: Artifact): Rendered {
  const source = peerSource(artifact, peers);
  const plots: Rendered['plots'] = {};
  if (artifact.curves['latency'] !== undefined)
    plots.latency = chart('Request latency at 1,000 req/s through Envoy', 'latency (ms)', artifact.curves['latency']);
  if (artifact.curves['wake'] !== undefined)
    plots.wake = chart('Wake: Running status written -> held request at the upstream', 'latency (ms)', artifact.curves['wake']);
  const blocks: Record<string, () => string> = {
    run: () => runParagraph(artifact),
    targets: () => targetsTable(artifact),
    floors: () => floorsTable(artifact),
    scale: () => scaleTable(artifact),
    tail: () => tailTable(artifact),
    peers: () => peersParagraph(artifact, source),
    router: () => routerTable(source),
    wait: () => waitTable(source),
    kwok: () => kwokTable(source),
    all: () => allTable(artifact),
    'plot:latency': () =>
      plots.latency
        ? '![Request latency percentiles through Envoy, with and without sandbox-extproc, and the floor](img/latency.svg)'
        : '(no latency curves in this artifact)',
    'plot:wake': () => (plots.wake ? '![Wake latency percentiles](img/wake.svg)' : '(no wake curve in this artifact)'),
  };
  const page = template.replace(/^<!-- template-only[\s\S]*?-->\n/, '').replace(/\{\{([a-z:]+)\}\}/g, (token, name: string) => {
    const block = blocks[name];
    if (block === undefined) throw new Error(`${TEMPLATE}: unknown placeholder ${token}`);
    return block();
  });
  return { page, plots };
}

/** The peers run's artifact, when one is committed. */
export function readPeers(): Artifact | undefined {
  return existsSync(PEERS) ? (JSON.parse(readFileSync(PEERS, 'utf8')) as Artifact) : undefined;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const artifact = JSON.parse(readFileSync(process.argv[2] ?? ARTIFACT, 'utf8')) as Artifact;
  const { page, plots } = render(artifact, readFileSync(TEMPLATE, 'utf8'), readPeers());
  writeFileSync(PAGE, page);
  for (const [name, svg] of Object.entries(plots)) writeFileSync(PLOTS[name as keyof typeof PLOTS], svg);
  console.log(`docs/benchmarks.md and ${Object.keys(plots).length} plots generated from ${process.argv[2] ?? 'docs/bench/latest.json'}`);
}
