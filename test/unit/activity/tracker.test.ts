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
        latest: (uid) => this.route(uid),
        write: async (route, now) => {
          this.writes.push({ uid: route.uid, at: now.getTime() });
          this.deadlines.set(route.uid, now.getTime() + TIMEOUT_MS);
          return 'applied';
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
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

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
        latest: (uid) => cluster.route(uid),
        write: async (route, now) => (cluster.writes.push({ uid: route.uid, at: now.getTime() }), 'applied'),
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
  async function run(replicaCount: number): Promise<number> {
    cluster.deadlines.set('shared', Date.now() + TIMEOUT_MS);
    const replicas = Array.from({ length: replicaCount }, () => cluster.tracker({ jitter: 0.2 }));
    for (let ms = 0; ms < 600_000; ms += 100) {
      for (const replica of replicas) replica.note(cluster.route('shared'));
      await vi.advanceTimersByTimeAsync(100);
    }
    return cluster.writes.length;
  }

  it('converge on one write per period: the first to cross its jittered threshold writes, the others see the new timer', async () => {
    // Thresholds spread evenly over the jitter range (the draws are random in production).
    const draws = [0, 0.25, 0.5, 0.75, 1];
    vi.spyOn(Math, 'random').mockImplementation(() => draws.shift() ?? 0.5);
    expect(await run(5)).toBeLessThanOrEqual(21);
  });

  it('never write more than once per replica per period, whatever the draws', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5); // the worst case: identical thresholds
    const writes = await run(5);
    expect(writes).toBeGreaterThan(21);
    expect(writes).toBeLessThanOrEqual(5 * 21);
  });
});

describe('the write rule, to its edges', () => {
  it('writes when exactly the fraction of the timeout is left', async () => {
    cluster.deadlines.set('a', Date.now() + 0.5 * TIMEOUT_MS);
    cluster.tracker().note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(1);
    expect(cluster.writes).toHaveLength(1);
  });

  it('lowers a replica threshold by its jitter draw: fraction x (1 - jitter x U)', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    // jitter 0.2, U 0.5: the threshold is 0.5 x 0.9 = 0.45 of the timeout.
    cluster.deadlines.set('a', Date.now() + 0.46 * TIMEOUT_MS);
    cluster.deadlines.set('b', Date.now() + 0.44 * TIMEOUT_MS);
    const tracker = cluster.tracker({ jitter: 0.2 });
    tracker.note(cluster.route('a'));
    tracker.note(cluster.route('b'));
    await vi.advanceTimersByTimeAsync(1);
    expect(cluster.writes.map((w) => w.uid)).toEqual(['b']);
  });

  it('writes again once exactly the minimum interval has passed since its last write', async () => {
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0 },
      {
        timerOf: () => ({ deadline: Date.now(), timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: async (route, now) => (cluster.writes.push({ uid: route.uid, at: now.getTime() }), 'applied'),
      },
    );
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    const first = cluster.writes[0]?.at as number;
    await vi.advanceTimersByTimeAsync(first + 4_999 - Date.now());
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    expect(cluster.writes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    expect(cluster.writes.map((w) => w.at - first)).toEqual([0, 5_000]);
  });

  it('costs a noted sandbox no timer read while its write is pending, nor anything once stopped', async () => {
    cluster.deadlines.set('a', Date.now());
    let reads = 0;
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0 },
      {
        timerOf: () => ((reads += 1), { deadline: Date.now(), timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: async () => 'applied',
      },
    );
    tracker.note(cluster.route('a'));
    tracker.note(cluster.route('a'));
    expect(reads).toBe(1);
    tracker.stop();
    tracker.note(cluster.route('b'));
    expect(reads).toBe(1);
  });

  it('schedules one drain for any number of notes before it runs', async () => {
    const tracker = cluster.tracker();
    for (let i = 0; i < 50; i += 1) {
      cluster.deadlines.set(`s${i}`, Date.now());
      tracker.note(cluster.route(`s${i}`));
    }
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(0);
    expect(cluster.writes).toHaveLength(50);
  });
});

describe('writes in flight', () => {
  /** A tracker whose writes stay in flight until the test settles them. */
  function heldWrites(concurrency: number) {
    const inFlight: { uid: string; settle: (error?: Error) => void }[] = [];
    const outcomes: [string, number, unknown][] = [];
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0, concurrency },
      {
        timerOf: (route) => ({ deadline: cluster.deadlines.get(route.uid) ?? Date.now(), timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: (route) =>
          new Promise<'applied'>((resolve, reject) =>
            inFlight.push({ uid: route.uid, settle: (error) => (error === undefined ? resolve('applied') : reject(error)) }),
          ),
        onWrite: (outcome, remainingMs, error) => outcomes.push([outcome, remainingMs, error]),
      },
    );
    return { tracker, inFlight, outcomes };
  }

  it('keeps at most `concurrency` writes in flight, and starts the next as one ends', async () => {
    const { tracker, inFlight } = heldWrites(2);
    for (const uid of ['a', 'b', 'c', 'd']) {
      cluster.deadlines.set(uid, Date.now());
      tracker.note(cluster.route(uid));
    }
    await vi.advanceTimersByTimeAsync(0);
    expect(inFlight.map((w) => w.uid)).toEqual(['a', 'b']);
    inFlight[0]?.settle();
    await vi.advanceTimersByTimeAsync(0);
    expect(inFlight.map((w) => w.uid)).toEqual(['a', 'b', 'c']);
    inFlight[1]?.settle(new Error('refused'));
    await vi.advanceTimersByTimeAsync(0);
    expect(inFlight.map((w) => w.uid)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('reports each write, applied or failed, with the time that was left on the timer', async () => {
    const { tracker, inFlight, outcomes } = heldWrites(4);
    cluster.deadlines.set('a', Date.now() + 20_000);
    cluster.deadlines.set('b', Date.now() + 10_000);
    tracker.note(cluster.route('a'));
    tracker.note(cluster.route('b'));
    await vi.advanceTimersByTimeAsync(0);
    const refused = new Error('refused');
    inFlight[0]?.settle();
    inFlight[1]?.settle(refused);
    await vi.advanceTimersByTimeAsync(0);
    expect(outcomes).toEqual([
      ['applied', 20_000, undefined],
      ['failed', 10_000, refused],
    ]);
  });
});

describe('activity it failed to record', () => {
  it('counts as in use for the given time from the failed write, until a write lands; a superseded write leaves it', async () => {
    const outcomes: ('applied' | 'superseded' | Error)[] = [new Error('refused'), 'superseded', 'applied'];
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0 },
      {
        timerOf: () => ({ deadline: Date.now(), timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: async () => {
          const next = outcomes.shift() as 'applied' | 'superseded' | Error;
          if (next instanceof Error) throw next;
          return next;
        },
      },
    );
    expect(tracker.unrecorded('a', 10_000)).toBe(false);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    expect(tracker.unrecorded('a', 10_000)).toBe(true);
    expect(tracker.unrecorded('b', 10_000)).toBe(false);
    await vi.advanceTimersByTimeAsync(4_999);
    expect(tracker.unrecorded('a', 5_000)).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(tracker.unrecorded('a', 5_000)).toBe(false);
    expect(tracker.unrecorded('a', 10_000)).toBe(true);
    // Superseded: the object changed, the record is still not ours.
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    expect(tracker.unrecorded('a', 10_000)).toBe(true);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    expect(tracker.unrecorded('a', 60_000)).toBe(false);
    expect(outcomes).toEqual([]);
  });

  it('remembers a later failure from its own time, and at most 10,000 failed sandboxes, the longest unrecorded dropped first', async () => {
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 1, jitter: 0, concurrency: 20_000 },
      {
        timerOf: () => ({ deadline: Date.now(), timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: () => Promise.reject(new Error('away')),
      },
    );
    tracker.note(cluster.route('first'));
    tracker.note(cluster.route('second'));
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(3_000);
    tracker.note(cluster.route('first'));
    await vi.advanceTimersByTimeAsync(0);
    // Measured from the second failure: 3 s ago would be out of a 2 s window.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(tracker.unrecorded('first', 2_000)).toBe(true);
    expect(tracker.unrecorded('second', 2_000)).toBe(false);
    for (let i = 0; i < 9_999; i += 1) tracker.note(cluster.route(`s${i}`));
    await vi.advanceTimersByTimeAsync(0);
    // 10,001 failed: "second" has gone unrecorded the longest.
    expect(tracker.unrecorded('second', 60_000)).toBe(false);
    expect(tracker.unrecorded('first', 60_000)).toBe(true);
    expect(tracker.unrecorded('s0', 60_000)).toBe(true);
    expect(tracker.unrecorded('s9998', 60_000)).toBe(true);
  });
});

describe('the kept-awake count', () => {
  it('counts a sandbox for ten minutes after its last write, to the millisecond', async () => {
    const tracker = cluster.tracker();
    cluster.deadlines.set('a', Date.now());
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(0);
    const written = cluster.writes[0]?.at as number;
    await vi.advanceTimersByTimeAsync(written + 10 * 60_000 - 1 - Date.now());
    expect(tracker.keptAwake).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(tracker.keptAwake).toBe(0);
  });

  it('forgets by the last write: a sandbox written again is not dropped with its first write', async () => {
    const tracker = cluster.tracker();
    cluster.deadlines.set('a', Date.now());
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(60_000);
    cluster.deadlines.set('b', Date.now());
    tracker.note(cluster.route('b'));
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    // a's timer is low again: written a second time, now the most recent.
    cluster.deadlines.set('a', Date.now());
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    // 11 minutes after b's only write, 5 after a's second.
    expect(cluster.writes.map((w) => w.uid)).toEqual(['a', 'b', 'a']);
    expect(tracker.keptAwake).toBe(1);
  });
});

describe('a write the object outran', () => {
  it('lets the next use write at once when the write was superseded (the object changed under it), not one interval later', async () => {
    let outcome: 'applied' | 'superseded' = 'superseded';
    const writes: number[] = [];
    const tracker = new ActivityTracker(
      { fraction: 0.5, minIntervalMs: 5_000, jitter: 0 },
      {
        now: () => Date.now(),
        // The timer stays low: only the write rule decides whether a use writes.
        timerOf: () => ({ deadline: Date.now() + 0.4 * TIMEOUT_MS, timeoutMs: TIMEOUT_MS }),
        latest: (uid) => cluster.route(uid),
        write: async (_route, now) => {
          writes.push(now.getTime());
          return outcome;
        },
      },
    );
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    expect(writes).toHaveLength(2);
    // Applied, the write holds the next one back for the minimum interval.
    outcome = 'applied';
    await vi.advanceTimersByTimeAsync(10);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    expect(writes).toHaveLength(3);
    tracker.note(cluster.route('a'));
    await vi.advanceTimersByTimeAsync(10);
    expect(writes).toHaveLength(3);
  });
});
