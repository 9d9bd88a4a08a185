// Regression guards for issue #12 and the real controller's timers (issue 23), on the real stack:
// OpenKruise's own controller (a passed pauseTime pauses a running sandbox and is left in place, a
// passed shutdownTime deletes it, a SandboxSet refills its pool, a recycle clears the claim) and its
// sandbox-manager (E2B's API: claims with short sandbox IDs and E2B's timers, a recycle on kill).
// Sandbox IDs follow their object and never cross tenants; a wake re-arms the pause timer as the
// reference gateway does, tied to the object's UID; a refused resume leaks nothing and is not retried
// per request; pod IPs that may not be routed to are refused (kwok nodes whose pod CIDRs are loopback
// and link-local).
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesResumer, ResumeError } from '../../src/wake/resumer.ts';
import type { AuditEvent, ControlPlane } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import {
  isPaused,
  isRunning,
  podIP,
  POOL_LABEL,
  SANDBOX_ID_LABEL,
  type NewSandbox,
  type OpenKruiseSandboxes,
  type SandboxObject,
} from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxManager } from '../support/sandbox-manager.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'kruise';
// Two namespaces whose legacy IDs collide: ten--ant/box and ten/ant--box are both "ten--ant--box".
const COLLIDE_A = 'ten--ant';
const COLLIDE_B = 'ten';
const PAST = '2026-01-01T00:00:00Z';
// sandbox-manager's extension: these pods run no agent runtime to initialise.
const NO_RUNTIME = { 'e2b.agents.kruise.io/skip-init-runtime': 'true' };
let stack: Stack;
let plane: ControlPlane;
let sandboxes: OpenKruiseSandboxes;
let service: RunningService;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS, COLLIDE_A, COLLIDE_B],
    serviceArgs: ['--wake-timeout', '8s'],
    recycleGracePeriod: '1s',
  });
  ({ plane, openkruise: sandboxes, service } = stack);
});

afterAll(async () => {
  await stack?.stop();
});

const get = (id: string, headers: Record<string, string> = {}) => stack.get(id, headers);
const upstream = async (id: string) => {
  const res = await get(id);
  return res.status === 200 ? (res.json()['upstream'] as string) : `${res.status} ${res.json()['error'] as string}`;
};
const metric = async (name: string) => {
  const text = await service.app.metrics.registry.getSingleMetricAsString(name);
  return Number(/ ([0-9.e+-]+)$/m.exec(text)?.[1] ?? NaN);
};
/** The versions, from the first that runs again after a pause, in which a pause was asked for again. */
const pausedAgainAfterResume = (versions: readonly SandboxObject[]) => {
  const resumed = versions.findIndex((v) => v.spec?.paused === false);
  return resumed === -1 ? [] : versions.slice(resumed).filter((v) => v.spec?.paused === true);
};

describe('sandbox IDs follow their object (claims and recycles)', () => {
  let manager: SandboxManager;

  beforeAll(async () => {
    // A pool of one whose members recycle; a new member's pod is slow to start (held), so the member
    // a recycle hands back is the one the pool keeps (the controller drops Pending members first).
    await sandboxes.createSandboxSet({ namespace: NS, name: 'pool', replicas: 1, recyclable: true, hold: true });
    const first = await sandboxes.waitForAny(NS, (o) => o.metadata.labels?.[POOL_LABEL] === 'pool', 30_000, 'the first member of pool');
    await sandboxes.release(NS, first.metadata.name);
    await sandboxes.waitForPool(NS, 'pool');
    manager = await SandboxManager.start(plane, NS);
  }, 180_000);
  afterAll(async () => {
    await manager?.stop();
  });

  it('stops routing an ID the moment its sandbox is recycled, and the object answers to a new ID on its next claim', async () => {
    // An E2B client creates a sandbox: sandbox-manager claims the pool's member, labels it with a short
    // ID and writes E2B's timers (autoPause: shutdownTime = pauseTime + the paused retention).
    const e2b = await manager.create({
      templateID: 'pool',
      timeout: 300,
      autoPause: true,
      metadata: { ...NO_RUNTIME, 'e2b.agents.kruise.io/reserve-paused-sandbox-duration': '4s' },
    });
    const first = e2b.sandboxID;
    const claimed = await sandboxes.waitForAny(
      NS,
      (o) => o.metadata.labels?.[SANDBOX_ID_LABEL] === first && isRunning(o),
      30_000,
      `sandbox ${first}`,
    );
    const name = claimed.metadata.name;
    expect(Date.parse(claimed.spec?.shutdownTime ?? '') - Date.parse(claimed.spec?.pauseTime ?? '')).toBe(4000);
    await waitForRoute(service.app.registry, first, (r) => r?.state === 'running');
    expect(await upstream(first)).toBe(podIP(claimed));
    // Its ID is the label, not its name.
    expect(await upstream(`${NS}--${name}`)).toBe('502 sandbox_not_found');

    // The client kills it: sandbox-manager asks for a recycle (its pool enabled cleanup).
    const recycling = waitForRoute(service.app.registry, first, (r) => r?.phase === 'Recycling');
    const gone = waitForRoute(service.app.registry, first, (r) => r === undefined, 30_000);
    await manager.kill(first);
    await recycling;
    // From the moment the controller recycles it, the ID no longer reaches its pod ...
    expect(await upstream(first)).toMatch(/^502 sandbox_not_(running|found)$/);
    // ... and after the grace period the claim is cleared: the ID is gone, and the object is back in
    // its pool under its own name, an unclaimed member no request reaches.
    await gone;
    expect(await upstream(first)).toBe('502 sandbox_not_found');
    await waitForRoute(service.app.registry, `${NS}--${name}`, (r) => r?.state === 'available');
    expect(await upstream(`${NS}--${name}`)).toBe('502 sandbox_not_running');

    // The next E2B client gets the same object under a new ID; the old ID stays unknown.
    const next = await manager.create({
      templateID: 'pool',
      timeout: 300,
      metadata: { ...NO_RUNTIME, 'e2b.agents.kruise.io/create-on-no-stock': 'false', 'e2b.agents.kruise.io/claim-timeout-seconds': '20' },
    });
    expect(next.sandboxID).not.toBe(first);
    const reclaimed = await sandboxes.waitForAny(
      NS,
      (o) => o.metadata.labels?.[SANDBOX_ID_LABEL] === next.sandboxID,
      30_000,
      `sandbox ${next.sandboxID}`,
    );
    expect(reclaimed.metadata.uid).toBe(claimed.metadata.uid);
    await waitForRoute(service.app.registry, next.sandboxID, (r) => r?.state === 'running');
    expect(await upstream(next.sandboxID)).toBe(podIP(reclaimed));
    expect(await upstream(`${NS}--${name}`)).toBe('502 sandbox_not_found');
    expect(await upstream(first)).toBe('502 sandbox_not_found');
  });

  it('refuses an ID two live sandboxes claim, whichever wrote last, until one gives it up', async () => {
    const owner = await sandboxes.create({ namespace: NS, name: 'owner', labels: { [SANDBOX_ID_LABEL]: 'contested' } });
    await waitForRoute(service.app.registry, 'contested', (r) => r?.state === 'running');
    const res = await get('contested', { 'x-access-token': 'irrelevant' });
    expect(res.status).toBe(200);
    // Anyone who may create a Sandbox labels one with the victim's ID.
    const thief = await sandboxes.create({ namespace: NS, name: 'thief', labels: { [SANDBOX_ID_LABEL]: 'contested' } });
    await waitForRoute(service.app.registry, 'contested', () => service.app.registry.conflicted('contested'));
    const refused = await get('contested');
    expect(refused.status).toBe(502);
    expect(refused.json()).toMatchObject({ error: 'sandbox_id_conflict', sandboxId: 'contested' });
    expect(await metric('sandbox_extproc_route_conflicts')).toBe(1);
    expect(stack.pool.upstream(podIP(thief)).received.some((r) => r.headers['e2b-sandbox-id'] === 'contested')).toBe(false);
    await sandboxes.delete(NS, 'thief');
    await waitForRoute(
      service.app.registry,
      'contested',
      (r) => r?.podIP === podIP(owner) && !service.app.registry.conflicted('contested'),
    );
    expect(await upstream('contested')).toBe(podIP(owner));
    expect(await metric('sandbox_extproc_route_conflicts')).toBe(0);
  });

  it('refuses the legacy <namespace>--<name> collision (ten--ant/box and ten/ant--box)', async () => {
    await sandboxes.create({ namespace: COLLIDE_A, name: 'box' });
    await sandboxes.create({ namespace: COLLIDE_B, name: 'ant--box' });
    await waitForRoute(service.app.registry, 'ten--ant--box', () => service.app.registry.conflicted('ten--ant--box'));
    expect(await upstream('ten--ant--box')).toBe('502 sandbox_id_conflict');
  });
});

describe("the controller's timers, and a wake that re-arms them as the reference gateway does", () => {
  /** Runs a sandbox, then lets its pauseTime pass (as E2B's timeout API could set it): the controller pauses it. */
  async function expired(name: string, extra: Partial<NewSandbox> = {}) {
    await sandboxes.create({ namespace: NS, name, ...extra });
    const id = `${NS}--${name}`;
    const paused = waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
    await sandboxes.patch(NS, name, { spec: { pauseTime: PAST } });
    await paused;
    return { id, object: await sandboxes.waitFor(NS, name, isPaused, 30_000, 'paused') };
  }

  it('pauses a running sandbox whose pauseTime has passed and leaves pauseTime: a plain paused=false is paused again at once', async () => {
    const { object } = await expired('timed');
    expect(object.spec?.pauseTime).toBe(PAST);
    // A resume that does not move the passed pauseTime (what the service's wake must never do) is undone.
    const resumed = await sandboxes.patch(NS, 'timed', { spec: { paused: false } });
    const again = await sandboxes.waitFor(
      NS,
      'timed',
      (o) => o.spec?.paused === true && (o.metadata.generation ?? 0) > (resumed.metadata.generation ?? 0),
      30_000,
      'paused again by its controller',
    );
    expect(again.spec?.pauseTime).toBe(PAST);
  });

  it('clears a passed pauseTime when no pause timeout is configured, so the controller does not pause it again', async () => {
    const { id } = await expired('napper', { wake: { by: 'policy' } });
    const seen = await sandboxes.record(NS, 'napper');
    const res = await get(id);
    seen.stop();
    expect(res.status, res.body).toBe(200);
    const after = await sandboxes.get(NS, 'napper');
    expect(res.json()['upstream']).toBe(podIP(after));
    expect(after.spec?.paused).toBe(false);
    expect(after.spec?.pauseTime).toBeUndefined();
    expect(pausedAgainAfterResume(seen.versions)).toEqual([]);
  });

  it('re-arms pauseTime from the legacy annotation (at least 300 s) and pushes shutdownTime 100 years out', async () => {
    const soon = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const { id } = await expired('legacy', { wake: { by: 'annotation', pauseTimeoutSeconds: 60 }, shutdownTime: soon });
    const seen = await sandboxes.record(NS, 'legacy');
    const before = Date.now();
    const res = await get(id);
    seen.stop();
    expect(res.status, res.body).toBe(200);
    const after = await sandboxes.get(NS, 'legacy');
    const pauseAt = Date.parse(after.spec?.pauseTime ?? '');
    expect(pauseAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 300_000);
    expect(pauseAt).toBeLessThanOrEqual(Date.now() + 301_000);
    expect(new Date(after.spec?.shutdownTime ?? '').getUTCFullYear()).toBeGreaterThanOrEqual(new Date().getUTCFullYear() + 99);
    expect(pausedAgainAfterResume(seen.versions)).toEqual([]);
  });

  it('deletes a sandbox whose shutdownTime has passed; the garbage collector removes its pod, and one re-created under the name gets a pod of its own', async () => {
    const doomed = await sandboxes.create({ namespace: NS, name: 'doomed' });
    const id = `${NS}--doomed`;
    const oldPod = doomed.status?.podInfo?.podUID as string;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'running');
    const gone = waitForRoute(service.app.registry, id, (r) => r === undefined);
    await sandboxes.patch(NS, 'doomed', { spec: { shutdownTime: PAST } });
    await gone;
    await expect(sandboxes.get(NS, 'doomed')).rejects.toMatchObject({ code: 404 });
    expect(await upstream(id)).toBe('502 sandbox_not_found');
    // A running sandbox has no finalizer: its pod, owned by it, is left to the garbage collector.
    await stack.cluster.waitForPodGone(NS, oldPod, 30_000, 'the pod of the deleted sandbox');
    const again = await sandboxes.create({ namespace: NS, name: 'doomed' });
    expect(again.metadata.uid).not.toBe(doomed.metadata.uid);
    expect(again.status?.podInfo?.podUID).not.toBe(oldPod);
    expect((await stack.cluster.podsOwnedBy(NS, again.metadata.uid as string)).map((p) => p.metadata?.uid)).toEqual([
      again.status?.podInfo?.podUID,
    ]);
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'running');
    expect(await upstream(id)).toBe(podIP(again));
  });

  it('never resumes a recreated object of the same name on the old one\u2019s route (UID precondition)', async () => {
    await sandboxes.create({ namespace: NS, name: 'phoenix', wake: { by: 'policy' }, paused: true });
    const id = `${NS}--phoenix`;
    const old = (await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing))!;
    // Paused, it carries the controller's finalizer: it is gone once the controller has let it go.
    const gone = waitForRoute(service.app.registry, id, (r) => r === undefined);
    await sandboxes.delete(NS, 'phoenix');
    await gone;
    await sandboxes.create({ namespace: NS, name: 'phoenix', wake: { by: 'policy' }, paused: true, accessToken: 'new' });
    const resumer = new KubernetesResumer(plane.admin);
    const failure = await resumer.resume(old, AbortSignal.timeout(5000)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ResumeError);
    expect((failure as ResumeError).failure).toBe('replaced');
    expect((await sandboxes.get(NS, 'phoenix')).spec?.paused).toBe(true);
  });
});

describe('a refused resume', () => {
  let restricted: RunningService;
  const user = 'system:serviceaccount:sandbox-extproc-system:read-only';

  beforeAll(async () => {
    // An identity that may read Sandboxes but not patch them: every resume is refused with a 403
    // whose text names the namespace, the object and the service account.
    const core = plane.admin.makeApiClient(CoreV1Api);
    const rbac = plane.admin.makeApiClient(RbacAuthorizationV1Api);
    await core.createNamespacedServiceAccount({ namespace: 'sandbox-extproc-system', body: { metadata: { name: 'read-only' } } });
    await rbac.createClusterRole({
      body: {
        metadata: { name: 'read-only' },
        rules: [{ apiGroups: ['agents.kruise.io'], resources: ['sandboxes'], verbs: ['list', 'watch'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: NS,
      body: {
        metadata: { name: 'read-only' },
        subjects: [{ kind: 'ServiceAccount', name: 'read-only', namespace: 'sandbox-extproc-system' }],
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'read-only' },
      },
    });
    restricted = await startService(['--kubeconfig', await plane.kubeconfigFor('sandbox-extproc-system', 'read-only'), '--namespaces', NS]);
  });
  afterAll(async () => {
    await restricted?.stop();
  });

  it('answers 503 with the catalogue message only, then answers from memory with Retry-After and sends no further patch', async () => {
    await sandboxes.create({ namespace: NS, name: 'locked', wake: { by: 'policy' }, paused: true });
    const id = `${NS}--locked`;
    await waitForRoute(restricted.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
    const client = new ExtProcClient(`127.0.0.1:${restricted.listening.grpcPort}`);
    // A held request gets the timeout override, then its answer; one answered from memory only the answer.
    const ask = async (answers: number) => {
      const { responses } = await client.exchange(
        [{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }],
        {
          closeAfter: answers,
        },
      );
      return responses.find((r) => r.immediate_response !== undefined)?.immediate_response;
    };
    try {
      const first = await ask(2);
      expect(first?.status?.code).toBe(503);
      const body = first?.body?.toString() ?? '';
      expect(JSON.parse(body)).toEqual({ error: 'sandbox_wake_failed', message: 'the sandbox could not be woken', sandboxId: id });
      expect(body).not.toMatch(/forbidden|serviceaccount|kruise\.io|audit|HTTP 403/i);
      const second = await ask(1);
      expect(second?.status?.code).toBe(503);
      const retryAfter = second?.headers?.set_headers?.find((h) => h.header.key === 'retry-after')?.header.raw_value?.toString();
      expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
      await plane.auditBarrier();
      const patches = plane.auditEvents(
        (e: AuditEvent) => e.verb === 'patch' && e.objectRef?.name === 'locked' && e.user.username === user,
      );
      expect(patches).toHaveLength(1);
      expect(patches[0]?.responseStatus?.code).toBe(403);
      // Refused, the sandbox stays as it was: its controller was never asked to resume it.
      expect(isPaused(await sandboxes.get(NS, 'locked'))).toBe(true);
    } finally {
      client.close();
    }
  });
});

describe('pod IPs that may not be routed to', () => {
  it('answers 502 for a sandbox whose pod has a loopback or link-local address, and counts it', async () => {
    // kwok nodes whose pod CIDRs are link-local and an ordinary pod network; the first node's is on
    // loopback (where the test upstreams listen). Pods get their addresses from their node, as anywhere.
    await stack.cluster.addNode('kwok-link-local', '169.254.169.0/24');
    await stack.cluster.addNode('kwok-pod-network', '10.244.1.0/24');
    // Without the test environment's --upstream-cidrs 127.0.0.0/8: the production default.
    const strict = await startService(['--kubeconfig', stack.kubeconfig, '--namespaces', NS], { SANDBOX_EXTPROC_UPSTREAM_CIDRS: '' });
    const client = new ExtProcClient(`127.0.0.1:${strict.listening.grpcPort}`);
    try {
      const loopy = await sandboxes.create({ namespace: NS, name: 'loopy' });
      const metadata = await sandboxes.create({ namespace: NS, name: 'metadata', nodeName: 'kwok-link-local' });
      const fine = await sandboxes.create({ namespace: NS, name: 'fine', nodeName: 'kwok-pod-network' });
      expect([podIP(loopy), podIP(metadata), podIP(fine)]).toEqual([
        expect.stringMatching(/^127\./),
        expect.stringMatching(/^169\.254\.169\./),
        expect.stringMatching(/^10\.244\.1\./),
      ]);
      for (const name of ['loopy', 'metadata', 'fine']) await waitForRoute(strict.app.registry, `${NS}--${name}`, (r) => r !== undefined);
      const answer = async (name: string) => {
        const { responses } = await client.exchange(
          [{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(`${NS}--${name}`) }] } } }],
          { closeAfter: 1 },
        );
        const r = responses[0];
        return r?.immediate_response?.status?.code ?? JSON.stringify(r?.dynamic_metadata?.fields['envoy.lb.original_dst']);
      };
      expect(await answer('loopy')).toBe(502);
      expect(await answer('metadata')).toBe(502);
      expect(await answer('fine')).toContain(`${podIP(fine)}:49983`);
      const refused = await strict.app.metrics.registry.getSingleMetricAsString('sandbox_extproc_upstream_addresses_refused_total');
      expect(Number(/ (\d+)$/m.exec(refused)?.[1])).toBeGreaterThanOrEqual(2);
    } finally {
      client.close();
      await strict.stop();
    }
  });
});

describe('answers name the sandbox', () => {
  it('says which ID is unknown in the 502 message (E2B SDKs show clients only the message)', async () => {
    const res = await get('no-such-box');
    expect(res.status).toBe(502);
    // OpenKruise's gateway's own words, which E2B clients already see.
    expect(res.json()['message']).toBe('sandbox not found: no-such-box');
  });
});
