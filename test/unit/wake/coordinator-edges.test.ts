// The wake coordinator's rules at their edges (src/wake/coordinator.ts), each case found by mutation
// testing (docs/testing.md): what it logs and measures, when it patches and when it must not, the
// patch deadline, and the bounded memory of refused resumes. Same harness as coordinator.test.ts:
// fake timers, the real registry as the feed, a resumer whose outcome each test decides.
import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { HeldRequest, WakeResult } from '../../../src/core/waker.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { WakeCoordinator, type WakeOptions } from '../../../src/wake/coordinator.ts';
import { ResumeError, type ResumeFailure, type Resumer } from '../../../src/wake/resumer.ts';
import { capturedLogger } from '../../support/log-lines.ts';
import { makeRoute } from '../../support/routes.ts';

const wake = { pauseAfterSeconds: 0, timeoutSeconds: 0 };
let version = 1;
const paused = (over: Partial<Route> = {}) =>
  makeRoute({ state: 'paused', podIP: '', pauseRequested: true, wake, resourceVersion: String(++version), ...over });
const running = (podIP: string, over: Partial<Route> = {}) =>
  makeRoute({ state: 'running', podIP, pauseRequested: false, wake, resourceVersion: String(++version), ...over });

/**
 * Resumes as each test says: at once (auto), refused at once (refuse), or when the test settles it. A
 * resume resolves with the patched object's version, well past the versions a test writes meanwhile
 * (events from before the patch).
 */
class ControlledResumer implements Resumer {
  calls: Route[] = [];
  signals: AbortSignal[] = [];
  mode: 'auto' | 'held' | 'refuse' = 'auto';
  #settle: { resolve: () => void; reject: (e: Error) => void }[] = [];
  resume(route: Route, signal: AbortSignal): Promise<string | undefined> {
    this.calls.push(route);
    this.signals.push(signal);
    const patched = String(Number(route.resourceVersion) + 100);
    if (this.mode === 'auto') return Promise.resolve(patched);
    if (this.mode === 'refuse') return Promise.reject(new ResumeError('refused', 'forbidden'));
    return new Promise((resolve, reject) => this.#settle.push({ resolve: () => resolve(patched), reject }));
  }
  succeed(): void {
    this.#settle.shift()?.resolve();
  }
  fail(message: string, failure: ResumeFailure = 'refused'): void {
    this.#settle.shift()?.reject(new ResumeError(failure, message));
  }
  failWith(error: Error): void {
    this.#settle.shift()?.reject(error);
  }
}

let registry: RouteRegistry;
let resumer: ControlledResumer;
let coordinator: WakeCoordinator;
let metrics: ReturnType<typeof createMetrics>;
let lines: Record<string, unknown>[];

function setup(options: Partial<WakeOptions> = {}): void {
  registry = new RouteRegistry();
  registry.markReady();
  resumer = new ControlledResumer();
  metrics = createMetrics(() => registry.countByState());
  const captured = capturedLogger('info');
  lines = captured.lines;
  coordinator = new WakeCoordinator({
    registry,
    resumer,
    metrics,
    logger: captured.logger,
    options: { timeoutMs: 30_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 100, maxWaiters: 100_000, ...options },
  });
}

function hold(route: Route, port = 8080, signal = new AbortController().signal): HeldRequest {
  const result = coordinator.hold(route, port, signal);
  if (!('result' in result)) throw new Error(`answered at once: ${JSON.stringify(result)}`);
  return result;
}
const errorOf = (r: WakeResult) => (r.kind === 'reject' ? r.code : undefined);
const upstreamOf = (r: WakeResult) => (r.kind === 'forward' ? `${r.route.podIP}:${r.port}` : undefined);
const histogramSum = async (name: string) =>
  (await metrics.registry.getSingleMetric(name)?.get())?.values.find((v) => (v as { metricName?: string }).metricName === `${name}_sum`)
    ?.value;
const wakes = () => metrics.registry.getSingleMetricAsString('sandbox_extproc_wakes_total');

beforeEach(() => {
  vi.useFakeTimers();
  setup();
});
afterEach(() => {
  coordinator.close();
  vi.useRealTimers();
});

describe('what a wake logs and measures', () => {
  it('logs the wake it released, as the wake component, with how long it took and the patch within it', async () => {
    resumer.mode = 'held';
    registry.upsert(paused({ id: 'abc' }));
    const pending = hold(registry.get('abc') as Route);
    await vi.advanceTimersByTimeAsync(1_500);
    resumer.succeed();
    await vi.advanceTimersByTimeAsync(2_000);
    registry.upsert(running('10.0.0.42', { id: 'abc' }));
    await pending.result;
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        component: 'wake',
        msg: 'sandbox woken',
        sandboxId: 'abc',
        waiters: 1,
        podIP: '10.0.0.42',
        wakeMs: 3_500,
        patchMs: 1_500,
      }),
    ]);
    expect(await histogramSum('sandbox_extproc_wake_patch_duration_seconds')).toBe(1.5);
    expect(await histogramSum('sandbox_extproc_wake_wait_duration_seconds')).toBe(2);
  });

  it('measures the wait from the start when a resume was already under way (no patch sent)', async () => {
    registry.upsert(paused({ pauseRequested: false }));
    const pending = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(4_000);
    registry.upsert(running('10.0.0.9'));
    await pending.result;
    expect(resumer.calls).toHaveLength(0);
    expect(lines[0]).toMatchObject({ msg: 'sandbox woken', wakeMs: 4_000, patchMs: 0 });
    expect(await histogramSum('sandbox_extproc_wake_wait_duration_seconds')).toBe(4);
  });

  it('logs a failed wake with the failure kind and the API server words (which the answer never carries)', async () => {
    resumer.mode = 'held';
    registry.upsert(paused({ id: 'abc', uid: 'u-7' }));
    const pending = hold(registry.get('abc') as Route);
    resumer.fail('sandboxes "abc" is forbidden');
    expect(errorOf(await pending.result)).toBe('sandbox_wake_failed');
    expect(lines).toEqual([
      expect.objectContaining({
        level: 40,
        component: 'wake',
        msg: 'sandbox wake failed',
        sandboxId: 'abc',
        uid: 'u-7',
        failure: 'refused',
        err: 'sandboxes "abc" is forbidden',
      }),
    ]);
  });

  it('reads an error that is not a ResumeError as an unknown failure, answered and not remembered', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    resumer.failWith(new Error('a bug'));
    expect(errorOf(await pending.result)).toBe('sandbox_wake_failed');
    expect(lines[0]).toMatchObject({ failure: 'unknown', err: 'a bug' });
    hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(2);
  });

  it('says nothing of a patch that fails after the wake was released (its retries were cut short)', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.4'));
    await pending.result;
    resumer.fail('aborted', 'refused');
    await vi.advanceTimersByTimeAsync(0);
    expect(lines.map((l) => l['msg'])).toEqual(['sandbox woken']);
    // Nor is the refusal remembered: the next wake of the object patches.
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(2);
  });

  it('tells listeners the number of waiting requests each time it changes, until they unsubscribe', async () => {
    const seen: number[] = [];
    const unsubscribe = coordinator.onWaitersChange((n) => seen.push(n));
    registry.upsert(paused());
    const leaving = new AbortController();
    hold(registry.get('sbx') as Route, 80, leaving.signal);
    const staying = hold(registry.get('sbx') as Route);
    leaving.abort();
    registry.upsert(running('10.0.0.5'));
    await staying.result;
    expect(seen).toEqual([1, 2, 1, 0]);
    unsubscribe();
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    expect(seen).toEqual([1, 2, 1, 0]);
  });
});

describe('which object a wake is for', () => {
  it('says which object is being woken: the same ID held by another object is not', () => {
    registry.upsert(paused({ uid: 'owner' }));
    const route = registry.get('sbx') as Route;
    expect(coordinator.waking(route)).toBe(false);
    hold(route);
    expect(coordinator.waking(route)).toBe(true);
    expect(coordinator.waking({ ...route, uid: 'other' })).toBe(false);
  });

  it('fails the wake of an object whose ID a request now finds on another object, and wakes the new one', async () => {
    registry.upsert(paused({ uid: 'old' }));
    const first = hold(registry.get('sbx') as Route);
    const second = hold(paused({ uid: 'new' }));
    expect(errorOf(await first.result)).toBe('sandbox_not_found');
    expect(resumer.calls.map((r) => r.uid)).toEqual(['old', 'new']);
    expect(coordinator.waking(paused({ uid: 'new' }))).toBe(true);
    void second;
  });

  it('never releases to another object that claims the ID, even when the first one was gone before the wake began', async () => {
    // The request was decided on a route the table no longer holds; the ID then comes to another object.
    const stale = paused({ uid: 'gone' });
    const pending = hold(stale);
    registry.upsert(running('10.6.6.6', { uid: 'newcomer' }));
    expect(errorOf(await pending.result)).toBe('sandbox_not_found');
  });

  it('answers a client that went away as failed, never as timed out', async () => {
    registry.upsert(paused());
    const client = new AbortController();
    const pending = hold(registry.get('sbx') as Route, 80, client.signal);
    client.abort();
    expect(await pending.result).toEqual({ kind: 'reject', code: 'sandbox_wake_failed', sandboxId: 'sbx' });
  });

  it('stops listening to the table when closed', () => {
    let unsubscribed = 0;
    const subscribe = registry.subscribe.bind(registry);
    vi.spyOn(registry, 'subscribe').mockImplementation((listener) => {
      const unsubscribe = subscribe(listener);
      return () => ((unsubscribed += 1), unsubscribe());
    });
    const own = new WakeCoordinator({
      registry,
      resumer,
      metrics,
      logger: capturedLogger().logger,
      options: { timeoutMs: 1_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 1, maxWaiters: 1 },
    });
    own.close();
    expect(unsubscribed).toBe(1);
  });
});

describe('when to patch, and when not', () => {
  it('sends no second patch when an event from before its patch shows the sandbox still asked to pause', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(paused());
    resumer.succeed();
    await vi.advanceTimersByTimeAsync(0);
    registry.upsert(paused());
    expect(resumer.calls).toHaveLength(1);
    registry.upsert(running('10.0.0.3'));
    expect(upstreamOf(await pending.result)).toBe('10.0.0.3:8080');
  });

  it('sends no patch when the pause completes already resumed by someone else (spec.paused false)', async () => {
    registry.upsert(paused({ pausing: true }));
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(paused({ pausing: false, pauseRequested: false }));
    registry.upsert(running('10.0.0.6'));
    expect(upstreamOf(await pending.result)).toBe('10.0.0.6:8080');
    expect(resumer.calls).toHaveLength(0);
  });

  it('ends a wake whose every client left during the patch once the patch succeeds, counted as abandoned', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    const client = new AbortController();
    hold(registry.get('sbx') as Route, 80, client.signal);
    client.abort();
    expect(coordinator.inFlight).toBe(1);
    resumer.succeed();
    await vi.advanceTimersByTimeAsync(0);
    expect(coordinator.inFlight).toBe(0);
    expect(await wakes()).toContain('outcome="abandoned"} 1');
  });

  it('stops the patch retries at the wake deadline, whether or not anyone still waits', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(29_999);
    expect(resumer.signals[0]?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(resumer.signals[0]?.aborted).toBe(true);
  });

  it('leaves no timer behind once a wake is over, released or failed', async () => {
    registry.upsert(paused());
    const released = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(0);
    registry.upsert(running('10.0.0.1'));
    await released.result;
    expect(vi.getTimerCount()).toBe(0);
    resumer.mode = 'held';
    registry.upsert(paused());
    const failed = hold(registry.get('sbx') as Route);
    resumer.fail('refused');
    await failed.result;
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('the memory of refused resumes', () => {
  /** Waits for every patch started so far to settle. */
  const settle = () => vi.advanceTimersByTimeAsync(0);
  const remembered = (route: Route) => coordinator.hold(route, 80, new AbortController().signal);
  const retryAfterOf = (answer: ReturnType<typeof remembered>) =>
    'result' in answer || answer.kind !== 'reject' ? undefined : answer.retryAfter;
  // The coordinator's bound (FAILURE_MEMORY_CAPACITY): refusals of this many objects are remembered.
  const CAPACITY = 10_000;

  it('forgets a refusal once a resume of that object succeeds: a later refusal starts again at the first window', async () => {
    resumer.mode = 'refuse';
    const route = paused();
    void hold(route).result;
    await settle();
    expect(retryAfterOf(remembered(route))).toBe(2);
    await vi.advanceTimersByTimeAsync(2_000);
    resumer.mode = 'auto';
    void hold(route).result;
    await settle();
    resumer.mode = 'refuse';
    registry.upsert(running('10.0.0.1'));
    const again = paused();
    void hold(again).result;
    await settle();
    expect(retryAfterOf(remembered(again))).toBe(2);
  });

  it(`remembers the last ${CAPACITY} objects refused, forgetting the oldest first`, async () => {
    resumer.mode = 'refuse';
    const routes = Array.from({ length: CAPACITY + 1 }, (_, i) => paused({ id: `s${i}`, uid: `u${i}` }));
    for (const route of routes) void hold(route).result;
    await settle();
    // The oldest was forgotten: its next request tries again. The second oldest is still remembered.
    expect(retryAfterOf(remembered(routes[1] as Route))).toBe(2);
    const calls = resumer.calls.length;
    void hold(routes[0] as Route).result;
    expect(resumer.calls).toHaveLength(calls + 1);
  });

  it('keeps an object refused again among the most recent', async () => {
    resumer.mode = 'refuse';
    const routes = Array.from({ length: CAPACITY }, (_, i) => paused({ id: `s${i}`, uid: `u${i}` }));
    for (const route of routes) void hold(route).result;
    await settle();
    await vi.advanceTimersByTimeAsync(2_000);
    // The first object is refused again (its window passed): now the newest, remembered twice as long.
    void hold(routes[0] as Route).result;
    void hold(paused({ id: 'one-more', uid: 'one-more' })).result;
    await settle();
    expect(retryAfterOf(remembered(routes[0] as Route))).toBe(4);
  });

  it('sweeps refusals whose window has passed, oldest first, down to half the bound, keeping the rest', async () => {
    resumer.mode = 'refuse';
    const old = Array.from({ length: 6_000 }, (_, i) => paused({ id: `o${i}`, uid: `o${i}` }));
    for (const route of old) void hold(route).result;
    await settle();
    // Exactly at the end of their windows: passed.
    await vi.advanceTimersByTimeAsync(2_000);
    const fresh = Array.from({ length: CAPACITY - old.length + 1 }, (_, i) => paused({ id: `f${i}`, uid: `f${i}` }));
    for (const route of fresh) void hold(route).result;
    await settle();
    // 10,001 held: passed ones go, oldest first, until 5,000 remain (o0 ... o5000 swept; o5001 on kept).
    const refusedAgain = async (route: Route) => {
      void hold(route).result;
      await settle();
      return retryAfterOf(remembered(route));
    };
    expect(await refusedAgain(old[0] as Route)).toBe(2);
    expect(await refusedAgain(old[5_000] as Route)).toBe(2);
    expect(await refusedAgain(old[5_001] as Route)).toBe(4);
    expect(retryAfterOf(remembered(fresh[0] as Route))).toBe(2);
  });
});

describe('waiters, to the last one', () => {
  it('keeps the wake going for the others when one client leaves after the patch was sent', async () => {
    registry.upsert(paused());
    const leaving = new AbortController();
    hold(registry.get('sbx') as Route, 80, leaving.signal);
    const staying = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(0);
    leaving.abort();
    expect(coordinator.inFlight).toBe(1);
    registry.upsert(running('10.0.0.5'));
    expect(upstreamOf(await staying.result)).toBe('10.0.0.5:8080');
  });

  it("leaves no listener on a client's signal once its request is answered", async () => {
    registry.upsert(paused());
    const client = new AbortController();
    const pending = hold(registry.get('sbx') as Route, 80, client.signal);
    expect(getEventListeners(client.signal, 'abort')).toHaveLength(1);
    registry.upsert(running('10.0.0.5'));
    await pending.result;
    expect(getEventListeners(client.signal, 'abort')).toHaveLength(0);
  });

  it('keeps the waiters gauge in step', async () => {
    const gauge = async () => (await metrics.registry.getSingleMetric('sandbox_extproc_wake_waiters')?.get())?.values[0]?.value;
    registry.upsert(paused());
    const pending = [hold(registry.get('sbx') as Route), hold(registry.get('sbx') as Route)];
    expect(await gauge()).toBe(2);
    registry.upsert(running('10.0.0.5'));
    await Promise.all(pending.map((p) => p.result));
    expect(await gauge()).toBe(0);
  });

  it('cuts the patch retries short when the wake ends first (the sandbox ran while the patch was in flight)', async () => {
    resumer.mode = 'held';
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.5'));
    await pending.result;
    expect(resumer.signals[0]?.aborted).toBe(true);
  });
});

describe("the sandbox's own state failing a wake, and who hears of the end", () => {
  const failure = () =>
    lines.find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('sandbox wake failed: '))?.['msg'];

  it.each([
    ['deleted', () => registry.remove('u-1'), 'sandbox_not_found', 'the sandbox was deleted or its ID moved'],
    [
      'claimed by a second object',
      () => registry.upsert(paused({ uid: 'u-2' })),
      'sandbox_id_conflict',
      'the sandbox ID is claimed by more than one object',
    ],
    ['being deleted', () => registry.upsert(paused({ uid: 'u-1', deleting: true })), 'sandbox_not_running', 'the sandbox is being deleted'],
    ['dead', () => registry.upsert(paused({ uid: 'u-1', state: 'dead' })), 'sandbox_not_running', 'the sandbox can no longer run'],
  ])('answers a sandbox %s with its code, and logs why', async (_what, change, code, why) => {
    resumer.mode = 'held';
    registry.upsert(paused({ uid: 'u-1' }));
    const pending = hold(registry.get('sbx') as Route);
    change();
    expect(errorOf(await pending.result)).toBe(code);
    expect(failure()).toBe(`sandbox wake failed: ${why}`);
  });

  it('fails a wake asked to pause again after someone else resumed it, with no patch of its own', async () => {
    registry.upsert(paused({ pausing: true }));
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(paused({ pausing: false, pauseRequested: false }));
    registry.upsert(paused({ pausing: false, pauseRequested: true }));
    await vi.advanceTimersByTimeAsync(1);
    expect(errorOf(await pending.result)).toBe('sandbox_wake_failed');
    expect(resumer.calls).toHaveLength(0);
  });

  it('counts a flap for a wake less than a minute after the idle suspension, not at a minute exactly', async () => {
    const flaps = async () => (await metrics.idleFlaps.get()).values[0]?.value ?? 0;
    registry.upsert(paused({ idleSuspendedAt: Date.now() - 60_000 }));
    const first = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.60'));
    await first.result;
    expect(await flaps()).toBe(0);
    registry.upsert(paused({ idleSuspendedAt: Date.now() - 59_999 }));
    const second = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.61'));
    await second.result;
    expect(await flaps()).toBe(1);
  });

  it('tells each end listener the outcome once per wake, until it unsubscribes', async () => {
    const heard: string[] = [];
    const unsubscribe = coordinator.onWakeEnd((outcome) => heard.push(outcome));
    registry.upsert(paused());
    const first = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.7'));
    await first.result;
    expect(heard).toEqual(['woken']);
    unsubscribe();
    registry.upsert(paused());
    const second = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.8'));
    await second.result;
    expect(heard).toEqual(['woken']);
  });
});
