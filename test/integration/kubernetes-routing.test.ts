// The routing story on the real stack: Envoy -> sandbox-extproc (as its own least-privilege
// ServiceAccount) -> a real kube-apiserver and etcd, with the test controller playing OpenKruise.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { UpstreamPool } from '../support/sandboxes.ts';
import { startService, type RunningService } from '../support/service.ts';

const NS = 'team-a';
const OTHER_NS = 'team-b';
let plane: ControlPlane;
let controller: SandboxController;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;
let serviceKubeconfig: string;

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  await plane.ensureNamespace(OTHER_NS);
  serviceKubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
  controller = new SandboxController(plane.admin);
  await controller.start();
  pool = await UpstreamPool.start(['127.0.0.21', '127.0.0.22', '127.0.0.23']);
  await controller.create({ namespace: NS, name: 'alpha', podIP: '127.0.0.21' });
  await controller.create({ namespace: NS, name: 'beta', podIP: '127.0.0.22', id: 'beta-id' });
  await controller.create({ namespace: OTHER_NS, name: 'outsider', podIP: '127.0.0.23' });
  service = await startService([
    '--kubeconfig',
    serviceKubeconfig,
    '--namespaces',
    NS,
    '--domains',
    'sandbox.test',
    '--watch-idle-timeout',
    '5s',
  ]);
  await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.state === 'running');
  envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
});

afterAll(async () => {
  controller?.stop();
  await envoy?.stop();
  await service?.stop();
  await pool?.close();
  await plane?.stop();
});

const get = (id: string, headers: Record<string, string> = {}) =>
  httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port), ...headers });

describe('routing from Sandbox objects', () => {
  it('is ready only after the first full list', async () => {
    const res = await httpGet(`http://127.0.0.1:${service.listening.httpPort}/readyz`);
    expect(res.status).toBe(200);
    expect(service.app.registry.size).toBe(2);
  });

  it('routes by the <namespace>--<name> ID and by the sandbox-id label', async () => {
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe('127.0.0.21');
    expect((await get('beta-id')).json()['upstream']).toBe('127.0.0.22');
  });

  it('routes by host', async () => {
    const res = await httpGet(`${envoy.url}/x`, { host: `${pool.port}-beta-id.sandbox.test` });
    expect(res.json()['upstream']).toBe('127.0.0.22');
  });

  it('follows a pod IP change: the next request reaches the new upstream', async () => {
    await controller.setPodIP(NS, 'alpha', '127.0.0.23');
    await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.podIP === '127.0.0.23');
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe('127.0.0.23');
    await controller.setPodIP(NS, 'alpha', '127.0.0.21');
    await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.podIP === '127.0.0.21');
  });

  it('does not route a sandbox outside the watched namespaces', async () => {
    const res = await get(`${OTHER_NS}--outsider`);
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_found');
    expect(
      pool.upstream('127.0.0.23').received.some((r) => r.path === '/' && r.headers['e2b-sandbox-id'] === `${OTHER_NS}--outsider`),
    ).toBe(false);
  });

  it('answers a deleted sandbox as not found', async () => {
    await controller.create({ namespace: NS, name: 'doomed', podIP: '127.0.0.22' });
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r?.state === 'running');
    await controller.delete(NS, 'doomed');
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r === undefined);
    const res = await get(`${NS}--doomed`);
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_found');
  });

  it('gives a sandbox recreated under the same name only the new IP', async () => {
    const old = await controller.create({ namespace: NS, name: 'phoenix', podIP: '127.0.0.21' });
    await waitForRoute(service.app.registry, `${NS}--phoenix`, (r) => r?.uid === old.metadata.uid && r?.state === 'running');
    await controller.delete(NS, 'phoenix');
    const reborn = await controller.create({ namespace: NS, name: 'phoenix', podIP: '127.0.0.22' });
    const route = await waitForRoute(
      service.app.registry,
      `${NS}--phoenix`,
      (r) => r?.uid === reborn.metadata.uid && r?.state === 'running',
    );
    expect(route?.podIP).toBe('127.0.0.22');
    expect((await get(`${NS}--phoenix`)).json()['upstream']).toBe('127.0.0.22');
  });
});

describe('least privilege', () => {
  it('the service identity can list sandboxes in its namespace but cannot read Secrets', async () => {
    const identity = new KubeConfig();
    identity.loadFromFile(serviceKubeconfig);
    const core = identity.makeApiClient(CoreV1Api);
    await expect(core.listNamespacedSecret({ namespace: NS })).rejects.toMatchObject({ code: 403 });
    await expect(core.listNamespacedPod({ namespace: NS })).rejects.toMatchObject({ code: 403 });
  });
});

describe('API server outages', () => {
  it('keeps serving running sandboxes from the cache while the API server is down, and catches up after', async () => {
    await plane.stopApiserver();
    for (let i = 0; i < 5; i += 1) expect((await get(`${NS}--alpha`)).json()['upstream']).toBe('127.0.0.21');
    expect((await get('beta-id')).json()['upstream']).toBe('127.0.0.22');
    await plane.startApiserver();
    // An update made after the restart reaches the service through the resumed watch.
    await controller.setPodIP(NS, 'alpha', '127.0.0.22');
    await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.podIP === '127.0.0.22', 60_000);
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe('127.0.0.22');
  });

  it('drops a sandbox deleted while the watch was away, and keeps the others (relist)', async () => {
    await controller.create({ namespace: NS, name: 'vanishing', podIP: '127.0.0.23' });
    await waitForRoute(service.app.registry, `${NS}--vanishing`, (r) => r?.state === 'running');
    await plane.stopApiserver();
    expect(await plane.etcdDelete(`/registry/agents.kruise.io/sandboxes/${NS}/vanishing`)).toBe(1);
    await plane.etcdCompact();
    await plane.startApiserver();
    await waitForRoute(service.app.registry, `${NS}--vanishing`, (r) => r === undefined, 60_000);
    expect((await get(`${NS}--vanishing`)).status).toBe(502);
    expect(service.app.registry.get('beta-id')?.state).toBe('running');
    expect((await get('beta-id')).json()['upstream']).toBe('127.0.0.22');
  });
});
