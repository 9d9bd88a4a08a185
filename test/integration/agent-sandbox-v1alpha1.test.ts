// agent-sandbox where the API server serves only v1alpha1 (releases before v1beta1): sandbox-extproc,
// running that family alone (--sandbox-kind agent-sandbox), finds the served version through API
// discovery, lists, watches and resumes through v1alpha1 (spec.replicas), and waits, not ready, while
// the CRD is not installed at all.
//
// The one suite on a stand-in controller (test/support/agent-sandbox-controller.ts): agent-sandbox's
// real controller is built from sigs.k8s.io/agent-sandbox v1.0.1, the only version on the Go module
// proxy, which serves v1beta1 alone. The stand-in follows v1.0.1's controller where the service depends
// on it, never kinder (a resume during the pod's termination reuses the dying pod and reports it Ready,
// as the real one does); every v1beta1 scenario runs on the real controller (agent-sandbox.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSandboxV1alpha1StandIn, type AgentSandboxObject } from '../support/agent-sandbox-v1alpha1-stand-in.ts';
import { SERVICE_USER, waitForObject, type AuditEvent } from '../support/controlplane.ts';
import { AGENT_SANDBOX_V1ALPHA1_CRD } from '../support/crds.ts';
import { httpGet } from '../support/http.ts';
import { OpenKruiseController } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'default';
// Addresses of the pods' CIDR where the stack's upstreams listen; no kwok pod gets them here (this
// file creates no OpenKruise sandbox, and the stand-in's pods are its own).
const [IP1, IP2, IP3] = ['127.1.0.201', '127.1.0.202', '127.1.0.203'];
let stack: Stack;
let agents: AgentSandboxV1alpha1StandIn;

beforeAll(async () => {
  stack = await startStack({
    kinds: ['agent-sandbox'],
    // No agent-sandbox CRD yet: the first test installs the v1alpha1-only fixture.
    crds: OpenKruiseController.crds() as object[],
    agentSandboxController: false,
    namespaces: [NS],
    serviceArgs: ['--wake-timeout', '20s'],
    envoy: { messageTimeout: '1s', maxMessageTimeout: '300s' },
  });
  agents = new AgentSandboxV1alpha1StandIn(stack.plane.admin, { version: 'v1alpha1', startDelayMs: 300 });
});

afterAll(async () => {
  agents?.stop();
  await stack?.stop();
});

const readyz = () => httpGet(`http://127.0.0.1:${stack.service.listening.httpPort}/readyz`);
const patches = (name: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' && e.objectRef?.name === name && e.objectRef.subresource === undefined && e.user.username === SERVICE_USER,
  );
const condition = (o: AgentSandboxObject, type: string) => o.status?.conditions?.find((c) => c.type === type);

describe('agent-sandbox served as v1alpha1 only', () => {
  it('is not ready while the API server serves no agent-sandbox version, and becomes ready once the CRD is installed', async () => {
    const before = await readyz();
    expect(before.status).toBe(503);
    expect(before.body).toContain('routes not loaded yet');
    expect((await httpGet(`${stack.envoy.url}/`, { 'x-sandbox-id': 'web' })).json()['error']).toBe('routes_not_ready');
    await stack.plane.installCrd(AGENT_SANDBOX_V1ALPHA1_CRD);
    await agents.start();
    await agents.create({ namespace: NS, name: 'web', podIP: IP1 });
    const route = await waitForRoute(stack.service.app.registry, `${NS}/web`, (r) => r?.state === 'running', 30_000);
    expect(route?.kind?.version).toBe('v1alpha1');
    expect((await readyz()).status).toBe(200);
  });

  it('routes by the agent-sandbox headers; the E2B convention is off when only this family runs', async () => {
    expect((await stack.getAgent(NS, 'web')).json()['upstream']).toBe(IP1);
    const e2b = await httpGet(`${stack.envoy.url}/`, { 'e2b-sandbox-id': `${NS}--web` });
    expect(e2b.status).toBe(400);
    expect(e2b.json()['error']).toBe('missing_sandbox');
  });

  it('wakes a sandbox with spec.replicas 0 by one patch setting replicas 1', async () => {
    await agents.create({ namespace: NS, name: 'sleepy', podIP: IP2, suspended: true, wake: true });
    await waitForRoute(stack.service.app.registry, `${NS}/sleepy`, (r) => r?.state === 'paused' && r.pauseRequested);
    const res = await stack.getAgent(NS, 'sleepy');
    expect(res.status).toBe(200);
    expect(res.json()['upstream']).toBe(IP2);
    expect((await agents.get(NS, 'sleepy')).spec?.replicas).toBe(1);
    // One patch applied. A first one may be refused 409 (locked on the version the route had, when the
    // controller's status write lands just before it) and is then sent again on the newer version: a
    // refused patch changes nothing.
    const sent = patches('sleepy').filter((e) => e.responseStatus?.code === 200);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.objectRef?.apiVersion).toBe('v1alpha1');
    expect(patches('sleepy').filter((e) => e.responseStatus?.code !== 200 && e.responseStatus?.code !== 409)).toEqual([]);
  });

  it('follows a suspension made through replicas 0', async () => {
    await agents.suspend(NS, 'web');
    await waitForRoute(stack.service.app.registry, `${NS}/web`, (r) => r?.state === 'paused' && r.pauseRequested);
    const res = await stack.getAgent(NS, 'web');
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
  });

  it('never routes to a pod still terminating when the sandbox is set back to replicas 1, though it is reported Ready', async () => {
    // The suspension's pod stays terminating until the test lets it go; set back to run meanwhile, that
    // dying pod is reused and reported Ready=True with its IP (v1.0.1's reconcilePod), until it is gone
    // and a new one starts.
    const dyingPodGone = Promise.withResolvers<void>();
    agents.options.stopGate = dyingPodGone.promise;
    try {
      await agents.create({ namespace: NS, name: 'drowsy', podIP: IP3 });
      const id = `${NS}/drowsy`;
      await waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'running');
      // Resumed only once the controller has reported the pod terminating and the service has seen it:
      // this is the path where the Sandbox says so. A resume that lands first makes that status write
      // conflict, and the service learns it from the pod itself (the v1beta1 suite's "resume lands
      // before" case, on the real controller).
      const terminating = waitForObjectVersion('drowsy', (o) => condition(o, 'Suspended')?.reason === 'PodTerminating');
      await agents.suspend(NS, 'drowsy');
      const told = await terminating;
      await waitForRoute(
        stack.service.app.registry,
        id,
        (r) => r?.state === 'paused' && Number(r.resourceVersion) >= Number(told.metadata.resourceVersion),
      );
      const reused = (o: AgentSandboxObject) => o.spec?.replicas === 1 && condition(o, 'Ready')?.status === 'True';
      const reportedReady = waitForObjectVersion('drowsy', reused);
      await agents.resume(NS, 'drowsy');
      const dying = await reportedReady;
      expect(condition(dying, 'Suspended')?.reason).toBe('NotSuspended');
      // The service has seen that version: the dying pod is not served, though reported Ready.
      await waitForRoute(stack.service.app.registry, id, (r) => Number(r?.resourceVersion ?? 0) >= Number(dying.metadata.resourceVersion));
      const during = await stack.getAgent(NS, 'drowsy');
      expect(during.status, during.body).toBe(503);
      expect(during.json()['error']).toBe('sandbox_not_ready');
      // Served again once the dying pod is gone and the new one is Ready.
      dyingPodGone.resolve();
      await waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'running', 20_000);
      expect((await stack.getAgent(NS, 'drowsy')).json()['upstream']).toBe(IP3);
    } finally {
      dyingPodGone.resolve();
      delete agents.options.stopGate;
    }
  });
});

/** The first version of a v1alpha1 sandbox (current or to come) the predicate accepts, from a watch. */
function waitForObjectVersion(name: string, predicate: (o: AgentSandboxObject) => boolean): Promise<AgentSandboxObject> {
  return waitForObject(
    stack.plane.admin,
    `/apis/agents.x-k8s.io/v1alpha1/namespaces/${NS}/sandboxes`,
    { fieldSelector: `metadata.name=${name}` },
    (o) => predicate(o as AgentSandboxObject),
    10_000,
    `agent-sandbox ${NS}/${name}`,
  ) as Promise<AgentSandboxObject>;
}
