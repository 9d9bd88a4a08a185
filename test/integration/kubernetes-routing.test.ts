// The routing story on the real stack: Envoy -> sandbox-extproc (as its own least-privilege
// ServiceAccount) -> a real kube-apiserver and etcd, with the test controller playing OpenKruise.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../support/controlplane.ts';
import type { RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import type { SandboxController } from '../support/sandbox-controller.ts';
import type { UpstreamPool } from '../support/sandboxes.ts';
import type { RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'team-a';
const OTHER_NS = 'team-b';
let stack: Stack;
let plane: ControlPlane;
let controller: SandboxController;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    ips: ['127.0.0.21', '127.0.0.22', '127.0.0.23'],
    sandboxes: [
      { namespace: NS, name: 'alpha', podIP: '127.0.0.21' },
      { namespace: NS, name: 'beta', podIP: '127.0.0.22', id: 'beta-id' },
    ],
    serviceArgs: ['--domains', 'sandbox.test', '--watch-idle-timeout', '5s'],
  });
  ({ plane, controller, pool, service, envoy } = stack);
  // A sandbox outside the watched namespace, which the service must never route.
  await plane.ensureNamespace(OTHER_NS);
  await controller.create({ namespace: OTHER_NS, name: 'outsider', podIP: '127.0.0.23' });
  await waitForRoute(service.app.registry, 'beta-id', (r) => r?.state === 'running');
});

afterAll(async () => {
  await stack?.stop();
});

const get = (id: string, headers: Record<string, string> = {}) => stack.get(id, headers);

describe('routing from Sandbox objects', () => {
  // (Readiness before the first list completes: test/integration/kubernetes-source.test.ts.)
  it('is ready once its first list holds every sandbox of the watched namespace', async () => {
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
    identity.loadFromFile(stack.kubeconfig);
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
