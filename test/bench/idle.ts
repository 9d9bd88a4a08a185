// The idle suspender's cost at scale (issue #26): its sweep reads the route table in memory, so its CPU
// per sweep at 100,000 Sandboxes is the figure; its API writes are bounded by rule (8 in flight, 20
// started per second by default), measured here when every Sandbox is idle at once, the worst case:
// each is suspended once, at that pace. Runs in-process on the real route table and the agent-sandbox
// kind's own reader; the writer answers after 5 ms (the API server's side of a suspension is one merge
// patch, as the integration suite shows).
import { performance } from 'node:perf_hooks';
import { unrecordedForAtMostMs } from '../../src/activity/tracker.ts';
import { IdleSuspender } from '../../src/idle/suspender.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { createAgentSandboxKind } from '../../src/sandbox-kinds/agent-sandbox.ts';
import { percentile, type Report } from './report.ts';

const IDLE = '10m';
const SWEEP_MS = 5_000;
const ACTIVITY = { fraction: 0.5, minIntervalMs: 30_000 };

function table(count: number, lastUse: string): RouteRegistry {
  const kind = createAgentSandboxKind();
  const registry = new RouteRegistry();
  for (let i = 0; i < count; i += 1) {
    const route = kind.toRoute({
      metadata: {
        name: `s${i}`,
        namespace: `ns${i % 100}`,
        uid: `u${i}`,
        resourceVersion: String(i + 1),
        annotations: {
          'sandbox-extproc.io/wake-on-traffic': 'true',
          'sandbox-extproc.io/idle-timeout': IDLE,
          'sandbox-extproc.io/last-activity': lastUse,
        },
      },
      spec: { operatingMode: 'Running', podTemplate: { spec: { containers: [] } } },
      status: {
        podIPs: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
        conditions: [
          { type: 'Ready', status: 'True', reason: 'DependenciesReady', lastTransitionTime: '2026-01-01T00:00:00Z', message: '' },
        ],
      },
    });
    if (route !== undefined) registry.upsert(route);
  }
  registry.markReady();
  return registry;
}

const PER_SECOND = 20;

function suspender(registry: RouteRegistry, writes: { count: number }): IdleSuspender {
  return new IdleSuspender({
    registry,
    write: () => ((writes.count += 1), new Promise((resolve) => setTimeout(() => resolve('applied'), 5))),
    busy: () => false,
    metrics: { onSuspend: () => undefined, setIdle: () => undefined, onSweep: () => undefined },
    logger: createLogger('silent'),
    options: { sweepIntervalMs: SWEEP_MS, unrecordedMs: (idle) => unrecordedForAtMostMs(ACTIVITY, idle), perSecond: PER_SECOND },
  });
}

export async function measureIdle(report: Report, quick: boolean): Promise<void> {
  const count = quick ? 10_000 : 100_000;
  const label = quick ? '10,000' : '100,000';
  // In use: the sweep reads every one and suspends none.
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const busyWrites = { count: 0 };
  const inUse = suspender(table(count, now), busyWrites);
  const samples: number[] = [];
  for (let i = 0; i < 25; i += 1) {
    const started = performance.now();
    inUse.sweep();
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  report.atMost(`idle: sweep CPU, ${label} Sandboxes in use, p50`, percentile(samples, 0.5), 'ms', quick ? 25 : 100);
  report.info(`idle: sweep CPU, ${label} Sandboxes in use, max`, samples.at(-1) as number, 'ms');
  report.equals(`idle: suspensions of ${label} Sandboxes in use`, busyWrites.count, 'patches', 0);

  // All idle at once, the worst case: suspended at the configured pace, each once, whatever the count.
  const idleWrites = { count: 0 };
  const allIdle = suspender(table(count, '2026-01-01T00:00:00Z'), idleWrites);
  const leadership = new AbortController();
  const started = Date.now();
  allIdle.lead(leadership.signal);
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  leadership.abort();
  const seconds = (Date.now() - started) / 1000;
  report.atMost(
    `idle: suspend patches per second, ${label} idle at once (bound ${PER_SECOND}/s after a 1 s burst)`,
    idleWrites.count / seconds,
    'patches/s',
    PER_SECOND * (1 + 1 / seconds),
  );
  report.info(`idle: minutes to suspend ${label} Sandboxes idle at once, at that pace`, count / PER_SECOND / 60, 'min');
  // The activity records that keep Sandboxes in use up: at most one per Sandbox per (1 - fraction) of
  // its idle timeout, whatever its traffic (the activity bench measures the rule under load).
  const perMinute = (count * 60_000) / ((1 - ACTIVITY.fraction) * 600_000);
  report.info(`idle: activity record writes per minute at most, ${label} Sandboxes all in use (idle timeout ${IDLE})`, perMinute, 'writes');
}
