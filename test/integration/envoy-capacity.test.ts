// Regression guard for issue #12: Envoy's default circuit breakers (1,024 concurrent requests per
// cluster) answered 500 to requests past the 1,024th held wake, running sandboxes included, so the
// service's own bounds (--max-waiters, --max-streams) could never be reached. Through the real Envoy
// with the project's envoy.yaml: more than 1,024 held requests, running sandboxes still served, and
// past the service's limit clients see its wake_capacity_exceeded, not Envoy's 500. The held sandbox is
// resumed by OpenKruise's own controller; its new pod is held un-Ready until the test releases it, so
// every request stays held however slow the machine. Two sandboxes in all (the 1,100 requests name one).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRunning, podIP } from '../support/openkruise.ts';
import { untilWaiting, waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'capacity';
const HELD = 1_100;
const EXTRA = 60;
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    sandboxes: [
      { namespace: NS, name: 'frozen', wake: { by: 'policy' }, paused: true, hold: true },
      { namespace: NS, name: 'busy' },
    ],
    serviceArgs: ['--max-waiters', String(HELD), '--max-waiters-per-sandbox', '5000', '--wake-timeout', '60s'],
  });
  await waitForRoute(stack.service.app.registry, `${NS}--frozen`, (r) => r?.state === 'paused' && !r.pausing);
  await waitForRoute(stack.service.app.registry, `${NS}--busy`, (r) => r?.state === 'running');
}, 180_000);

afterAll(async () => {
  await stack?.stop();
});

describe('more held requests than Envoy allows by default', () => {
  it('holds 1,100 wakes, serves running sandboxes meanwhile, and answers the rest with the service’s 503', async () => {
    const wakes = stack.service.app.wakes!;
    const allHeld = untilWaiting(wakes, (n) => n === HELD);
    const held = Array.from({ length: HELD }, () => stack.get(`${NS}--frozen`));
    // Nothing may answer a held request before the release; and all of them must reach the service.
    const early = Promise.race(held).then((r) => `answered before the release: ${r.status} ${r.body}`);
    const tooSlow = new Promise<string>((resolve) =>
      setTimeout(() => resolve(`only ${wakes.waiting} of ${HELD} requests reached the service within 20 s`), 20_000).unref(),
    );
    expect(await Promise.race([allHeld.then(() => 'all held'), early, tooSlow])).toBe('all held');
    const extra = await Promise.all(Array.from({ length: EXTRA }, () => stack.get(`${NS}--frozen`)));
    expect(extra.map((r) => `${r.status} ${r.json()['error'] as string}`)).toEqual(Array(EXTRA).fill('503 wake_capacity_exceeded'));
    const running = await Promise.all(Array.from({ length: 100 }, () => stack.get(`${NS}--busy`)));
    expect(running.map((r) => r.status)).toEqual(Array(100).fill(200));
    await stack.openkruise.release(NS, 'frozen');
    const answered = await Promise.all(held);
    expect(answered.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`)).toEqual([]);
    // All at the pod the controller brought up for the resume.
    const serving = podIP(await stack.openkruise.waitFor(NS, 'frozen', isRunning, 30_000, 'running'));
    expect(new Set(answered.map((r) => r.json()['upstream']))).toEqual(new Set([serving]));
    expect(await stack.envoy.stat('cluster.sandbox_extproc.upstream_rq_pending_overflow')).toBe(0);
  }, 120_000);
});
