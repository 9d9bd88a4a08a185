// The route screen (src/routes/screen.ts): a route whose pod IP may not be routed to is kept as a dead
// route with no address, counted each time, and logged once per object and address.
import { describe, expect, it } from 'vitest';
import { RouteScreen } from '../../../src/routes/screen.ts';
import { UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';
import { capturedLogger } from '../../support/log-lines.ts';
import { makeRoute } from '../../support/routes.ts';

function screen() {
  const { logger, lines } = capturedLogger('info');
  let refused = 0;
  const routeScreen = new RouteScreen(new UpstreamAddressPolicy(), logger, () => (refused += 1));
  return { routeScreen, lines, refused: () => refused };
}

describe('the route screen', () => {
  it('admits a route with a routable address, or with none, as it is', () => {
    const { routeScreen, lines, refused } = screen();
    for (const route of [makeRoute({ podIP: '10.0.0.1' }), makeRoute({ podIP: '', state: 'paused' })]) {
      expect(routeScreen.admit(route)).toBe(route);
    }
    expect(refused()).toBe(0);
    expect(lines).toEqual([]);
  });

  it('keeps a route to a refused address as dead with no address, counts it and says why', () => {
    const { routeScreen, lines, refused } = screen();
    const route = makeRoute({ id: 'abc', uid: 'u1', namespace: 'team', name: 'box', podIP: '169.254.170.2' });
    expect(routeScreen.admit(route)).toEqual({ ...route, podIP: '', state: 'dead' });
    expect(refused()).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 40,
      msg: 'sandbox reports a pod IP that may not be routed to; it is answered as not running',
      sandboxId: 'abc',
      namespace: 'team',
      name: 'box',
      podIP: '169.254.170.2',
      refusal: 'a link-local address',
    });
  });

  it('logs an object once per address (a resync repeats no warning), and counts every admission', () => {
    const { routeScreen, lines, refused } = screen();
    routeScreen.admit(makeRoute({ uid: 'u1', podIP: '127.0.0.1', resourceVersion: '1' }));
    routeScreen.admit(makeRoute({ uid: 'u1', podIP: '127.0.0.1', resourceVersion: '2' }));
    routeScreen.admit(makeRoute({ uid: 'u1', podIP: '127.0.0.2', resourceVersion: '3' }));
    routeScreen.admit(makeRoute({ uid: 'u2', podIP: '127.0.0.2' }));
    expect(refused()).toBe(4);
    expect(lines.map((l) => l['podIP'])).toEqual(['127.0.0.1', '127.0.0.2', '127.0.0.2']);
  });

  it('remembers at most 10,000 objects: past that it starts afresh (a warning may repeat, memory does not grow)', () => {
    const { routeScreen, lines } = screen();
    for (let i = 0; i < 10_000; i += 1) routeScreen.admit(makeRoute({ uid: `u${i}`, podIP: '127.0.0.1' }));
    routeScreen.admit(makeRoute({ uid: 'u0', podIP: '127.0.0.1' }));
    expect(lines).toHaveLength(10_000);
    routeScreen.admit(makeRoute({ uid: 'u10000', podIP: '127.0.0.1' }));
    expect(lines).toHaveLength(10_001);
    routeScreen.admit(makeRoute({ uid: 'u0', podIP: '127.0.0.1' }));
    expect(lines).toHaveLength(10_002);
  });
});
