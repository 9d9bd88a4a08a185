// The wake's spans as the coordinator reports them (src/wake/coordinator.ts; observability/tracing.ts
// draws them): who joined, when the watch wait starts, and why a patch failed. A recording tracer stands
// in for OpenTelemetry: what is asserted is the coordinator's calls, not the spans' export.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createMetrics } from '../../../src/observability/metrics.ts';
import type { WakeSpans, WakeTracer } from '../../../src/observability/tracing.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { WakeCoordinator } from '../../../src/wake/coordinator.ts';
import type { Resumer } from '../../../src/wake/resumer.ts';
import { capturedLogger } from '../../support/log-lines.ts';
import { makeRoute } from '../../support/routes.ts';

const paused = () =>
  makeRoute({ id: 'abc', state: 'paused', podIP: '', pauseRequested: true, wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 } });

let calls: string[];
let settle: { resolve: (v: string) => void; reject: (e: Error) => void }[];
let registry: RouteRegistry;
let coordinator: WakeCoordinator;

beforeEach(() => {
  vi.useFakeTimers();
  calls = [];
  settle = [];
  registry = new RouteRegistry();
  registry.markReady();
  const spans: WakeSpans = {
    patchStarted: () => calls.push('patchStarted'),
    patchEnded: (error) => calls.push(`patchEnded(${error ?? ''})`),
    waitStarted: () => calls.push('waitStarted'),
    joined: (request) => calls.push(`joined(${String(request)})`),
    released: (waiters) => calls.push(`released(${waiters})`),
    end: (outcome, code) => calls.push(`end(${outcome},${code ?? ''})`),
  };
  const tracer: WakeTracer = {
    begin: (_route, request) => {
      calls.push(`begin(${String(request)})`);
      return spans;
    },
  };
  const resumer: Resumer = {
    resume: () => new Promise((resolve, reject) => settle.push({ resolve, reject })),
  };
  coordinator = new WakeCoordinator({
    registry,
    resumer,
    metrics: createMetrics(() => registry.countByState()),
    logger: capturedLogger('info').logger,
    tracer,
    options: { timeoutMs: 30_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 100, maxWaiters: 100_000 },
  });
});
afterEach(() => {
  coordinator.close();
  vi.useRealTimers();
});

describe('the wake spans', () => {
  it('link a request that joins with its trace, and only one that has a trace', () => {
    registry.upsert(paused());
    const route = registry.get('abc') as Route;
    coordinator.hold(route, 80, new AbortController().signal, 'first');
    coordinator.hold(route, 80, new AbortController().signal);
    coordinator.hold(route, 80, new AbortController().signal, 'third');
    expect(calls).toEqual(['begin(first)', 'patchStarted', 'joined(third)']);
  });

  it('start no watch wait for a wake that ended while its patch was under way', async () => {
    registry.upsert(paused());
    const route = registry.get('abc') as Route;
    coordinator.hold(route, 80, new AbortController().signal, 'r');
    registry.remove(route.uid);
    settle[0]?.resolve('999');
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(['begin(r)', 'patchStarted', 'end(failed,sandbox_not_found)', 'patchEnded()']);
    expect(coordinator.waiting).toBe(0);
  });

  it('start the watch wait once the patch is answered', async () => {
    registry.upsert(paused());
    coordinator.hold(registry.get('abc') as Route, 80, new AbortController().signal, 'r');
    settle[0]?.resolve('999');
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toEqual(['begin(r)', 'patchStarted', 'patchEnded()', 'waitStarted']);
  });

  it("name a patch's failure 'unknown' when it is no resume error", async () => {
    registry.upsert(paused());
    coordinator.hold(registry.get('abc') as Route, 80, new AbortController().signal, 'r');
    settle[0]?.reject(new Error('boom'));
    await vi.advanceTimersByTimeAsync(0);
    expect(calls.slice(0, 3)).toEqual(['begin(r)', 'patchStarted', 'patchEnded(unknown)']);
  });
});
