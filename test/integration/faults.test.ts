// Faults that fit in the regular suite: a sandbox whose controller never finishes resuming, and the
// API server going away while wakes are requested. (Longer faults live in test/chaos.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { UpstreamPool } from '../support/sandboxes.ts';
import { startService, type RunningService } from '../support/service.ts';

const NS = 'faults';
let plane: ControlPlane;
let controller: SandboxController;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
  controller = new SandboxController(plane.admin, { stuck: new Set(['zombie']), resumeDelayMs: 200 });
  await controller.start();
  pool = await UpstreamPool.start(['127.0.0.81', '127.0.0.82']);
  await controller.create({ namespace: NS, name: 'steady', podIP: '127.0.0.81' });
  await controller.create({ namespace: NS, name: 'zombie', podIP: '127.0.0.82', paused: true, wake: { by: 'policy' } });
  await controller.create({ namespace: NS, name: 'dozer', podIP: '127.0.0.82', paused: true, wake: { by: 'policy' } });
  service = await startService(['--kubeconfig', kubeconfig, '--namespaces', NS, '--wake-timeout', '2s']);
  await waitForRoute(service.app.registry, `${NS}--dozer`, (r) => r?.state === 'paused');
  envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
});

afterAll(async () => {
  controller?.stop();
  await envoy?.stop();
  await service?.stop();
  await pool?.close();
  await plane?.stop();
});

const get = (name: string) =>
  httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': `${NS}--${name}`, 'e2b-sandbox-port': String(pool.port) }, 30_000);

describe('a controller that never finishes resuming', () => {
  it('honours the deadline for every waiter and frees all wake state', async () => {
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 100 }, () => get('zombie')));
    const elapsed = Date.now() - started;
    expect(results.every((r) => r.status === 503 && r.json()['error'] === 'sandbox_wake_timeout')).toBe(true);
    expect(results.every((r) => r.headers['retry-after'] === '2')).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThan(6000);
    const wakes = service.app.wakes!;
    expect(wakes.waiting).toBe(0);
    expect(wakes.inFlight).toBe(0);
  });
});

describe('the API server goes away', () => {
  it('keeps serving running sandboxes, fails wakes fast with 503 and Retry-After, and wakes again after', async () => {
    await plane.stopApiserver();
    try {
      expect((await get('steady')).status).toBe(200);
      const started = Date.now();
      const res = await get('dozer');
      expect(res.status).toBe(503);
      expect(res.json()['error']).toBe('sandbox_wake_failed');
      expect(res.headers['retry-after']).toBe('2');
      expect(Date.now() - started).toBeLessThan(2000);
      expect((await get('steady')).status).toBe(200);
    } finally {
      await plane.startApiserver();
    }
    const woken = await get('dozer');
    expect(woken.status).toBe(200);
    expect(woken.json()['upstream']).toBe('127.0.0.82');
  });
});
