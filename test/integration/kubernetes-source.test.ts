// The Kubernetes route source (src/routes/kubernetes-source.ts) against the real API server, with the
// network between them made to fail the ways real networks do, by a TCP proxy (test/support/
// fault-proxy.ts): a first list that hangs (readiness), a watch connection gone half-open (the idle
// watchdog), an API server that refuses connections (backoff), a route the watch never corrected
// (periodic resync); and the scopes it can watch (cluster-wide, a label selector). The Sandboxes are
// run by OpenKruise's own controller (pods from kwok, at the addresses the objects report).
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ControlPlane } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { FaultProxy, kubeconfigThrough } from '../support/fault-proxy.ts';
import { healthCheck, HealthWatch } from '../support/health.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { podIP, type OpenKruiseSandboxes } from '../support/openkruise.ts';
import { startOpenKruiseCluster, type OpenKruiseCluster } from '../support/openkruise-cluster.ts';
import { makeRoute } from '../support/routes.ts';
import { startService, type RunningService } from '../support/service.ts';

const NS = 'source';
const OTHER = 'source-other';
let kruise: OpenKruiseCluster;
let plane: ControlPlane;
let sandboxes: OpenKruiseSandboxes;
let kubeconfig: string;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  kruise = await startOpenKruiseCluster({ namespaces: [NS, OTHER] });
  ({ plane, sandboxes } = kruise);
  kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await kruise?.stop();
});

async function proxied(): Promise<FaultProxy> {
  const proxy = await FaultProxy.start(Number(new URL(plane.url).port));
  cleanups.push(() => proxy.close());
  return proxy;
}

async function service(args: readonly string[]): Promise<RunningService> {
  const s = await startService(args);
  cleanups.push(() => s.stop());
  return s;
}

const restarts = async (s: RunningService, reason: string) =>
  (await s.app.metrics.watchRestarts.get()).values.find((v) => v.labels['reason'] === reason)?.value ?? 0;

const headers = (id: string) => ({
  request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] }, end_of_stream: true },
});

describe('readiness', () => {
  it('is not ready, and answers routes_not_ready, until its first list completes', async () => {
    const earlyIP = podIP(await sandboxes.create({ namespace: NS, name: 'early' }));
    const proxy = await proxied();
    proxy.hold();
    const s = await service(['--kubeconfig', kubeconfigThrough(kubeconfig, proxy), '--namespaces', NS]);
    const grpc = `127.0.0.1:${s.listening.grpcPort}`;
    const health = new HealthWatch(grpc);
    cleanups.push(() => health.close());
    // The list is on its way (its connection is held): nothing may claim readiness before it lands.
    await proxy.untilAttempts(1, 10_000);
    await health.until('NOT_SERVING', 10_000);
    expect(await healthCheck(grpc)).toBe('NOT_SERVING');
    const readyz = await httpGet(`http://127.0.0.1:${s.listening.httpPort}/readyz`);
    expect(`${readyz.status} ${readyz.body.trim()}`).toBe('503 not ready: routes not loaded yet');
    const client = new ExtProcClient(grpc);
    cleanups.push(() => client.close());
    const early = await client.exchange([headers(`${NS}--early`)], { closeAfter: 1 });
    expect(early.responses[0]?.immediate_response?.status?.code).toBe(503);
    expect(early.responses[0]?.immediate_response?.body?.toString()).toContain('routes_not_ready');

    proxy.release();
    await health.until('SERVING', 30_000);
    expect((await httpGet(`http://127.0.0.1:${s.listening.httpPort}/readyz`)).status).toBe(200);
    const later = await client.exchange([headers(`${NS}--early`)], { closeAfter: 1 });
    expect(JSON.stringify(later.responses[0]?.dynamic_metadata)).toContain(`"${earlyIP}:49983"`);
    expect(health.statuses).toEqual(['NOT_SERVING', 'SERVING']);
  });
});

describe('a watch that goes silent (half-open connection)', () => {
  it('is restarted after --watch-idle-timeout, from the last version: no event is lost', async () => {
    const proxy = await proxied();
    const s = await service(['--kubeconfig', kubeconfigThrough(kubeconfig, proxy), '--namespaces', NS, '--watch-idle-timeout', '5s']);
    await sandboxes.create({ namespace: NS, name: 'before' });
    await waitForRoute(s.app.registry, `${NS}--before`, (r) => r?.state === 'running');
    const idle = await restarts(s, 'idle');
    // Every open connection goes silent, and new ones hang: the sandbox created now is announced on a
    // dead watch. (A watch that ends at this very moment reconnects into the hang too: before new
    // connections were held, such a reconnect could deliver the event at once, ~1 run in 50 under load.)
    const before = proxy.attempts.length;
    proxy.hold();
    expect(proxy.blackholeOpen()).toBeGreaterThan(0);
    const silencedAt = Date.now();
    await sandboxes.createOnly({ namespace: NS, name: 'during' });
    // The service gives the silent watch up after --watch-idle-timeout (5 s) and reconnects.
    let seen = before;
    do {
      await proxy.untilAttempts(seen + 1, 20_000);
      seen += 1;
    } while ((proxy.attempts[seen - 1] as number) - silencedAt < 4_000);
    expect(s.app.registry.get(`${NS}--during`)).toBeUndefined();
    proxy.release();
    await waitForRoute(s.app.registry, `${NS}--during`, (r) => r?.state === 'running', 20_000);
    expect(await restarts(s, 'idle')).toBeGreaterThan(idle);
  });
});

describe('periodic resync', () => {
  it('removes, at the next relist, a route the watch never corrected', async () => {
    const s = await service(['--kubeconfig', kubeconfig, '--namespaces', NS, '--resync-interval', '10s']);
    await sandboxes.create({ namespace: NS, name: 'kept' });
    await waitForRoute(s.app.registry, `${NS}--kept`, (r) => r?.state === 'running');
    // What a missed deletion leaves behind: a route for an object the API server no longer has.
    // (Of the kind the source watches: a relist answers for its own kind only.)
    const kind = s.app.registry.get(`${NS}--kept`)?.kind;
    s.app.registry.upsert(
      makeRoute({ id: `${NS}--missed`, uid: 'uid-of-a-deleted-object', namespace: NS, name: 'missed', podIP: '10.3.0.5', kind }),
    );
    expect(s.app.registry.get(`${NS}--missed`)?.podIP).toBe('10.3.0.5');
    // Nothing but a relist removes it: no watch event names that object.
    const started = Date.now();
    await waitForRoute(s.app.registry, `${NS}--missed`, (r) => r === undefined, 25_000);
    expect(Date.now() - started).toBeLessThan(12_000);
    expect(s.app.registry.get(`${NS}--kept`)?.state).toBe('running');
  });
});

describe('an API server that refuses connections', () => {
  it('is retried with growing backoff (to 5 s), and the watch catches up when it is back', async () => {
    const proxy = await proxied();
    const s = await service(['--kubeconfig', kubeconfigThrough(kubeconfig, proxy), '--namespaces', NS]);
    const steady = podIP(await sandboxes.create({ namespace: NS, name: 'steady' }));
    await waitForRoute(s.app.registry, `${NS}--steady`, (r) => r?.state === 'running');
    proxy.refuse();
    const from = proxy.attempts.length;
    proxy.dropOpen();
    // Meanwhile the sandbox is paused (the controller deletes its pod): the service must learn of it
    // once the API server is back. (Asked only: the attempts below are timed in this process.)
    await sandboxes.pause(NS, 'steady');
    await proxy.untilAttempts(from + 8, 60_000);
    // Synced once, it stays ready through the outage: routes are kept.
    expect((await httpGet(`http://127.0.0.1:${s.listening.httpPort}/readyz`)).status).toBe(200);
    expect(s.app.registry.get(`${NS}--steady`)?.podIP).toBe(steady);
    const at = proxy.attempts.slice(from);
    const gaps = at.slice(1).map((t, i) => t - (at[i] as number));
    // Backoff from 200 ms doubling to 5 s, each wait drawn between half and all of its ceiling (full
    // jitter); a little slack for timers on a busy machine.
    const ceilings = gaps.map((_, i) => Math.min(5000, 400 * 2 ** i));
    const outside = gaps.filter((gap, i) => gap < (ceilings[i] as number) / 2 - 50 || gap > (ceilings[i] as number) + 500);
    expect(outside, `gaps between attempts: ${gaps.join(', ')} ms`).toEqual([]);
    proxy.release();
    await waitForRoute(s.app.registry, `${NS}--steady`, (r) => r?.state === 'paused' && !r.pausing && r.podIP === '', 15_000);
  });
});

describe('what it watches', () => {
  it('watches every namespace when none is named, and only sandboxes matching --label-selector', async () => {
    const clusterWide = await plane.serviceIdentity('cluster-wide', []);
    const ips: Record<string, string> = {};
    for (const [ns, name, tenant] of [
      [NS, 'mine', 'a'],
      [OTHER, 'mine-too', 'a'],
      [NS, 'theirs', 'b'],
      [OTHER, 'unlabelled', undefined],
    ] as const) {
      ips[name] = podIP(await sandboxes.create({ namespace: ns, name, labels: tenant === undefined ? {} : { tenant } }));
    }
    const s = await service(['--kubeconfig', clusterWide, '--label-selector', 'tenant=a']);
    const registry = s.app.registry;
    await waitForRoute(registry, `${OTHER}--mine-too`, (r) => r?.state === 'running');
    expect(registry.get(`${NS}--mine`)?.podIP).toBe(ips['mine']);
    expect(registry.get(`${NS}--theirs`)).toBeUndefined();
    expect(registry.get(`${OTHER}--unlabelled`)).toBeUndefined();
    // A label change moves a sandbox into or out of the selection, through the watch.
    await patchLabels(OTHER, 'unlabelled', { tenant: 'a' });
    await waitForRoute(registry, `${OTHER}--unlabelled`, (r) => r?.podIP === ips['unlabelled']);
    await patchLabels(NS, 'mine', { tenant: 'b' });
    await waitForRoute(registry, `${NS}--mine`, (r) => r === undefined);
    expect(registry.get(`${NS}--theirs`)).toBeUndefined();
  });
});

async function patchLabels(namespace: string, name: string, labels: Record<string, string>): Promise<void> {
  await plane.admin
    .makeApiClient(CustomObjectsApi)
    .patchNamespacedCustomObject(
      { group: 'agents.kruise.io', version: 'v1alpha1', plural: 'sandboxes', namespace, name, body: { metadata: { labels } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
}
