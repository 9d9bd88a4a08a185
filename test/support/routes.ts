// Route fixtures for unit tests.
import type { Route } from '../../src/routes/route.ts';

export function makeRoute(over: Partial<Route> = {}): Route {
  return {
    id: 'sbx',
    uid: 'uid-1',
    namespace: 'ns',
    name: 'sbx',
    resourceVersion: '1',
    state: 'running',
    podIP: '10.0.0.1',
    pauseRequested: false,
    pausing: false,
    resuming: false,
    drainingIP: '',
    suspendedIP: '',
    phase: '',
    shutdownAt: undefined,
    pauseAt: undefined,
    activityAt: undefined,
    idleMs: 0,
    readySince: undefined,
    idleSuspendedAt: undefined,
    deleting: false,
    wake: undefined,
    accessTokenDigest: undefined,
    kind: undefined,
    ...over,
  };
}
