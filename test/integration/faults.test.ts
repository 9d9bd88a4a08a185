// Faults that fit in the regular suite: a sandbox whose controller never finishes resuming, and the
// API server going away while wakes are requested. (Longer faults live in test/chaos.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'faults';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    ips: ['127.0.0.81', '127.0.0.82'],
    controller: { stuck: new Set(['zombie']), resumeDelayMs: 200 },
    sandboxes: [
      { namespace: NS, name: 'steady', podIP: '127.0.0.81' },
      { namespace: NS, name: 'zombie', podIP: '127.0.0.82', paused: true, wake: { by: 'policy' } },
      { namespace: NS, name: 'dozer', podIP: '127.0.0.82', paused: true, wake: { by: 'policy' } },
    ],
    serviceArgs: ['--wake-timeout', '2s'],
  });
  await waitForRoute(stack.service.app.registry, `${NS}--dozer`, (r) => r?.state === 'paused');
});

afterAll(async () => {
  await stack?.stop();
});

const get = (name: string) => stack.get(`${NS}--${name}`);
/** The service's own count of wakes ended with this outcome (sandbox_extproc_wakes_total). */
const wakesEnded = async (outcome: string) =>
  (await stack.service.app.metrics.wakes.get()).values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;

describe('a controller that never finishes resuming', () => {
  it('honours the deadline for every waiter and frees all wake state', async () => {
    const timeouts = await wakesEnded('timeout');
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 100 }, () => get('zombie')));
    const elapsed = Date.now() - started;
    expect(results.every((r) => r.status === 503 && r.json()['error'] === 'sandbox_wake_timeout')).toBe(true);
    expect(results.every((r) => r.headers['retry-after'] === '2')).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThan(6000);
    const wakes = stack.service.app.wakes!;
    expect(wakes.waiting).toBe(0);
    expect(wakes.inFlight).toBe(0);
    // One wake for the hundred requests, counted once, as timed out.
    expect(await wakesEnded('timeout')).toBe(timeouts + 1);
  });
});

describe('the API server goes away', () => {
  it('keeps serving running sandboxes, fails wakes fast with 503 and Retry-After, and wakes again after', async () => {
    const failed = await wakesEnded('failed');
    await stack.plane.stopApiserver();
    try {
      expect((await get('steady')).status).toBe(200);
      const started = Date.now();
      const res = await get('dozer');
      expect(res.status).toBe(503);
      expect(res.json()['error']).toBe('sandbox_wake_failed');
      expect(res.headers['retry-after']).toBe('2');
      expect(Date.now() - started).toBeLessThan(2000);
      expect(await wakesEnded('failed')).toBe(failed + 1);
      expect((await get('steady')).status).toBe(200);
    } finally {
      await stack.plane.startApiserver();
    }
    const woken = await get('dozer');
    expect(woken.status).toBe(200);
    expect(woken.json()['upstream']).toBe('127.0.0.82');
  });
});
