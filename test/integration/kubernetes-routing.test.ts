// The routing story on the real stack: Envoy -> sandbox-extproc (as its own least-privilege
// ServiceAccount) -> a real kube-apiserver and etcd, with OpenKruise's own controller running the
// Sandboxes and kwok their pods. Addresses are the ones kwok gives the pods, read from the objects: a
// pod moves to another address the way it does in a cluster, by a pause and a resume (a new pod).
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Route } from '../../src/routes/route.ts';
import type { ControlPlane } from '../support/controlplane.ts';
import type { RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { isRunning, podIP, SANDBOX_ID_LABEL, type OpenKruiseSandboxes } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import type { UpstreamPool } from '../support/sandboxes.ts';
import type { RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'team-a';
const OTHER_NS = 'team-b';
let stack: Stack;
let plane: ControlPlane;
let sandboxes: OpenKruiseSandboxes;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    sandboxes: [
      { namespace: NS, name: 'alpha' },
      // The sandbox-id label, as E2B's sandbox-manager sets it when it hands a sandbox out.
      { namespace: NS, name: 'beta', labels: { [SANDBOX_ID_LABEL]: 'beta-id' } },
    ],
    serviceArgs: ['--domains', 'sandbox.test', '--watch-idle-timeout', '5s'],
  });
  ({ plane, openkruise: sandboxes, pool, service, envoy } = stack);
  // A sandbox outside the watched namespace, which the service must never route.
  await plane.ensureNamespace(OTHER_NS);
  await sandboxes.create({ namespace: OTHER_NS, name: 'outsider' });
  await waitForRoute(service.app.registry, 'beta-id', (r) => r?.state === 'running');
});

afterAll(async () => {
  await stack?.stop();
});

const get = (id: string, headers: Record<string, string> = {}) => stack.get(id, headers);
/** The address a sandbox serves on now, as the controller reports it. */
const servingIP = async (name: string, timeoutMs = 30_000) => podIP(await sandboxes.waitFor(NS, name, isRunning, timeoutMs, 'running'));

let placeholders = 0;
/**
 * Has a pod of another sandbox (outside the watched namespace) take `ip`, once free: kwok hands freed
 * addresses out before new ones, so the next pod created gets another. Bounded: each placeholder takes
 * one freed address, and there are only as many as pods deleted so far.
 */
async function holdAddress(ip: string, timeoutMs = 30_000): Promise<void> {
  for (let i = 0; i < 8; i += 1) {
    const placeholder = await sandboxes.create({ namespace: OTHER_NS, name: `placeholder-${(placeholders += 1)}` }, timeoutMs);
    if (podIP(placeholder) === ip) return;
  }
  throw new Error(`no placeholder pod got ${ip}`);
}

/**
 * Moves a running sandbox to a pod at another address, as a pause and a resume do in a cluster: the
 * pause deletes its pod, another pod takes the freed address, the resume brings up a new pod.
 * Returns the new address.
 */
async function movePod(name: string, timeoutMs = 30_000): Promise<string> {
  const before = await servingIP(name, timeoutMs);
  await sandboxes.pauseAndWait(NS, name, timeoutMs);
  await holdAddress(before, timeoutMs);
  await sandboxes.patch(NS, name, { spec: { paused: false } });
  const after = await servingIP(name, timeoutMs);
  expect(after).not.toBe(before);
  return after;
}

describe('routing from Sandbox objects', () => {
  // (Readiness before the first list completes: test/integration/kubernetes-source.test.ts.)
  it('is ready once its first list holds every sandbox of the watched namespace', async () => {
    const res = await httpGet(`http://127.0.0.1:${service.listening.httpPort}/readyz`);
    expect(res.status).toBe(200);
    expect(service.app.registry.size).toBe(2);
  });

  it('routes by the <namespace>--<name> ID and by the sandbox-id label', async () => {
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe(await servingIP('alpha'));
    expect((await get('beta-id')).json()['upstream']).toBe(await servingIP('beta'));
  });

  it('routes by host', async () => {
    const res = await httpGet(`${envoy.url}/x`, { host: `${pool.port}-beta-id.sandbox.test` });
    expect(res.json()['upstream']).toBe(await servingIP('beta'));
  });

  it('follows a pod IP change: the next request reaches the new upstream', async () => {
    const moved = await movePod('alpha');
    await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.state === 'running' && r.podIP === moved);
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe(moved);
  });

  it('does not route a sandbox outside the watched namespaces', async () => {
    const outsider = podIP(await sandboxes.waitFor(OTHER_NS, 'outsider', isRunning, 30_000, 'running'));
    const res = await get(`${OTHER_NS}--outsider`);
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_found');
    expect(pool.upstream(outsider).received.some((r) => r.headers['e2b-sandbox-id'] === `${OTHER_NS}--outsider`)).toBe(false);
  });

  it('answers a deleted sandbox as not found', async () => {
    await sandboxes.create({ namespace: NS, name: 'doomed' });
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r?.state === 'running');
    await sandboxes.delete(NS, 'doomed');
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r === undefined);
    const res = await get(`${NS}--doomed`);
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_found');
  });

  it('gives a sandbox recreated under the same name only the new IP', async () => {
    const id = `${NS}--phoenix`;
    const old = await sandboxes.create({ namespace: NS, name: 'phoenix' });
    await waitForRoute(service.app.registry, id, (r) => r?.uid === old.metadata.uid && r?.state === 'running');
    // Every route the service holds for the ID from the deletion on, in order.
    const seen: (Route | undefined)[] = [];
    const unsubscribe = service.app.registry.subscribe((changed, route) => changed === id && seen.push(route));
    try {
      await sandboxes.delete(NS, 'phoenix');
      // The old pod goes (the garbage collector deletes it) and another pod takes its address, so the
      // recreated sandbox's pod gets another one: an old address served would show.
      await stack.cluster.waitForPodGone(NS, old.status?.podInfo?.podUID as string, 30_000, 'the old pod of phoenix');
      await holdAddress(podIP(old));
      const reborn = await sandboxes.create({ namespace: NS, name: 'phoenix' });
      expect(podIP(reborn)).not.toBe(podIP(old));
      const route = await waitForRoute(service.app.registry, id, (r) => r?.uid === reborn.metadata.uid && r?.state === 'running');
      expect(route?.podIP).toBe(podIP(reborn));
      expect((await get(id)).json()['upstream']).toBe(podIP(reborn));
      // Once the deletion reached the service, the old object never served again.
      const deleted = seen.indexOf(undefined);
      expect(deleted).toBeGreaterThanOrEqual(0);
      expect(seen.slice(deleted).filter((r) => r?.uid === old.metadata.uid)).toEqual([]);
    } finally {
      unsubscribe();
    }
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
    const [alpha, beta] = [await servingIP('alpha'), await servingIP('beta')];
    await plane.stopApiserver();
    for (let i = 0; i < 5; i += 1) expect((await get(`${NS}--alpha`)).json()['upstream']).toBe(alpha);
    expect((await get('beta-id')).json()['upstream']).toBe(beta);
    await plane.startApiserver();
    // A change made after the restart (a new pod, once the controllers are back) reaches the service
    // through the resumed watch.
    const moved = await movePod('alpha', 60_000);
    await waitForRoute(service.app.registry, `${NS}--alpha`, (r) => r?.state === 'running' && r.podIP === moved, 60_000);
    expect((await get(`${NS}--alpha`)).json()['upstream']).toBe(moved);
  });

  it('drops a sandbox deleted while the watch was away, and keeps the others (relist)', async () => {
    await sandboxes.create({ namespace: NS, name: 'vanishing' });
    await waitForRoute(service.app.registry, `${NS}--vanishing`, (r) => r?.state === 'running');
    await plane.stopApiserver();
    expect(await plane.etcdDelete(`/registry/agents.kruise.io/sandboxes/${NS}/vanishing`)).toBe(1);
    await plane.etcdCompact();
    await plane.startApiserver();
    await waitForRoute(service.app.registry, `${NS}--vanishing`, (r) => r === undefined, 60_000);
    expect((await get(`${NS}--vanishing`)).status).toBe(502);
    expect(service.app.registry.get('beta-id')?.state).toBe('running');
    expect((await get('beta-id')).json()['upstream']).toBe(await servingIP('beta'));
  });
});
