// The wake state machine, with a controllable clock (fake timers), the real route registry as the
// feed, and a resumer whose outcome each test decides. The coordinator speaks in domain outcomes
// (core/waker.ts); the processor turns them into wire answers.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { HeldRequest, WakeResult } from '../../../src/core/waker.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { ENVOY_MARGIN_MS, FAILURE_MEMORY_MS, WakeCoordinator, type WakeOptions } from '../../../src/wake/coordinator.ts';
import { ResumeError, type ResumeFailure, type Resumer } from '../../../src/wake/resumer.ts';
import { makeRoute } from '../../support/routes.ts';

const wake = { pauseAfterSeconds: 0, timeoutSeconds: 0 };
let version = 1;
const paused = (over: Partial<Route> = {}) =>
  makeRoute({ state: 'paused', podIP: '', pauseRequested: true, wake, resourceVersion: String(++version), ...over });
const running = (podIP: string, over: Partial<Route> = {}) =>
  makeRoute({ state: 'running', podIP, pauseRequested: false, wake, resourceVersion: String(++version), ...over });

class ControlledResumer implements Resumer {
  calls: Route[] = [];
  #settle: { resolve: () => void; reject: (e: Error) => void }[] = [];
  auto = true;
  /** Resolves with the version the patch made: one past the route it was decided on. */
  resume(route: Route): Promise<string | undefined> {
    this.calls.push(route);
    const patched = String(Number(route.resourceVersion) + 1);
    if (this.auto) return Promise.resolve(patched);
    return new Promise((resolve, reject) => this.#settle.push({ resolve: () => resolve(patched), reject }));
  }
  succeed(): void {
    this.#settle.shift()?.resolve();
  }
  fail(message: string, failure: ResumeFailure = 'refused'): void {
    this.#settle.shift()?.reject(new ResumeError(failure, message));
  }
}

let registry: RouteRegistry;
let resumer: ControlledResumer;
/** Every line the coordinator logged, parsed. */
let logged: Record<string, unknown>[];
let coordinator: WakeCoordinator;
let metrics: ReturnType<typeof createMetrics>;

function setup(options: Partial<WakeOptions> = {}): void {
  logged = [];
  registry = new RouteRegistry();
  registry.markReady();
  resumer = new ControlledResumer();
  metrics = createMetrics(() => registry.countByState());
  coordinator = new WakeCoordinator({
    registry,
    resumer,
    metrics,
    logger: createLogger('info', { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) }),
    options: { timeoutMs: 30_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 100, maxWaiters: 1000, ...options },
  });
}

function hold(route: Route, port = 8080, signal = new AbortController().signal): HeldRequest {
  const result = coordinator.hold(route, port, signal);
  if (!('result' in result)) throw new Error(`answered at once: ${JSON.stringify(result)}`);
  return result;
}
const now = (route: Route, port = 80): WakeResult => {
  const result = coordinator.hold(route, port, new AbortController().signal);
  if ('result' in result) throw new Error('held, expected an answer at once');
  return result;
};
const outcome = (p: HeldRequest): Promise<WakeResult> => p.result;
const upstreamOf = (r: WakeResult) => (r.kind === 'forward' ? `${r.route.podIP}:${r.port}` : undefined);
const errorOf = (r: WakeResult) => (r.kind === 'reject' ? r.code : undefined);
const wakes = () => metrics.registry.getSingleMetricAsString('sandbox_extproc_wakes_total');

beforeEach(() => {
  vi.useFakeTimers();
  setup();
});
afterEach(() => {
  coordinator.close();
  vi.useRealTimers();
});

describe('waking', () => {
  it('patches once and releases the request when the route turns running, to the new IP and the asked port', async () => {
    const route = paused();
    registry.upsert(route);
    const pending = hold(route, 9000);
    expect(pending.overrideMs).toBe(30_000 + ENVOY_MARGIN_MS);
    expect(resumer.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1500);
    registry.upsert(running('10.0.0.42'));
    const answer = await outcome(pending);
    expect(upstreamOf(answer)).toBe('10.0.0.42:9000');
    expect(answer.kind === 'forward' && answer.waitedMs).toBe(1500);
    expect(coordinator.waiting).toBe(0);
    expect(coordinator.inFlight).toBe(0);
  });

  it('coalesces concurrent requests into one wake and one patch', async () => {
    const route = paused();
    registry.upsert(route);
    const pendings = Array.from({ length: 50 }, (_, i) => hold(route, 8000 + i));
    expect(resumer.calls).toHaveLength(1);
    expect(coordinator.waiting).toBe(50);
    registry.upsert(running('10.0.0.7'));
    const all = await Promise.all(pendings.map(outcome));
    all.forEach((answer, i) => expect(upstreamOf(answer)).toBe(`10.0.0.7:${8000 + i}`));
    expect(await wakes()).toContain('outcome="woken"} 1');
  });

  it('does not patch while the sandbox is still pausing, and patches as soon as the pause completes', async () => {
    registry.upsert(paused({ pausing: true }));
    const pending = hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(0);
    registry.upsert(paused({ pausing: true })); // still pausing: nothing happens
    expect(resumer.calls).toHaveLength(0);
    registry.upsert(paused({ pausing: false }));
    expect(resumer.calls).toHaveLength(1);
    registry.upsert(running('10.0.0.8'));
    expect(upstreamOf(await outcome(pending))).toBe('10.0.0.8:8080');
  });

  it('sends no patch when a resume is already under way (spec.paused is false)', async () => {
    registry.upsert(paused({ pauseRequested: false }));
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.9'));
    await outcome(pending);
    expect(resumer.calls).toHaveLength(0);
  });
});

describe("following the real controllers' resume to the end", () => {
  // OpenKruise: after spec.paused=false the new pod runs and the sandbox shows phase Running with
  // Ready=False until its runtime is initialised; only then Ready=True. agent-sandbox: the new pod
  // starts (DependenciesNotReady) before it is Ready.
  it('waits through "running but not Ready yet" and releases on Ready, with one patch', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(10);
    registry.upsert(paused({ pauseRequested: false, resuming: true, phase: 'Resuming' }));
    registry.upsert(
      makeRoute({
        state: 'creating',
        podIP: '',
        pauseRequested: false,
        resuming: true,
        wake,
        phase: 'Running',
        resourceVersion: String(++version),
      }),
    );
    registry.upsert(
      makeRoute({
        state: 'creating',
        podIP: '',
        pauseRequested: false,
        resuming: true,
        wake,
        phase: 'Running',
        resourceVersion: String(++version),
      }),
    );
    expect(coordinator.waiting).toBe(1);
    registry.upsert(running('10.0.0.50'));
    expect(upstreamOf(await outcome(pending))).toBe('10.0.0.50:8080');
    expect(resumer.calls).toHaveLength(1);
    expect(await wakes()).toContain('outcome="woken"} 1');
  });

  it('fails the wake, logged at warn with the state, when the sandbox is asked to pause again after it was asked to run', async () => {
    const route = paused();
    registry.upsert(route);
    const pending = hold(route);
    await vi.advanceTimersByTimeAsync(0);
    // Events from before the resume patch (older versions) change nothing.
    registry.upsert(paused({ resourceVersion: String(Number(route.resourceVersion)) }));
    expect(coordinator.waiting).toBe(1);
    registry.upsert(paused({ pauseRequested: true, phase: 'Running' }));
    expect(errorOf(await outcome(pending))).toBe('sandbox_wake_failed');
    const line = logged.find((l) => String(l['msg']).startsWith('sandbox wake failed'));
    expect(line).toMatchObject({ level: 40, sandboxId: 'sbx', state: 'paused', phase: 'Running', pauseRequested: true });
    expect(String(line?.['msg'])).toContain('asked to pause again');
  });

  it('logs a wake failed by the sandbox dying at warn, with its phase', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(
      makeRoute({ state: 'dead', podIP: '', pauseRequested: false, wake, phase: 'Failed', resourceVersion: String(++version) }),
    );
    expect(errorOf(await outcome(pending))).toBe('sandbox_not_running');
    expect(logged.find((l) => String(l['msg']).startsWith('sandbox wake failed'))).toMatchObject({
      level: 40,
      state: 'dead',
      phase: 'Failed',
    });
  });
});

describe('flaps (a wake soon after an idle suspension)', () => {
  it('counts a wake within a minute of the idle suspension, and not one after', async () => {
    const now = Date.now();
    const flaps = async () => (await metrics.idleFlaps.get()).values[0]?.value ?? 0;
    registry.upsert(paused({ idleSuspendedAt: now - 59_000 }));
    const first = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.60'));
    await outcome(first);
    expect(await flaps()).toBe(1);
    registry.upsert(paused({ idleSuspendedAt: now - 61_000 }));
    const second = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.61'));
    await outcome(second);
    expect(await flaps()).toBe(1);
  });
});

describe('deadlines and failures', () => {
  it('answers 503 sandbox_wake_timeout at the deadline and frees the slot', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(30_000);
    expect(errorOf(await outcome(pending))).toBe('sandbox_wake_timeout');
    expect(coordinator.waiting).toBe(0);
    expect(await wakes()).toContain('outcome="timeout"} 1');
  });

  it('uses the per-sandbox deadline, capped to fit inside Envoy max_message_timeout', () => {
    registry.upsert(paused({ wake: { pauseAfterSeconds: 0, timeoutSeconds: 5 } }));
    expect(hold(registry.get('sbx') as Route).overrideMs).toBe(5000 + ENVOY_MARGIN_MS);
    coordinator.close();
    setup({ maxHoldMs: 10_000 });
    registry.upsert(paused({ uid: 'u2', wake: { pauseAfterSeconds: 0, timeoutSeconds: 600 } }));
    expect(hold(registry.get('sbx') as Route).overrideMs).toBe(10_000);
  });

  it('answers every waiter sandbox_wake_failed when the patch fails, without the words of the API server', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const a = hold(registry.get('sbx') as Route);
    const b = hold(registry.get('sbx') as Route);
    resumer.fail('sandboxes.agents.kruise.io "sbx" is forbidden: User "system:serviceaccount:x:y" cannot patch');
    const answers = [await outcome(a), await outcome(b)];
    expect(answers.map(errorOf)).toEqual(['sandbox_wake_failed', 'sandbox_wake_failed']);
    expect(JSON.stringify(answers)).not.toMatch(/forbidden|serviceaccount/);
  });

  it('remembers a failed resume: later requests get 503 with Retry-After at once and send no patch, until the window passes', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const first = hold(registry.get('sbx') as Route);
    resumer.fail('refused');
    expect(errorOf(await outcome(first))).toBe('sandbox_wake_failed');
    const remembered = now(registry.get('sbx') as Route);
    expect(remembered).toMatchObject({ kind: 'reject', code: 'sandbox_wake_failed', retryAfter: FAILURE_MEMORY_MS.first / 1000 });
    expect(resumer.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(FAILURE_MEMORY_MS.first);
    // The window passed: one more try, which is refused again and remembered twice as long.
    const second = hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(2);
    resumer.fail('refused again');
    await outcome(second);
    expect(now(registry.get('sbx') as Route)).toMatchObject({ retryAfter: (2 * FAILURE_MEMORY_MS.first) / 1000 });
    expect(resumer.calls).toHaveLength(2);
  });

  it('does not remember an unreachable API server: the next request tries again', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const first = hold(registry.get('sbx') as Route);
    resumer.fail('ECONNREFUSED', 'unreachable');
    expect(errorOf(await outcome(first))).toBe('sandbox_wake_failed');
    hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(2);
  });

  it('tries again at once when the refused object changed (a new resourceVersion)', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const first = hold(registry.get('sbx') as Route);
    resumer.fail('refused');
    await outcome(first);
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    expect(resumer.calls).toHaveLength(2);
  });

  it('counts a wake once when its last waiter leaves during the patch and the patch then fails', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const client = new AbortController();
    hold(registry.get('sbx') as Route, 8080, client.signal);
    client.abort();
    resumer.fail('refused');
    await vi.advanceTimersByTimeAsync(0);
    const text = await wakes();
    const counted = [...text.matchAll(/outcome="(\w+)"} (\d+)/g)].map(([, o, n]) => [o, Number(n)]);
    expect(counted.reduce((sum, [, n]) => sum + (n as number), 0)).toBe(1);
    expect(coordinator.inFlight).toBe(0);
  });

  it('counts a wake once when the route runs while the patch is still in flight', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.4'));
    await outcome(pending);
    resumer.succeed();
    await vi.advanceTimersByTimeAsync(0);
    expect(await wakes()).toMatch(/outcome="woken"} 1/);
    expect(await wakes()).not.toMatch(/outcome="(failed|abandoned|timeout)"} [1-9]/);
  });

  it('never releases waiters to another object that took the ID during the wake', async () => {
    registry.upsert(paused({ uid: 'owner' }));
    const pending = hold(registry.get('sbx') as Route);
    registry.remove('owner');
    registry.upsert(running('10.6.6.6', { uid: 'impostor' }));
    expect(errorOf(await outcome(pending))).toBe('sandbox_not_found');
  });

  it('answers sandbox_id_conflict when a second object claims the ID during the wake', async () => {
    registry.upsert(paused({ uid: 'owner' }));
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.6.6.6', { uid: 'claimant' }));
    expect(errorOf(await outcome(pending))).toBe('sandbox_id_conflict');
  });

  it('answers sandbox_not_found when the object is replaced between the decision and the patch (UID precondition)', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    resumer.fail('uid changed', 'replaced');
    expect(errorOf(await outcome(pending))).toBe('sandbox_not_found');
  });

  it('answers sandbox_not_found when the sandbox is deleted during the wake, and sandbox_not_running when it dies', async () => {
    registry.upsert(paused());
    const a = hold(registry.get('sbx') as Route);
    registry.remove('uid-1');
    expect(errorOf(await outcome(a))).toBe('sandbox_not_found');
    registry.upsert(paused({ uid: 'uid-2' }));
    const b = hold(registry.get('sbx') as Route);
    registry.upsert(paused({ uid: 'uid-2', state: 'dead' }));
    expect(errorOf(await outcome(b))).toBe('sandbox_not_running');
  });

  it('frees the slot of a client that went away, and the wake goes on for the others', async () => {
    registry.upsert(paused());
    const leaving = new AbortController();
    hold(registry.get('sbx') as Route, 8080, leaving.signal);
    const staying = hold(registry.get('sbx') as Route);
    leaving.abort();
    expect(coordinator.waiting).toBe(1);
    registry.upsert(running('10.0.0.5'));
    expect(upstreamOf(await outcome(staying))).toBe('10.0.0.5:8080');
  });
});

describe('bounds', () => {
  it('answers 503 wake_capacity_exceeded at once beyond the per-sandbox bound', () => {
    coordinator.close();
    setup({ maxWaitersPerSandbox: 2 });
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    hold(registry.get('sbx') as Route);
    expect(errorOf(now(registry.get('sbx') as Route))).toBe('wake_capacity_exceeded');
  });

  it('answers 503 at once beyond the total bound', () => {
    coordinator.close();
    setup({ maxWaiters: 1 });
    registry.upsert(paused());
    registry.upsert(paused({ id: 'other', uid: 'o' }));
    hold(registry.get('sbx') as Route);
    expect(errorOf(now(registry.get('other') as Route))).toBe('wake_capacity_exceeded');
  });

  it('answers everyone when closed', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    coordinator.close();
    expect(errorOf(await outcome(pending))).toBe('sandbox_wake_failed');
    expect(coordinator.waiting).toBe(0);
  });
});
