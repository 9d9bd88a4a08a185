// The idle suspender's decisions, on the real route table, with a controllable clock and a writer whose
// outcome each test decides: who is due, who is never touched, and how much it writes.
import { describe, expect, it } from 'vitest';
import { unrecordedForAtMostMs } from '../../../src/activity/tracker.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { IdleSuspender, type SuspendOutcome } from '../../../src/idle/suspender.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { makeRoute } from '../../support/routes.ts';

const IDLE_MS = 60_000;
const ACTIVITY = { fraction: 0.5, minIntervalMs: 5_000 };
/** With fraction 0.5 and the 20 % jitter, a use may go unrecorded for 60 % of the timeout. */
const LAG_MS = unrecordedForAtMostMs(ACTIVITY, IDLE_MS);

function setup(
  routes: Partial<Route>[],
  options: { busy?: (r: Route) => boolean; outcome?: SuspendOutcome | Error; concurrency?: number; perSecond?: number } = {},
) {
  const registry = new RouteRegistry();
  routes.forEach((over, i) => registry.upsert(makeRoute({ id: `s${i}`, uid: `u${i}`, resourceVersion: '1', ...over })));
  registry.markReady();
  let now = 0;
  const written: string[] = [];
  const counts = { applied: 0, superseded: 0, failed: 0, idle: 0 };
  const suspender = new IdleSuspender({
    registry,
    write: async (route) => {
      written.push(route.id);
      if (options.outcome instanceof Error) throw options.outcome;
      return options.outcome ?? 'applied';
    },
    busy: options.busy ?? (() => false),
    metrics: { onSuspend: (o) => (counts[o] += 1), setIdle: (n) => (counts.idle = n), onSweep: () => undefined },
    logger: createLogger('silent'),
    options: {
      sweepIntervalMs: 1000,
      unrecordedMs: (idle) => unrecordedForAtMostMs(ACTIVITY, idle),
      concurrency: options.concurrency ?? 8,
      perSecond: options.perSecond ?? 1000,
    },
    now: () => now,
  });
  registries.set(suspender, registry);
  return { suspender, written, counts, at: (ms: number) => (now = ms) };
}
const registries = new WeakMap<IdleSuspender, RouteRegistry>();
const registryOf = (s: IdleSuspender) => registries.get(s) as RouteRegistry;
const idleSince = (ms: number): Partial<Route> => ({ state: 'running', idleMs: IDLE_MS, readySince: ms, activityAt: undefined });

describe('who is due', () => {
  it('suspends a running sandbox only once its idle timeout plus the longest its use may go unrecorded has passed', () => {
    expect(LAG_MS).toBe(36_000);
    const { suspender, written, at } = setup([idleSince(1_000)]);
    at(1_000 + IDLE_MS + LAG_MS - 1);
    expect(suspender.sweep()).toEqual([]);
    at(1_000 + IDLE_MS + LAG_MS);
    expect(suspender.sweep().map((r) => r.id)).toEqual(['s0']);
    expect(written).toEqual(['s0']);
  });

  it('counts idleness from the later of its last recorded use and when it turned Ready', () => {
    const { suspender, at } = setup([{ ...idleSince(1_000), activityAt: 50_000 }]);
    at(1_000 + IDLE_MS + LAG_MS);
    expect(suspender.sweep()).toEqual([]);
    at(50_000 + IDLE_MS + LAG_MS);
    expect(suspender.sweep()).toHaveLength(1);
  });

  it('never touches what is not running, has no idle timeout, or has no time to count from', () => {
    const { suspender, at, counts } = setup([
      { ...idleSince(1), state: 'paused' },
      { ...idleSince(1), state: 'creating' },
      { ...idleSince(1), idleMs: 0 },
      { ...idleSince(1), readySince: undefined },
    ]);
    at(10 * IDLE_MS);
    expect(suspender.sweep()).toEqual([]);
    expect(counts.idle).toBe(0);
  });

  it('never suspends one this replica holds a request for or has activity for waiting to be written', () => {
    const { suspender, at, counts } = setup([idleSince(1), idleSince(1)], { busy: (r) => r.id === 's0' });
    at(10 * IDLE_MS);
    expect(suspender.sweep().map((r) => r.id)).toEqual(['s1']);
    // Both are idle by their records; one is spared.
    expect(counts.idle).toBe(2);
  });

  it('counts as idle those past their timeout but not yet due (their use may be unrecorded)', () => {
    const { suspender, at, counts } = setup([idleSince(1)]);
    at(IDLE_MS + 1);
    expect(suspender.sweep()).toEqual([]);
    expect(counts.idle).toBe(1);
  });
});

describe('what it writes', () => {
  it('keeps at most the bound in flight, goes on as patches complete, and sends each sandbox one', async () => {
    const { suspender, written, at, counts } = setup(
      Array.from({ length: 20 }, () => idleSince(1)),
      { concurrency: 5, outcome: 'superseded' },
    );
    at(10 * IDLE_MS);
    expect(suspender.sweep()).toHaveLength(5);
    // Those five are in flight: a sweep now starts none of them again, nor more than the bound.
    expect(suspender.sweep()).toHaveLength(0);
    expect(written).toHaveLength(5);
    // As they complete, the rest of the queue goes out, five at a time.
    for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
    expect(counts.superseded).toBe(20);
    expect(new Set(written).size).toBe(20);
  });

  it('starts at most its rate per second, a burst of one second, then one more per token', () => {
    const { suspender, at, written } = setup(
      Array.from({ length: 20 }, () => idleSince(1)),
      { perSecond: 3, concurrency: 100 },
    );
    at(10 * IDLE_MS);
    expect(suspender.sweep()).toHaveLength(3);
    at(10 * IDLE_MS + 1_000);
    expect(suspender.sweep()).toHaveLength(3);
    at(10 * IDLE_MS + 1_500);
    expect(suspender.sweep()).toHaveLength(1);
    expect(written).toHaveLength(7);
  });

  it('takes nothing from its queue that changed since the sweep: the next sweep decides on the newer observation', async () => {
    const { suspender, at, written } = setup(
      Array.from({ length: 3 }, () => idleSince(1)),
      { concurrency: 1, outcome: 'superseded' },
    );
    at(10 * IDLE_MS);
    expect(suspender.sweep().map((r) => r.id)).toEqual(['s0']);
    // s1 is used meanwhile: its record moves (a newer version of the object).
    registryOf(suspender).upsert(makeRoute({ id: 's1', uid: 'u1', resourceVersion: '2', ...idleSince(1), activityAt: 10 * IDLE_MS }));
    for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
    expect(written).toEqual(['s0', 's2']);
  });

  it('counts a failed write and tries again at the next sweep', async () => {
    const { suspender, at, counts } = setup([idleSince(1)], { outcome: new Error('unreachable') });
    at(10 * IDLE_MS);
    suspender.sweep();
    await new Promise((resolve) => setImmediate(resolve));
    expect(counts.failed).toBe(1);
    expect(suspender.sweep()).toHaveLength(1);
  });

  it('sweeps on its interval only while it leads, and stops the moment leadership ends', async () => {
    const { suspender, at, written } = setup([idleSince(1)]);
    at(10 * IDLE_MS);
    const leadership = new AbortController();
    suspender.lead(leadership.signal);
    expect(written).toHaveLength(1);
    leadership.abort();
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(written).toHaveLength(1);
  });
});

describe('the activity record bound', () => {
  it('is the longest a use may go unrecorded: the lowest write threshold, or the minimum interval', () => {
    expect(unrecordedForAtMostMs({ fraction: 0.5, minIntervalMs: 1_000 }, 10_000)).toBe(6_000);
    expect(unrecordedForAtMostMs({ fraction: 0.5, minIntervalMs: 30_000, jitter: 0 }, 10_000)).toBe(30_000);
    expect(unrecordedForAtMostMs({ fraction: 0.8, minIntervalMs: 0, jitter: 0 }, 10_000)).toBeCloseTo(2_000);
  });
});
