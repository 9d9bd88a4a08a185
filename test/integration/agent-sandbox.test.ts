// kubernetes-sigs/agent-sandbox's Sandbox (agents.x-k8s.io/v1beta1) on the real stack: Envoy ->
// sandbox-extproc running both families (--sandbox-kind openkruise,agent-sandbox) as its own
// least-privilege ServiceAccount -> a real kube-apiserver and etcd with agent-sandbox's CRD, and a test
// controller behaving like theirs. Requests name sandboxes by agent-sandbox's router headers. Every row
// of the README's "How a request is decided" table is exercised for this family; patches are counted
// from the API server's audit log.
import { request } from 'node:http';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesResumer, ResumeError } from '../../src/wake/resumer.ts';
import type { AgentSandboxController, NewAgentSandbox } from '../support/agent-sandbox-controller.ts';
import { isActivityRecord, type AuditEvent, type ControlPlane } from '../support/controlplane.ts';
import type { RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import type { SandboxController } from '../support/sandbox-controller.ts';
import type { UpstreamPool } from '../support/sandboxes.ts';
import type { RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const DEFAULT_NS = 'default';
const TEAM = 'team-a';
/** Watched by the service, but requests may not name it. */
const FORBIDDEN = 'team-b';
const [IP1, IP2, IP3, VICTIM] = ['127.0.0.121', '127.0.0.122', '127.0.0.123', '127.0.0.129'];
const SERVICE_USER = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';
let stack: Stack;
let plane: ControlPlane;
let agents: AgentSandboxController;
let kruise: SandboxController;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;
const startDelays = new Map<string, number>();
const resumeIPs = new Map<string, string>();
const stuck = new Set<string>(['stuck']);

beforeAll(async () => {
  stack = await startStack({
    kinds: ['openkruise', 'agent-sandbox'],
    namespaces: [DEFAULT_NS, TEAM, FORBIDDEN],
    ips: [IP1, IP2, IP3, VICTIM],
    agentController: { startDelayMs: (name) => startDelays.get(name) ?? 300, resumeIP: (name) => resumeIPs.get(name), stuck },
    controller: { resumeDelayMs: 300 },
    agentSandboxes: [
      { namespace: DEFAULT_NS, name: 'web', podIP: IP1 },
      { namespace: TEAM, name: 'web', podIP: IP2 },
      { namespace: FORBIDDEN, name: 'secret', podIP: IP3 },
    ],
    serviceArgs: ['--wake-timeout', '20s', '--agent-sandbox-namespaces', `${DEFAULT_NS},${TEAM}`],
    envoy: { messageTimeout: '1s', maxMessageTimeout: '300s' },
  });
  ({ plane, pool, service, envoy } = stack);
  agents = stack.agentController as AgentSandboxController;
  kruise = stack.controller;
  await waitForRoute(service.app.registry, `${FORBIDDEN}/secret`, (r) => r?.state === 'running');
});

afterAll(async () => {
  await stack?.stop();
});

const agent = (name: string, headers: Record<string, string> = {}, namespace = TEAM) => stack.getAgent(namespace, name, headers);
/** Resume patches the API server applied (2xx): a conflicting one (first writer wins) changed nothing, and activity records are not resumes. */
const patches = (name: string, group = 'agents.x-k8s.io') =>
  plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.apiGroup === group &&
      e.objectRef.subresource === undefined &&
      e.user.username === SERVICE_USER &&
      !isActivityRecord(e) &&
      (e.responseStatus?.code ?? 0) < 300,
  );

/** Creates a suspended sandbox in TEAM and waits until the service sees it paused. */
async function suspended(name: string, extra: Partial<NewAgentSandbox> = {}): Promise<string> {
  await agents.create({ namespace: TEAM, name, podIP: IP1, wake: true, suspended: true, ...extra });
  const id = `${TEAM}/${name}`;
  await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && r.pauseRequested);
  return id;
}

describe('routing by agent-sandbox router headers', () => {
  it('is ready after both families listed, and routes x-sandbox-id in the default namespace and in a named one', async () => {
    expect((await httpGet(`http://127.0.0.1:${service.listening.httpPort}/readyz`)).status).toBe(200);
    // Both versions are served: API discovery chose v1beta1 (the storage version).
    expect(service.app.registry.get(`${TEAM}/web`)?.kind?.version).toBe('v1beta1');
    expect((await agent('web', {}, DEFAULT_NS)).json()['upstream']).toBe(IP1);
    // No x-sandbox-namespace: the default namespace.
    const bare = await httpGet(`${envoy.url}/`, { 'x-sandbox-id': 'web', 'x-sandbox-port': String(pool.port) });
    expect(bare.json()['upstream']).toBe(IP1);
    expect((await agent('web')).json()['upstream']).toBe(IP2);
  });

  it('sends a request that names no port to port 8888, as their router does', async () => {
    const res = await httpGet(`${envoy.url}/port-check`, { 'x-sandbox-id': 'web', 'x-sandbox-namespace': TEAM });
    expect(res.status).toBe(503); // nothing listens on 8888 here: Envoy's own connect failure
    const entry = await envoy.waitForAccessLog((e) => e['path'] === '/port-check');
    expect(entry['upstream']).toBe(`${IP2}:8888`);
    expect(entry['sandbox_id']).toBe(`${TEAM}/web`);
  });

  it('follows a pod IP change', async () => {
    await agents.setPodIP(TEAM, 'web', IP3);
    await waitForRoute(service.app.registry, `${TEAM}/web`, (r) => r?.podIP === IP3);
    expect((await agent('web')).json()['upstream']).toBe(IP3);
    await agents.setPodIP(TEAM, 'web', IP2);
    await waitForRoute(service.app.registry, `${TEAM}/web`, (r) => r?.podIP === IP2);
  });

  it.each([
    [{ 'x-sandbox-id': 'Web' }, 'invalid_sandbox_id'],
    [{ 'x-sandbox-id': 'web.evil.com' }, 'invalid_sandbox_id'],
    [{ 'x-sandbox-id': 'web', 'x-sandbox-namespace': '../kube-system' }, 'invalid_sandbox_namespace'],
    [{ 'x-sandbox-id': 'web', 'x-sandbox-port': '0' }, 'invalid_sandbox_port'],
  ])('answers the malformed request %j with 400 %s', async (headers, code) => {
    const res = await httpGet(`${envoy.url}/`, headers);
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe(code);
  });

  it('answers an unknown sandbox with 502 sandbox_not_found', async () => {
    const res = await agent('nobody');
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: 'sandbox_not_found', sandboxId: `${TEAM}/nobody` });
  });

  it('answers a sandbox whose pod is starting (Ready=False DependenciesNotReady) with 503 sandbox_not_ready', async () => {
    startDelays.set('fresh', 60_000);
    await agents.create({ namespace: TEAM, name: 'fresh', podIP: IP1, starting: true });
    await waitForRoute(service.app.registry, `${TEAM}/fresh`, (r) => r?.state === 'creating');
    const res = await agent('fresh');
    expect(res.status).toBe(503);
    expect(res.json()['error']).toBe('sandbox_not_ready');
    expect(res.headers['retry-after']).toBe('1');
  });

  it('answers a sandbox reporting a pod IP that may not be routed to with 502, never connecting there', async () => {
    await agents.create({ namespace: TEAM, name: 'metadata', podIP: '169.254.169.254' });
    await waitForRoute(service.app.registry, `${TEAM}/metadata`, (r) => r?.state === 'dead');
    const res = await agent('metadata');
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
  });

  it('answers an expired sandbox (shutdownTime passed, Retain) with 502 sandbox_not_running, and a deleted one (Delete) as not found', async () => {
    const soon = new Date(Date.now() + 1500).toISOString();
    await agents.create({ namespace: TEAM, name: 'mayfly', podIP: IP1, shutdownTime: soon, shutdownPolicy: 'Retain', wake: true });
    await agents.create({ namespace: TEAM, name: 'ephemeral', podIP: IP1, shutdownTime: soon, shutdownPolicy: 'Delete' });
    await waitForRoute(service.app.registry, `${TEAM}/mayfly`, (r) => r?.state === 'dead');
    await waitForRoute(service.app.registry, `${TEAM}/ephemeral`, (r) => r === undefined);
    expect((await agents.get(TEAM, 'mayfly')).status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('SandboxExpired');
    const retained = await agent('mayfly');
    expect(retained.status).toBe(502);
    expect(retained.json()['error']).toBe('sandbox_not_running');
    expect((await agent('ephemeral')).json()['error']).toBe('sandbox_not_found');
    await plane.auditBarrier();
    expect(patches('mayfly')).toHaveLength(0);
  });

  it('answers a sandbox whose pod failed (Finished) with 502 sandbox_not_running', async () => {
    await agents.create({ namespace: TEAM, name: 'crashed', podIP: IP1, wake: true });
    await waitForRoute(service.app.registry, `${TEAM}/crashed`, (r) => r?.state === 'running');
    await agents.finish(TEAM, 'crashed', 'PodFailed');
    await waitForRoute(service.app.registry, `${TEAM}/crashed`, (r) => r?.state === 'dead');
    expect((await agent('crashed')).json()['error']).toBe('sandbox_not_running');
    await plane.auditBarrier();
    expect(patches('crashed')).toHaveLength(0);
  });
});

describe('security, through the real Envoy', () => {
  it('never honours x-sandbox-pod-ip, x-sandbox-uid or x-envoy-original-dst-host, and removes them before the sandbox', async () => {
    const victim = pool.upstream(VICTIM);
    const before = victim.received.length;
    const spoof = {
      'x-sandbox-pod-ip': VICTIM,
      'x-sandbox-uid': 'some-other-uid',
      'x-envoy-original-dst-host': `${VICTIM}:${pool.port}`,
    };
    const res = await agent('web', spoof);
    expect(res.status).toBe(200);
    const seen = res.json<{ upstream: string; headers: Record<string, string> }>();
    expect(seen.upstream).toBe(IP2);
    expect(seen.headers['x-sandbox-pod-ip']).toBeUndefined();
    expect(seen.headers['x-sandbox-uid']).toBeUndefined();
    expect(seen.headers['x-envoy-original-dst-host']).toBeUndefined();
    // The routing headers themselves reach the sandbox, as their router passes them.
    expect(seen.headers['x-sandbox-id']).toBe('web');
    // A request naming nothing routable gets an answer from the service, and the victim nothing.
    expect((await agent('nobody', spoof)).status).toBe(502);
    expect((await httpGet(`${envoy.url}/`, { ...spoof, 'x-sandbox-id': 'Bad!' })).status).toBe(400);
    expect((await httpGet(`${envoy.url}/`, spoof)).status).toBe(400);
    expect(victim.received.length).toBe(before);
  });

  it('refuses a namespace requests may not name with 403 namespace_not_allowed, though the sandbox exists and is watched', async () => {
    const secret = pool.upstream(IP3);
    const before = secret.received.length;
    expect(service.app.registry.get(`${FORBIDDEN}/secret`)?.state).toBe('running');
    const res = await agent('secret', {}, FORBIDDEN);
    expect(res.status).toBe(403);
    expect(res.json()['error']).toBe('namespace_not_allowed');
    // Not even whether it exists: a name that does not exist there gets the same answer.
    expect((await agent('does-not-exist', {}, FORBIDDEN)).json()['error']).toBe('namespace_not_allowed');
    expect(secret.received.length).toBe(before);
  });

  it('never routes to, nor wakes, an unclaimed warm-pool member by name; its adoption by a claim makes it routable', async () => {
    await agents.create({ namespace: TEAM, name: 'pool-x7k2p', podIP: IP1, warmPool: 'python-pool', wake: true });
    await agents.create({ namespace: TEAM, name: 'pool-q9w3e', podIP: IP1, warmPool: 'python-pool', wake: true, suspended: true });
    await waitForRoute(service.app.registry, `${TEAM}/pool-q9w3e`, (r) => r?.state === 'available');
    await waitForRoute(service.app.registry, `${TEAM}/pool-x7k2p`, (r) => r?.state === 'available');
    for (const name of ['pool-x7k2p', 'pool-q9w3e']) {
      const res = await agent(name);
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({
        error: 'sandbox_not_running',
        message: `healthy sandbox not found: ${TEAM}/${name} (the sandbox is an unclaimed pool member)`,
      });
      await plane.auditBarrier();
      expect(patches(name)).toHaveLength(0);
    }
    await agents.adopt(TEAM, 'pool-x7k2p', 'my-claim');
    await waitForRoute(service.app.registry, `${TEAM}/pool-x7k2p`, (r) => r?.state === 'running');
    expect((await agent('pool-x7k2p')).json()['upstream']).toBe(IP1);
  });
});

describe('wake on traffic', () => {
  it('wakes a suspended, opted-in sandbox: one patch (operatingMode Running), released by Ready=True with an IP', async () => {
    startDelays.set('sleepy', 2500); // longer than Envoy's 1 s message_timeout: only the override keeps the request
    const id = await suspended('sleepy');
    const res = await agent('sleepy');
    expect(res.status).toBe(200);
    expect(res.json()['upstream']).toBe(IP1);
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThanOrEqual(2000);
    expect(patches('sleepy')).toHaveLength(1);
    const object = await agents.get(TEAM, 'sleepy');
    expect(object.spec?.operatingMode).toBe('Running');
    // The Suspended condition lingers after the resume, as agent-sandbox's types warn: it must not count.
    expect(object.status?.conditions?.find((c) => c.type === 'Suspended')?.status).toBe('True');
    expect(service.app.registry.get(id)?.state).toBe('running');
    const entry = await envoy.waitForAccessLog((e) => e['sandbox_id'] === id && e['decision'] === 'wake');
    expect(Number(entry['wake_ms'])).toBeGreaterThanOrEqual(2000);
    const again = await agent('sleepy');
    expect(again.headers['x-sandbox-wake-ms']).toBeUndefined();
    expect(patches('sleepy')).toHaveLength(1);
  });

  it('serves 200 concurrent requests to one suspended sandbox with a single patch', async () => {
    startDelays.set('crowd', 1000);
    await suspended('crowd');
    const results = await Promise.all(Array.from({ length: 200 }, () => agent('crowd')));
    expect(results.map((r) => r.status)).toEqual(Array(200).fill(200));
    expect(patches('crowd')).toHaveLength(1);
  });

  it('holds requests that arrive while the woken pod is starting (DependenciesNotReady) in the same wake', async () => {
    startDelays.set('latecomers', 2500);
    const id = await suspended('latecomers');
    const first = agent('latecomers');
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'creating');
    const late = await Promise.all(Array.from({ length: 20 }, () => agent('latecomers')));
    expect(late.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect((await first).status).toBe(200);
    expect(patches('latecomers')).toHaveLength(1);
  });

  it('answers a sandbox that did not opt in with 502 and patches nothing', async () => {
    await suspended('hermit', { wake: false });
    const res = await agent('hermit');
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
    await plane.auditBarrier();
    expect(patches('hermit')).toHaveLength(0);
  });

  it('answers a wrong or missing access token with 401 and patches nothing; the right one wakes it', async () => {
    await suspended('guarded', { accessToken: 'correct-horse' });
    expect((await agent('guarded', { 'x-access-token': 'wrong' })).status).toBe(401);
    expect((await agent('guarded')).status).toBe(401);
    await plane.auditBarrier();
    expect(patches('guarded')).toHaveLength(0);
    const ok = await agent('guarded', { 'x-access-token': 'correct-horse' });
    expect(ok.status).toBe(200);
    expect(patches('guarded')).toHaveLength(1);
  });

  it('answers 503 with Retry-After at the per-sandbox deadline; the resume goes on and a retry finds it running', async () => {
    startDelays.set('slowpoke', 3500);
    const id = await suspended('slowpoke', { wake: { deadlineSeconds: 2 } });
    const running = waitForRoute(service.app.registry, id, (r) => r?.state === 'running', 20_000);
    const res = await agent('slowpoke');
    expect(res.status).toBe(503);
    expect(res.json()['error']).toBe('sandbox_wake_timeout');
    expect(res.headers['retry-after']).toBe('2');
    await running;
    expect((await agent('slowpoke')).status).toBe(200);
    expect(patches('slowpoke')).toHaveLength(1);
  });

  it('with a controller that never starts the pod: every waiter gets 503 at the deadline, all wake state is freed; released, it serves', async () => {
    const id = await suspended('stuck', { wake: { deadlineSeconds: 2 } });
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 50 }, () => agent('stuck')));
    expect(results.every((r) => r.status === 503 && r.json()['error'] === 'sandbox_wake_timeout')).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    const wakes = service.app.wakes!;
    expect(wakes.waiting).toBe(0);
    expect(wakes.inFlight).toBe(0);
    expect(patches('stuck')).toHaveLength(1);
    agents.release(TEAM, 'stuck');
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'running');
    expect((await agent('stuck')).status).toBe(200);
    expect(patches('stuck')).toHaveLength(1);
  });

  it('frees the slot of a client that disconnects while waiting', async () => {
    stuck.add('ghost'); // its pod never starts until released below
    await suspended('ghost');
    const wakes = service.app.wakes!;
    const joined = new Promise<void>((resolve) => {
      const off = wakes.onWaitersChange((n) => n === 1 && (off(), resolve()));
    });
    const left = joined.then(
      () =>
        new Promise<void>((resolve) => {
          const off = wakes.onWaitersChange((n) => n === 0 && (off(), resolve()));
        }),
    );
    const req = request(`${envoy.url}/`, {
      headers: { 'x-sandbox-id': 'ghost', 'x-sandbox-namespace': TEAM, 'x-sandbox-port': String(pool.port) },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    await joined;
    req.destroy();
    await left;
    expect(wakes.waiting).toBe(0);
    agents.release(TEAM, 'ghost');
  });

  it('forwards to the new pod IP when the pod comes back elsewhere', async () => {
    resumeIPs.set('mover', IP3);
    await suspended('mover');
    expect((await agent('mover')).json()['upstream']).toBe(IP3);
  });

  it('resumes at once while a suspension is still terminating the pod (their controller accepts it), with one patch', async () => {
    agents.options.suspendDelayMs = 1500;
    startDelays.set('drowsy', 200);
    await agents.create({ namespace: TEAM, name: 'drowsy', podIP: IP2, wake: true });
    const id = `${TEAM}/drowsy`;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'running');
    await agents.suspend(TEAM, 'drowsy');
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && r.pauseRequested);
    const res = await agent('drowsy');
    agents.options.suspendDelayMs = 0;
    expect(res.status).toBe(200);
    expect(res.json()['upstream']).toBe(IP2);
    expect(patches('drowsy')).toHaveLength(1);
  });

  it('does not wake a sandbox past its shutdownTime', async () => {
    await suspended('expiring', { shutdownTime: new Date(Date.now() + 1000).toISOString() });
    await waitForRoute(service.app.registry, `${TEAM}/expiring`, (r) => r?.state === 'dead');
    expect((await agent('expiring')).json()['error']).toBe('sandbox_not_running');
    await plane.auditBarrier();
    expect(patches('expiring')).toHaveLength(0);
  });

  it('never resumes a sandbox recreated under the same name on the old route: the UID precondition refuses it', async () => {
    const id = await suspended('phoenix');
    const old = service.app.registry.get(id)!;
    await agents.delete(TEAM, 'phoenix');
    await agents.create({ namespace: TEAM, name: 'phoenix', podIP: IP1, wake: true, suspended: true, accessToken: 'new' });
    const failure = await new KubernetesResumer(plane.admin).resume(old, AbortSignal.timeout(5000)).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ResumeError);
    expect((failure as ResumeError).failure).toBe('replaced');
    expect((await agents.get(TEAM, 'phoenix')).spec?.operatingMode).toBe('Suspended');
  });
});

describe('both families in one process', () => {
  it('routes and wakes an OpenKruise and an agent-sandbox Sandbox with the same namespace and name, each by its own convention and patch', async () => {
    await kruise.create({ namespace: TEAM, name: 'twin', podIP: IP1, paused: true, wake: { by: 'policy' } });
    await agents.create({ namespace: TEAM, name: 'twin', podIP: IP2, wake: true, suspended: true });
    await waitForRoute(service.app.registry, `${TEAM}--twin`, (r) => r?.state === 'paused' && !r.pausing);
    await waitForRoute(service.app.registry, `${TEAM}/twin`, (r) => r?.state === 'paused');
    expect(service.app.registry.conflicts).toBe(0);
    const [e2b, sigs] = await Promise.all([stack.get(`${TEAM}--twin`), agent('twin')]);
    expect(e2b.json()['upstream']).toBe(IP1);
    expect(sigs.json()['upstream']).toBe(IP2);
    expect(patches('twin', 'agents.kruise.io')).toHaveLength(1);
    expect(patches('twin', 'agents.x-k8s.io')).toHaveLength(1);
    expect((await kruise.get(TEAM, 'twin')).spec?.paused).toBe(false);
    expect((await agents.get(TEAM, 'twin')).spec?.operatingMode).toBe('Running');
    // Deleting one leaves the other served.
    await agents.delete(TEAM, 'twin');
    await waitForRoute(service.app.registry, `${TEAM}/twin`, (r) => r === undefined);
    expect((await stack.get(`${TEAM}--twin`)).json()['upstream']).toBe(IP1);
  });
});

describe('least privilege', () => {
  it('the service identity may read and patch agent-sandbox Sandboxes in its namespaces, and nothing else of theirs', async () => {
    const identity = new KubeConfig();
    identity.loadFromFile(stack.kubeconfig);
    const custom = identity.makeApiClient(CustomObjectsApi);
    const target = { group: 'agents.x-k8s.io', version: 'v1beta1', plural: 'sandboxes', namespace: TEAM };
    await expect(custom.listNamespacedCustomObject(target)).resolves.toBeDefined();
    await expect(custom.listNamespacedCustomObject({ ...target, namespace: 'kube-system' })).rejects.toMatchObject({ code: 403 });
    await expect(
      custom.createNamespacedCustomObject({
        ...target,
        body: {
          apiVersion: 'agents.x-k8s.io/v1beta1',
          kind: 'Sandbox',
          metadata: { name: 'x' },
          spec: { podTemplate: { spec: { containers: [] } } },
        },
      }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(custom.deleteNamespacedCustomObject({ ...target, name: 'web' })).rejects.toMatchObject({ code: 403 });
    await expect(
      custom.patchNamespacedCustomObjectStatus(
        { ...target, name: 'web', body: { status: { podIPs: ['10.0.0.1'] } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    ).rejects.toMatchObject({ code: 403 });
    // The claims and warm pools of agent-sandbox's extensions group are none of its business.
    await expect(
      custom.listNamespacedCustomObject({
        group: 'extensions.agents.x-k8s.io',
        version: 'v1beta1',
        plural: 'sandboxclaims',
        namespace: TEAM,
      }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(identity.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: TEAM })).rejects.toMatchObject({ code: 403 });
  });
});

describe('API server outages', () => {
  it('keeps serving running sandboxes, fails wakes fast with 503 and Retry-After, and wakes again after', async () => {
    startDelays.set('dozer', 200);
    await suspended('dozer');
    await plane.stopApiserver();
    try {
      expect((await agent('web')).json()['upstream']).toBe(IP2);
      const started = Date.now();
      const res = await agent('dozer');
      expect(res.status).toBe(503);
      expect(res.json()['error']).toBe('sandbox_wake_failed');
      expect(res.headers['retry-after']).toBe('2');
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      await plane.startApiserver();
    }
    const woken = await agent('dozer');
    expect(woken.status).toBe(200);
    expect(woken.json()['upstream']).toBe(IP1);
  });
});
