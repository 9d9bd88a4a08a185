// Access tokens never reach a log line or a metric, with real tokens present where they live: on
// Sandbox objects (the agents.kruise.io/runtime-access-token annotation the watch delivers whole, on
// every change OpenKruise's own controller makes) and in requests (x-access-token), right and wrong,
// through Envoy, with the service logging everything it can (trace) while it lists, watches, refuses
// and wakes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'tokens';
const TOKENS = ['tok-paused-5f0c1e7a9b', 'tok-running-8d2e4a6c1f', 'tok-wrong-3b9d7f1a2e'];
let stack: Stack;
const lines: string[] = [];

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    sandboxes: [
      { namespace: NS, name: 'sleeper', paused: true, wake: { by: 'policy' }, accessToken: TOKENS[0] },
      { namespace: NS, name: 'worker', accessToken: TOKENS[1] },
    ],
    serviceArgs: ['--log-level', 'trace', '--wake-timeout', '20s'],
    serviceLogs: (line) => lines.push(line),
  });
  await waitForRoute(stack.service.app.registry, `${NS}--sleeper`, (r) => r?.state === 'paused' && !r.pausing);
});

afterAll(async () => {
  await stack?.stop();
});

const get = (id: string, token?: string) => stack.get(id, token ? { 'x-access-token': token } : {});

describe('access tokens', () => {
  it('never appear in logs or metrics, at trace level, while the service lists, watches, refuses and wakes', async () => {
    const { service } = stack;
    expect((await get(`${NS}--sleeper`, TOKENS[2])).status).toBe(401);
    expect((await get(`${NS}--sleeper`)).status).toBe(401);
    expect((await get(`${NS}--worker`, TOKENS[1])).status).toBe(200);
    expect((await get(`${NS}--sleeper`, TOKENS[0])).status).toBe(200);
    // Changes to the object with the token on it travel through the watch too: the controller's own
    // status writes of a pause, each a whole object with the annotation.
    const before = service.app.registry.get(`${NS}--worker`)?.resourceVersion;
    await stack.openkruise.pauseAndWait(NS, 'worker');
    await waitForRoute(service.app.registry, `${NS}--worker`, (r) => r?.state === 'paused' && !r.pausing);
    expect(service.app.registry.get(`${NS}--worker`)?.resourceVersion).not.toBe(before);
    const metrics = await (await fetch(`http://127.0.0.1:${service.listening.httpPort}/metrics`)).text();
    await new Promise<void>((resolve) => service.app.logger.flush(() => resolve()));
    const logs = lines.join('');
    // The logs did see these requests and the wake (or the check below would prove nothing).
    expect(logs).toContain('request decided');
    expect(logs).toContain('sandbox woken');
    for (const token of TOKENS) {
      expect(logs.includes(token), `token ${token} in the logs`).toBe(false);
      expect(metrics.includes(token), `token ${token} in the metrics`).toBe(false);
    }
  });
});
