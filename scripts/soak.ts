// `npm run soak -- --duration 30m [--rate 100] [--record]`: the soak run (test/soak/soak.ts), bounded and
// on loopback only. Fails (exit 1) when any request is lost or answered wrongly, or when memory, heap or
// handles grow without bound: a least-squares slope over the settled part of the run (its last two
// thirds) above the thresholds below. Short runs (under 10 minutes, as in CI) cannot tell a slope from
// warm-up, so they gate growth in absolute terms instead. Writes test/soak/results/latest.{json,svg};
// --record also writes docs/soak/latest.json and docs/img/soak.png (the figures in docs/operations.md;
// the PNG needs rsvg-convert, which `bash scripts/dev.sh soak` provisions).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { drawSoak } from '../test/soak/plot.ts';
import { runSoak } from '../test/soak/soak.ts';
import { settled, slopePerHour } from '../test/soak/trend.ts';
import { runBuilt } from '../test/support/service-process.ts';
import { REPO_ROOT } from '../test/support/tools.ts';

/** Growth allowed over the settled part of a long run, per hour. */
const SLOPE_LIMITS = { rssMBPerHour: 10, heapMBPerHour: 5, handlesPerHour: 20, loopP99msPerHour: 20 } as const;
/** Growth allowed from the first settled sample to the last in a short run. */
const SHORT_LIMITS = { rssMB: 40, heapMB: 20, handles: 50 } as const;
/**
 * Event-loop delay: the median of the samples' p99 must stay low. Single samples are not gated: on a
 * shared machine a neighbour's burst stalls the whole host for a moment (the load generator too), which
 * says nothing about the service; a trend would, and it is gated as a slope below.
 */
const LOOP_P99_MEDIAN_LIMIT_MS = 50;

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '30m' },
    rate: { type: 'string', default: '100' },
    record: { type: 'boolean', default: false },
  },
});
const match = /^([0-9]+)(s|m|h)$/.exec(values.duration ?? '');
if (match === null) throw new Error(`--duration ${values.duration}: expected a duration such as 30m, 2m or 90s`);
const durationMs = Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000 }[match[2] as 's' | 'm' | 'h'];
const rate = Number(values.rate);

execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
runBuilt.value = true;
console.log(`soak: ${values.duration} at ${rate} requests/s`);
const result = await runSoak({ durationMs, rate, log: (line) => console.log(line) });

const { tally, samples } = result;
const steady = settled(samples);
const first = steady[0];
const last = steady.at(-1);
const long = durationMs >= 10 * 60_000;
const checks: { name: string; value: number; limit: string; pass: boolean }[] = [];
const check = (name: string, value: number, limit: string, pass: boolean) =>
  checks.push({ name, value: Math.round(value * 1000) / 1000, limit, pass });

check(
  'requests sent = answered + transport errors',
  tally.sent - tally.answered - tally.errorCount,
  '= 0',
  tally.sent === tally.answered + tally.errorCount,
);
check('transport errors (refused, reset, timed out)', tally.errorCount, '= 0', tally.errorCount === 0);
check(
  'requests to untouched sandboxes not answered 200',
  tally.count('stable') - tally.count('stable', 200),
  '= 0',
  tally.count('stable') === tally.count('stable', 200),
);
check(
  'wakes served',
  result.wakes.served,
  `= ${result.wakes.attempted} attempted`,
  result.wakes.served === result.wakes.attempted && result.wakes.attempted > 0,
);
check(
  'idle suspensions, each woken by its next request',
  result.idle.woken,
  `= ${result.idle.suspended} suspended, > 0`,
  result.idle.woken === result.idle.suspended && result.idle.suspended > 0,
);
check('suspensions of the Sandbox kept in use', result.idle.inUseSuspended, '= 0', result.idle.inUseSuspended === 0);
// Flaps are expected here (the idlers are woken the moment they are suspended): reported, not gated.
check('flaps (wakes within a minute of an idle suspension)', result.idle.flaps, 'reported', true);
const loops = steady.map((s) => s.loopP99ms).sort((a, b) => a - b);
const loopMedian = loops[Math.floor(loops.length / 2)] ?? 0;
check('event-loop delay p99, median of samples (ms)', loopMedian, `<= ${LOOP_P99_MEDIAN_LIMIT_MS}`, loopMedian <= LOOP_P99_MEDIAN_LIMIT_MS);
const slopes = {
  rssMBPerHour: slopePerHour(steady, (s) => s.rssMB),
  heapMBPerHour: slopePerHour(steady, (s) => s.heapMB),
  handlesPerHour: slopePerHour(steady, (s) => s.handles),
  loopP99msPerHour: slopePerHour(steady, (s) => s.loopP99ms),
};
if (long) {
  check(
    'RSS slope, settled part (MB/h)',
    slopes.rssMBPerHour,
    `<= ${SLOPE_LIMITS.rssMBPerHour}`,
    slopes.rssMBPerHour <= SLOPE_LIMITS.rssMBPerHour,
  );
  check(
    'heap used slope, settled part (MB/h)',
    slopes.heapMBPerHour,
    `<= ${SLOPE_LIMITS.heapMBPerHour}`,
    slopes.heapMBPerHour <= SLOPE_LIMITS.heapMBPerHour,
  );
  check(
    'active handles slope, settled part (/h)',
    slopes.handlesPerHour,
    `<= ${SLOPE_LIMITS.handlesPerHour}`,
    slopes.handlesPerHour <= SLOPE_LIMITS.handlesPerHour,
  );
} else if (first !== undefined && last !== undefined) {
  check(
    'RSS growth, settled part (MB)',
    last.rssMB - first.rssMB,
    `<= ${SHORT_LIMITS.rssMB}`,
    last.rssMB - first.rssMB <= SHORT_LIMITS.rssMB,
  );
  check(
    'heap used growth, settled part (MB)',
    last.heapMB - first.heapMB,
    `<= ${SHORT_LIMITS.heapMB}`,
    last.heapMB - first.heapMB <= SHORT_LIMITS.heapMB,
  );
  check(
    'active handles growth, settled part',
    last.handles - first.handles,
    `<= ${SHORT_LIMITS.handles}`,
    last.handles - first.handles <= SHORT_LIMITS.handles,
  );
}

const summary = {
  loopP99WorstSampleMs: loops.at(-1) ?? 0,
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  durationS: Math.round(result.durationMs / 1000),
  rate,
  sent: tally.sent,
  answered: tally.answered,
  errors: Object.fromEntries(tally.errors),
  statuses: Object.fromEntries([...tally.statuses].map(([kind, byStatus]) => [kind, Object.fromEntries(byStatus)])),
  wakes: result.wakes,
  idle: result.idle,
  changes: result.changes,
  watchRestarts: result.watchRestarts,
  apiserverRestartAtS: result.restartAt,
  slopes,
  first: first ?? null,
  last: last ?? null,
  checks,
  samples,
};
const dir = `${REPO_ROOT}test/soak/results`;
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}/latest.json`, `${JSON.stringify(summary, null, 2)}\n`);
const width = Math.max(...checks.map((c) => c.name.length));
for (const c of checks)
  console.log(`${c.name.padEnd(width)}  ${String(c.value).padStart(10)}  ${c.limit.padEnd(18)} ${c.pass ? 'pass' : 'FAIL'}`);
console.log(`sent ${tally.sent}, answered ${tally.answered}, changes ${JSON.stringify(result.changes)}, written to ${dir}`);
// The PNG (for docs/operations.md) only when recording: it needs rsvg-convert (`bash scripts/dev.sh soak`
// provisions it); the SVG is always written.
const title = `sandbox-extproc soak: ${values.duration} at ${rate} req/s (dashed: API server restart)`;
drawSoak(samples, `${dir}/latest`, title, [result.restartAt], values.record === true);
if (values.record) {
  mkdirSync(`${REPO_ROOT}docs/soak`, { recursive: true });
  mkdirSync(`${REPO_ROOT}docs/img`, { recursive: true });
  writeFileSync(`${REPO_ROOT}docs/soak/latest.json`, `${JSON.stringify(summary, null, 2)}\n`);
  copyFileSync(`${dir}/latest.png`, `${REPO_ROOT}docs/img/soak.png`);
}
process.exit(checks.every((c) => c.pass) ? 0 : 1);
