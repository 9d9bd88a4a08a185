// The wake state machine, with a controllable clock (fake timers), the real route registry as the
// feed, and a resumer whose outcome each test decides.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { Answers } from '../../../src/protocol/answers.ts';
import { decodeResponse } from '../../../src/protocol/proto.ts';
import type { ProcessingResponse } from '../../../src/protocol/messages.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import type { PendingAnswer, ProcessResult } from '../../../src/server/processor.ts';
import { ENVOY_MARGIN_MS, WakeCoordinator, type WakeOptions } from '../../../src/wake/coordinator.ts';
import { ResumeError, type Resumer } from '../../../src/wake/resumer.ts';
import { makeRoute } from '../../support/routes.ts';

const facts = { authority: undefined, sandboxId: 'sbx', sandboxPort: undefined, accessToken: undefined, requestId: undefined };
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
  resume(route: Route): Promise<void> {
    this.calls.push(route);
    if (this.auto) return Promise.resolve();
    return new Promise((resolve, reject) => this.#settle.push({ resolve, reject }));
  }
  fail(message: string): void {
    this.#settle.shift()?.reject(new ResumeError(message));
  }
}

let registry: RouteRegistry;
let resumer: ControlledResumer;
let coordinator: WakeCoordinator;
let metrics: ReturnType<typeof createMetrics>;
const answers = new Answers({ metadataNamespace: 'envoy.lb.original_dst', metadataKey: 'host', strippedHeaders: [] });

function setup(options: Partial<WakeOptions> = {}): void {
  registry = new RouteRegistry();
  registry.markReady();
  resumer = new ControlledResumer();
  metrics = createMetrics(() => registry.countByState());
  coordinator = new WakeCoordinator({
    registry,
    resumer,
    answers,
    metrics,
    logger: createLogger('silent'),
    options: { timeoutMs: 30_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 100, maxWaiters: 1000, ...options },
  });
}

function hold(route: Route, port = 8080, signal = new AbortController().signal): PendingAnswer {
  const result: ProcessResult = coordinator.hold(route, port, facts, signal);
  if (Buffer.isBuffer(result)) throw new Error(`answered at once: ${JSON.stringify(decodeResponse(result))}`);
  return result;
}
const decoded = async (p: PendingAnswer): Promise<ProcessingResponse> => decodeResponse(await p.answer);
const upstreamOf = (r: ProcessingResponse) => r.dynamic_metadata?.fields['envoy.lb.original_dst'];
const errorOf = (r: ProcessingResponse) => JSON.parse(r.immediate_response?.body?.toString() ?? '{}').error as string;

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
    const answer = await decoded(pending);
    expect(JSON.stringify(upstreamOf(answer))).toContain('10.0.0.42:9000');
    expect(JSON.stringify(answer.dynamic_metadata)).toContain('"wake_ms"');
    expect(JSON.stringify(answer.dynamic_metadata?.fields['sandbox-extproc'])).toContain('1500');
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
    const all = await Promise.all(pendings.map(decoded));
    all.forEach((answer, i) => expect(JSON.stringify(upstreamOf(answer))).toContain(`10.0.0.7:${8000 + i}`));
    expect(await metrics.registry.getSingleMetricAsString('sandbox_extproc_wakes_total')).toContain('outcome="woken"} 1');
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
    expect(JSON.stringify(upstreamOf(await decoded(pending)))).toContain('10.0.0.8');
  });

  it('sends no patch when a resume is already under way (spec.paused is false)', async () => {
    registry.upsert(paused({ pauseRequested: false }));
    const pending = hold(registry.get('sbx') as Route);
    registry.upsert(running('10.0.0.9'));
    await decoded(pending);
    expect(resumer.calls).toHaveLength(0);
  });
});

describe('deadlines and failures', () => {
  it('answers 503 sandbox_wake_timeout at the deadline and frees the slot', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    await vi.advanceTimersByTimeAsync(30_000);
    const answer = await decoded(pending);
    expect(answer.immediate_response?.status?.code).toBe(503);
    expect(errorOf(answer)).toBe('sandbox_wake_timeout');
    expect(coordinator.waiting).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('sandbox_extproc_wakes_total')).toContain('outcome="timeout"} 1');
  });

  it('uses the per-sandbox deadline, capped to fit inside Envoy max_message_timeout', () => {
    registry.upsert(paused({ wake: { pauseAfterSeconds: 0, timeoutSeconds: 5 } }));
    expect(hold(registry.get('sbx') as Route).overrideMs).toBe(5000 + ENVOY_MARGIN_MS);
    coordinator.close();
    setup({ maxHoldMs: 10_000 });
    registry.upsert(paused({ uid: 'u2', wake: { pauseAfterSeconds: 0, timeoutSeconds: 600 } }));
    expect(hold(registry.get('sbx') as Route).overrideMs).toBe(10_000);
  });

  it('answers every waiter 503 sandbox_wake_failed when the patch fails', async () => {
    resumer.auto = false;
    registry.upsert(paused());
    const a = hold(registry.get('sbx') as Route);
    const b = hold(registry.get('sbx') as Route);
    resumer.fail('forbidden');
    expect([errorOf(await decoded(a)), errorOf(await decoded(b))]).toEqual(['sandbox_wake_failed', 'sandbox_wake_failed']);
    expect(JSON.parse((await decoded(a)).immediate_response?.body?.toString() ?? '{}').message).toContain('forbidden');
  });

  it('answers sandbox_not_found when the sandbox is deleted during the wake, and sandbox_not_running when it dies', async () => {
    registry.upsert(paused());
    const a = hold(registry.get('sbx') as Route);
    registry.remove('sbx', 'uid-1');
    expect(errorOf(await decoded(a))).toBe('sandbox_not_found');
    registry.upsert(paused({ uid: 'uid-2' }));
    const b = hold(registry.get('sbx') as Route);
    registry.upsert(paused({ uid: 'uid-2', state: 'dead' }));
    expect(errorOf(await decoded(b))).toBe('sandbox_not_running');
  });

  it('frees the slot of a client that went away, and the wake goes on for the others', async () => {
    registry.upsert(paused());
    const leaving = new AbortController();
    hold(registry.get('sbx') as Route, 8080, leaving.signal);
    const staying = hold(registry.get('sbx') as Route);
    leaving.abort();
    expect(coordinator.waiting).toBe(1);
    registry.upsert(running('10.0.0.5'));
    expect(JSON.stringify(upstreamOf(await decoded(staying)))).toContain('10.0.0.5');
  });
});

describe('bounds', () => {
  it('answers 503 wake_capacity_exceeded at once beyond the per-sandbox bound', () => {
    coordinator.close();
    setup({ maxWaitersPerSandbox: 2 });
    registry.upsert(paused());
    hold(registry.get('sbx') as Route);
    hold(registry.get('sbx') as Route);
    const third = coordinator.hold(registry.get('sbx') as Route, 80, facts, new AbortController().signal);
    expect(Buffer.isBuffer(third)).toBe(true);
    const answer = decodeResponse(third as Buffer);
    expect(errorOf(answer)).toBe('wake_capacity_exceeded');
    expect(answer.immediate_response?.headers?.set_headers?.some((h) => h.header.key === 'retry-after')).toBe(true);
  });

  it('answers 503 at once beyond the total bound', () => {
    coordinator.close();
    setup({ maxWaiters: 1 });
    registry.upsert(paused());
    registry.upsert(paused({ id: 'other', uid: 'o' }));
    hold(registry.get('sbx') as Route);
    expect(Buffer.isBuffer(coordinator.hold(registry.get('other') as Route, 80, facts, new AbortController().signal))).toBe(true);
  });

  it('answers everyone when closed', async () => {
    registry.upsert(paused());
    const pending = hold(registry.get('sbx') as Route);
    coordinator.close();
    expect(errorOf(await decoded(pending))).toBe('sandbox_wake_failed');
    expect(coordinator.waiting).toBe(0);
  });
});
