// agent-sandbox where the API server serves only v1alpha1 (releases before v1beta1): sandbox-extproc,
// running that family alone (--sandbox-kind agent-sandbox), finds the served version through API
// discovery, lists, watches and resumes through v1alpha1 (spec.replicas), and waits, not ready, while
// the CRD is not installed at all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentSandboxController } from '../support/agent-sandbox-controller.ts';
import { CRDS, isActivityRecord, type AuditEvent } from '../support/controlplane.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'default';
const [IP1, IP2] = ['127.0.0.131', '127.0.0.132'];
const SERVICE_USER = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';
let stack: Stack;
let agents: AgentSandboxController;

beforeAll(async () => {
  stack = await startStack({
    kinds: ['agent-sandbox'],
    // No agent-sandbox CRD yet: the first test installs it.
    crds: [CRDS.openkruise],
    namespaces: [NS],
    ips: [IP1, IP2],
    agentController: { version: 'v1alpha1', startDelayMs: 300 },
  });
  agents = stack.agentController as AgentSandboxController;
});

afterAll(async () => {
  await stack?.stop();
});

const readyz = () => httpGet(`http://127.0.0.1:${stack.service.listening.httpPort}/readyz`);

describe('agent-sandbox served as v1alpha1 only', () => {
  it('is not ready while the API server serves no agent-sandbox version, and becomes ready once the CRD is installed', async () => {
    const before = await readyz();
    expect(before.status).toBe(503);
    expect(before.body).toContain('routes not loaded yet');
    expect((await httpGet(`${stack.envoy.url}/`, { 'x-sandbox-id': 'web' })).json()['error']).toBe('routes_not_ready');
    await stack.plane.installCrd(CRDS.agentSandboxV1alpha1);
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
    const patches = stack.plane.auditEvents(
      (e: AuditEvent) =>
        e.verb === 'patch' &&
        e.objectRef?.name === 'sleepy' &&
        e.objectRef.subresource === undefined &&
        e.user.username === SERVICE_USER &&
        !isActivityRecord(e),
    );
    expect(patches).toHaveLength(1);
    expect(patches[0]?.objectRef?.apiVersion).toBe('v1alpha1');
  });

  it('follows a suspension made through replicas 0', async () => {
    await agents.suspend(NS, 'web');
    await waitForRoute(stack.service.app.registry, `${NS}/web`, (r) => r?.state === 'paused' && r.pauseRequested);
    const res = await stack.getAgent(NS, 'web');
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
  });
});
