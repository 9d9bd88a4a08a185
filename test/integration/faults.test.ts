// Faults that fit in the regular suite, on OpenKruise's own controller: a resume that never finishes
// (the woken sandbox's new pod is held un-Ready, as a pod whose runtime never starts: the controller
// shows it Running with Ready=False for good), and the API server going away while wakes are requested.
// (Longer faults live in test/chaos.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunning, podIP } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'faults';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    sandboxes: [
      { namespace: NS, name: 'steady' },
      // Every pod of zombie is held un-Ready (the first one is released to bring it up); its resume's
      // pod is never released.
      { namespace: NS, name: 'zombie', paused: true, wake: { by: 'policy' }, hold: true },
      // Woken after the API server is back, once the controllers are too: its own deadline leaves room
      // for a resume on a loaded machine (the global 2 s is zombie's, whose every waiter must see it).
      { namespace: NS, name: 'dozer', paused: true, wake: { by: 'policy', deadlineSeconds: 20 } },
    ],
    serviceArgs: ['--wake-timeout', '2s'],
  });
  await waitForRoute(stack.service.app.registry, `${NS}--zombie`, (r) => r?.state === 'paused' && !r.pausing);
  await waitForRoute(stack.service.app.registry, `${NS}--dozer`, (r) => r?.state === 'paused' && !r.pausing);
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
    // The controller did take the resume and is stuck in it: the new pod runs, the sandbox never turns Ready.
    const stuck = await stack.openkruise.get(NS, 'zombie');
    expect(stuck.spec?.paused).toBe(false);
    expect(isRunning(stuck)).toBe(false);
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
    // The controllers (OpenKruise's, kwok, the garbage collector) reconnect on their own backoff: a
    // sandbox created now and brought up by them shows they are back, before the wake relies on them.
    await stack.openkruise.create({ namespace: NS, name: 'witness' }, 60_000);
    const woken = await get('dozer');
    expect(woken.status, woken.body).toBe(200);
    expect(woken.json()['upstream']).toBe(podIP(await stack.openkruise.waitFor(NS, 'dozer', isRunning, 30_000, 'running')));
  });
});
