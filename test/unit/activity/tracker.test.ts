// The activity tracker's write rule, with a controllable clock: push a pause timer only when the time
// left is below a fraction of the timeout, at most once per interval per sandbox, never on the caller's
// path; replicas converge because the write is absolute.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ActivityTracker, type ActivityOptions } from '../../../src/activity/tracker.ts';
import type { Route } from '../../../src/routes/route.ts';
import { makeRoute } from '../../support/routes.ts';

const TIMEOUT_MS = 60_000;

/** A fake cluster: one object per UID whose pause deadline writes move (as the watch would show). */
class Cluster {
  readonly deadlines = new Map<string, number>();
  readonly writes: { uid: string; at: number }[] = [];
  route(uid: string): Route {
    return makeRoute({ uid, id: uid, resourceVersion: String(this.writes.length) });
  }
  tracker(options: Partial<ActivityOptions> = {}, clock = () => Date.now()): ActivityTracker {
    return new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0, ...options },
      {
        now: clock,
        timerOf: (route) => {
          const deadline = this.deadlines.get(route.uid);
          return deadline === undefined ? undefined : { deadline, timeoutMs: TIMEOUT_MS };
        },
        write: async (route, now) => {
          this.writes.push({ uid: route.uid, at: now.getTime() });
          this.deadlines.set(route.uid, now.getTime() + TIMEOUT_MS);
        },
      },
    );
  }
}

let cluster: Cluster;
beforeEach(() => {
  vi.useFakeTimers({ now: 1_000_000 });
  cluster = new Cluster();
});
afterEach(() => vi.useRealTimers());

describe('when to push a pause timer', () => {
  it('does nothing while more than the fraction of the timeout is left', async () => {
    cluster.deadlines.set('a', Date.now() + 0.6 * TIMEOUT_MS);
    const tracker = cluster.tracker();
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    expect(cluster.writes).toEqual([]);
  });

  it('pushes it once the time left falls below the fraction, off the caller (not synchronously)', async () => {
    cluster.deadlines.set('a', Date.now() + 0.4 * TIMEOUT_MS);
    const tracker = cluster.tracker();
    tracker.note(cluster.route('a'));
    expect(cluster.writes).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(10);
    expect(cluster.writes).toHaveLength(1);
    expect(cluster.deadlines.get('a')).toBe(Date.now() - 10 + TIMEOUT_MS);
  });

  it('ignores sandboxes without a timer', async () => {
    const tracker = cluster.tracker();
    tracker.note(cluster.route('untimed'));
    await vi.advanceTimersByTimeAsync(10);
    expect(cluster.writes).toEqual([]);
  });

  it('writes a sandbox under constant traffic about once per (1 - fraction) x timeout', async () => {
    cluster.deadlines.set('busy', Date.now() + TIMEOUT_MS);
    const tracker = cluster.tracker();
    // 1,000 requests a second for 10 minutes.
    for (let ms = 0; ms < 600_000; ms += 100) {
      for (let i = 0; i < 100; i += 1) tracker.note(cluster.route('busy'));
      await vi.advanceTimersByTimeAsync(100);
    }
    // (1 - 0.5) x 60 s = 30 s between writes: 600 s / 30 s = 20.
    expect(cluster.writes.length).toBeGreaterThanOrEqual(19);
    expect(cluster.writes.length).toBeLessThanOrEqual(21);
    expect(Math.min(...cluster.deadlines.values()) - Date.now()).toBeGreaterThan(0);
  });

  it('never writes one sandbox more than once per minimum interval, even with a tiny timer', async () => {
    cluster.deadlines.set('a', Date.now());
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0 },
      {
        timerOf: () => ({ deadline: Date.now(), timeoutMs: TIMEOUT_MS }),
        write: async (route, now) => void cluster.writes.push({ uid: route.uid, at: now.getTime() }),
      },
    );
    for (let ms = 0; ms < 20_000; ms += 100) {
      tracker.note(cluster.route('a'));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(cluster.writes).toHaveLength(4);
  });

  it('counts the sandboxes it kept awake, and forgets them after ten minutes', async () => {
    cluster.deadlines.set('a', Date.now());
    cluster.deadlines.set('b', Date.now());
    const tracker = cluster.tracker();
    tracker.note(cluster.route('a'));
    tracker.note(cluster.route('b'));
    await vi.advanceTimersByTimeAsync(10);
    expect(tracker.keptAwake).toBe(2);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(tracker.keptAwake).toBe(0);
  });

  it('stops writing when stopped', async () => {
    cluster.deadlines.set('a', Date.now());
    const tracker = cluster.tracker();
    tracker.stop();
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    expect(cluster.writes).toEqual([]);
  });
});

describe('several replicas, no coordination', () => {
  it('converge on one write per period when their thresholds are jittered (the watch shows the new timer first)', async () => {
    cluster.deadlines.set('shared', Date.now() + TIMEOUT_MS);
    const replicas = Array.from({ length: 5 }, () => cluster.tracker({ jitter: 0.2 }));
    for (let ms = 0; ms < 600_000; ms += 100) {
      for (const replica of replicas) replica.note(cluster.route('shared'));
      await vi.advanceTimersByTimeAsync(100);
    }
    // Five replicas, each seeing traffic, write no more than one replica alone would (about 20),
    // and never more than one write per replica per period.
    expect(cluster.writes.length).toBeLessThanOrEqual(5 * 21);
    expect(cluster.writes.length).toBeLessThanOrEqual(26);
  });
});
