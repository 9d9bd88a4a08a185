// Regression guards for issue #12, on the real stack with the strict test controller (a passed
// pauseTime pauses, a passed shutdownTime deletes, claims and recycles relabel the ID): sandbox IDs
// follow their object and never cross tenants; a wake re-arms the pause timer as the reference
// gateway does, tied to the object's UID; a refused resume leaks nothing and is not retried per
// request; pod IPs that may not be routed to are refused.
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesResumer, ResumeError } from '../../src/wake/resumer.ts';
import type { AuditEvent, ControlPlane } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { waitForRoute } from '../support/registry-events.ts';
import type { SandboxController } from '../support/sandbox-controller.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'kruise';
// Two namespaces whose legacy IDs collide: ten--ant/box and ten/ant--box are both "ten--ant--box".
const COLLIDE_A = 'ten--ant';
const COLLIDE_B = 'ten';
let stack: Stack;
let plane: ControlPlane;
let controller: SandboxController;
let service: RunningService;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS, COLLIDE_A, COLLIDE_B],
    ips: ['127.0.0.81', '127.0.0.82', '127.0.0.83'],
    controller: { resumeDelayMs: 200 },
    serviceArgs: ['--wake-timeout', '8s'],
  });
  ({ plane, controller, service } = stack);
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

describe('sandbox IDs follow their object (claims and recycles)', () => {
  it('stops routing an ID the moment its sandbox is recycled, instead of sending the next tenant to the old pod', async () => {
    await controller.create({ namespace: NS, name: 'pooled', podIP: '127.0.0.81', id: 'tenant-one' });
    await waitForRoute(service.app.registry, 'tenant-one', (r) => r?.state === 'running');
    expect(await upstream('tenant-one')).toBe('127.0.0.81');
    await controller.recycle(NS, 'pooled');
    await waitForRoute(service.app.registry, 'tenant-one', (r) => r === undefined);
    expect(await upstream('tenant-one')).toBe('502 sandbox_not_found');
    // The recycled object answers to its own name again, and a new claim moves it.
    expect(await upstream(`${NS}--pooled`)).toBe('127.0.0.81');
    await controller.claim(NS, 'pooled', 'tenant-two');
    await waitForRoute(service.app.registry, 'tenant-two', (r) => r?.state === 'running');
    expect(await upstream(`${NS}--pooled`)).toBe('502 sandbox_not_found');
    expect(await upstream('tenant-two')).toBe('127.0.0.81');
    expect(service.app.registry.size).toBeGreaterThanOrEqual(1);
  });

  it('refuses an ID two live sandboxes claim, whichever wrote last, until one gives it up', async () => {
    await controller.create({ namespace: NS, name: 'owner', podIP: '127.0.0.82', id: 'contested' });
    await waitForRoute(service.app.registry, 'contested', (r) => r?.state === 'running');
    const res = await get('contested', { 'x-access-token': 'irrelevant' });
    expect(res.status).toBe(200);
    // Anyone who may create a Sandbox labels one with the victim's ID.
    await controller.create({ namespace: NS, name: 'thief', podIP: '127.0.0.83', id: 'contested' });
    await waitForRoute(service.app.registry, 'contested', () => service.app.registry.conflicted('contested'));
    const refused = await get('contested');
    expect(refused.status).toBe(502);
    expect(refused.json()).toMatchObject({ error: 'sandbox_id_conflict', sandboxId: 'contested' });
    expect(await metric('sandbox_extproc_route_conflicts')).toBe(1);
    expect(stack.pool.upstream('127.0.0.83').received.some((r) => r.headers['e2b-sandbox-id'] === 'contested')).toBe(false);
    await controller.delete(NS, 'thief');
    await waitForRoute(service.app.registry, 'contested', (r) => r?.podIP === '127.0.0.82');
    expect(await upstream('contested')).toBe('127.0.0.82');
    expect(await metric('sandbox_extproc_route_conflicts')).toBe(0);
  });

  it('refuses the legacy <namespace>--<name> collision (ten--ant/box and ten/ant--box)', async () => {
    await controller.create({ namespace: COLLIDE_A, name: 'box', podIP: '127.0.0.81' });
    await controller.create({ namespace: COLLIDE_B, name: 'ant--box', podIP: '127.0.0.82' });
    await waitForRoute(service.app.registry, 'ten--ant--box', () => service.app.registry.conflicted('ten--ant--box'));
    expect(await upstream('ten--ant--box')).toBe('502 sandbox_id_conflict');
  });
});

describe('a wake re-arms the pause timer as the reference gateway does', () => {
  const past = '2026-01-01T00:00:00Z';

  it('clears a passed pauseTime when no pause timeout is configured, so the controller does not pause it again at once', async () => {
    await controller.create({ namespace: NS, name: 'napper', podIP: '127.0.0.81', wake: { by: 'policy' }, paused: true, pauseTime: past });
    const id = `${NS}--napper`;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
    const res = await get(id);
    expect(res.status, res.body).toBe(200);
    const after = await controller.get(NS, 'napper');
    expect(after.spec?.paused).toBe(false);
    expect(after.spec?.pauseTime).toBeUndefined();
    expect(controller.timerActions.filter((a) => a.name === 'napper')).toEqual([]);
  });

  it('re-arms pauseTime from the legacy annotation (at least 300 s) and pushes shutdownTime 100 years out', async () => {
    const soon = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await controller.create({
      namespace: NS,
      name: 'legacy',
      podIP: '127.0.0.82',
      wake: { by: 'annotation', pauseTimeoutSeconds: 60 },
      paused: true,
      pauseTime: past,
      shutdownTime: soon,
    });
    const id = `${NS}--legacy`;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
    const before = Date.now();
    const res = await get(id);
    expect(res.status, res.body).toBe(200);
    const after = await controller.get(NS, 'legacy');
    const pauseAt = Date.parse(after.spec?.pauseTime ?? '');
    expect(pauseAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 300_000);
    expect(pauseAt).toBeLessThanOrEqual(Date.now() + 301_000);
    expect(new Date(after.spec?.shutdownTime ?? '').getUTCFullYear()).toBeGreaterThanOrEqual(new Date().getUTCFullYear() + 99);
    expect(controller.timerActions.filter((a) => a.name === 'legacy')).toEqual([]);
  });

  it('the test controller is as strict as the real one: a passed pauseTime pauses, a passed shutdownTime deletes', async () => {
    const inASecond = () => new Date(Date.now() + 1000).toISOString();
    const paused = waitForRoute(service.app.registry, `${NS}--timed`, (r) => r?.state === 'paused' && !r.pausing);
    await controller.create({ namespace: NS, name: 'timed', podIP: '127.0.0.83', pauseTime: inASecond() });
    await paused;
    await controller.create({ namespace: NS, name: 'doomed', podIP: '127.0.0.83', shutdownTime: inASecond() });
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r?.state === 'running');
    await waitForRoute(service.app.registry, `${NS}--doomed`, (r) => r === undefined);
    expect(controller.timerActions).toEqual(
      expect.arrayContaining([
        { action: 'pause', namespace: NS, name: 'timed' },
        { action: 'delete', namespace: NS, name: 'doomed' },
      ]),
    );
  });

  it('never resumes a recreated object of the same name on the old one\u2019s route (UID precondition)', async () => {
    await controller.create({ namespace: NS, name: 'phoenix', podIP: '127.0.0.81', wake: { by: 'policy' }, paused: true });
    const id = `${NS}--phoenix`;
    const old = (await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing))!;
    await controller.delete(NS, 'phoenix');
    await controller.create({
      namespace: NS,
      name: 'phoenix',
      podIP: '127.0.0.81',
      wake: { by: 'policy' },
      paused: true,
      accessToken: 'new',
    });
    const resumer = new KubernetesResumer(plane.admin);
    const failure = await resumer.resume(old, AbortSignal.timeout(5000)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ResumeError);
    expect((failure as ResumeError).failure).toBe('replaced');
    expect((await controller.get(NS, 'phoenix')).spec?.paused).toBe(true);
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
    await controller.create({ namespace: NS, name: 'locked', podIP: '127.0.0.81', wake: { by: 'policy' }, paused: true });
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
      const patches = plane.auditEvents(
        (e: AuditEvent) => e.verb === 'patch' && e.objectRef?.name === 'locked' && e.user.username === user,
      );
      expect(patches).toHaveLength(1);
      expect(patches[0]?.responseStatus?.code).toBe(403);
    } finally {
      client.close();
    }
  });
});

describe('pod IPs that may not be routed to', () => {
  it('answers 502 for a sandbox whose status names a loopback or link-local address, and counts it', async () => {
    // Without the test environment's --upstream-cidrs 127.0.0.0/8: the production default.
    const strict = await startService(['--kubeconfig', stack.kubeconfig, '--namespaces', NS], { SANDBOX_EXTPROC_UPSTREAM_CIDRS: '' });
    const client = new ExtProcClient(`127.0.0.1:${strict.listening.grpcPort}`);
    try {
      await controller.create({ namespace: NS, name: 'loopy', podIP: '127.0.0.1' });
      await controller.create({ namespace: NS, name: 'metadata', podIP: '169.254.169.254' });
      await controller.create({ namespace: NS, name: 'fine', podIP: '10.244.1.7' });
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
      expect(await answer('fine')).toContain('10.244.1.7:49983');
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
