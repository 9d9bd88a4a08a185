// Access tokens never reach a log line or a metric, with real tokens present where they live: on
// Sandbox objects (the agents.kruise.io/runtime-access-token annotation the watch delivers whole) and
// in requests (x-access-token), right and wrong, through Envoy, with the service logging everything it
// can (trace) while it lists, watches, refuses and wakes.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/settings.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { TEST_UPSTREAM_ENV } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const NS = 'tokens';
const TOKENS = ['tok-paused-5f0c1e7a9b', 'tok-running-8d2e4a6c1f', 'tok-wrong-3b9d7f1a2e'];
let plane: ControlPlane;
let controller: SandboxController;
let app: App;
let envoy: RunningEnvoy;
let upstream: Upstream;
const lines: string[] = [];

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
  controller = new SandboxController(plane.admin, { resumeDelayMs: 200 });
  await controller.start();
  upstream = await startUpstream('sandbox', '127.0.0.77');
  await controller.create({
    namespace: NS,
    name: 'sleeper',
    podIP: '127.0.0.77',
    paused: true,
    wake: { by: 'policy' },
    accessToken: TOKENS[0],
  });
  await controller.create({ namespace: NS, name: 'worker', podIP: '127.0.0.77', accessToken: TOKENS[1] });
  const loaded = loadConfig(
    ['--kubeconfig', kubeconfig, '--namespaces', NS, '--grpc-port', '0', '--http-port', '0', '--log-level', 'trace'],
    TEST_UPSTREAM_ENV,
  );
  const sink = new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) });
  app = new App((loaded as { config: Config }).config, sink);
  const listening = await app.start();
  envoy = await startEnvoy({ extprocPort: listening.grpcPort as number });
  await waitForRoute(app.registry, `${NS}--sleeper`, (r) => r?.state === 'paused' && !r.pausing);
});

afterAll(async () => {
  await envoy?.stop();
  await app?.stop();
  await upstream?.close();
  controller?.stop();
  await plane?.stop();
});

const get = (id: string, token?: string) =>
  httpGet(`${envoy.url}/`, {
    'e2b-sandbox-id': id,
    'e2b-sandbox-port': String(upstream.port),
    ...(token ? { 'x-access-token': token } : {}),
  });

describe('access tokens', () => {
  it('never appear in logs or metrics, at trace level, while the service lists, watches, refuses and wakes', async () => {
    expect((await get(`${NS}--sleeper`, TOKENS[2])).status).toBe(401);
    expect((await get(`${NS}--sleeper`)).status).toBe(401);
    expect((await get(`${NS}--worker`, TOKENS[1])).status).toBe(200);
    expect((await get(`${NS}--sleeper`, TOKENS[0])).status).toBe(200);
    // A change to the object with the token on it travels through the watch too.
    await controller.setPodIP(NS, 'worker', '127.0.0.78');
    await waitForRoute(app.registry, `${NS}--worker`, (r) => r?.podIP === '127.0.0.78');
    const metrics = await (await fetch(`http://127.0.0.1:${app.listening?.httpPort}/metrics`)).text();
    await new Promise<void>((resolve) => app.logger.flush(() => resolve()));
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
