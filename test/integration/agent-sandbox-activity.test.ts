// Activity for agent-sandbox (issue #16): the family has no pause timer of its own, so the service
// records when a sandbox was last in use in the annotation sandbox-extproc.io/last-activity, for an
// idle-suspension controller to read, with the same write bound as OpenKruise's pause timer. On the real
// API server through real Envoy; writes counted from the audit log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentSandboxController } from '../support/agent-sandbox-controller.ts';
import { isActivityRecord, type AuditEvent } from '../support/controlplane.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'default';
const WINDOW_S = 4;
const FRACTION = 0.5;
const SERVICE_USER = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';
let stack: Stack;
let agents: AgentSandboxController;

beforeAll(async () => {
  stack = await startStack({
    kinds: ['agent-sandbox'],
    namespaces: [NS],
    ips: ['127.0.0.131', '127.0.0.132'],
    agentSandboxes: [
      { namespace: NS, name: 'used', podIP: '127.0.0.131', wake: true },
      { namespace: NS, name: 'plain', podIP: '127.0.0.132' },
    ],
    serviceArgs: ['--activity-record-window', `${WINDOW_S}s`, '--activity-fraction', String(FRACTION), '--activity-min-interval', '1s'],
  });
  agents = stack.agentController as AgentSandboxController;
  await waitForRoute(stack.service.app.registry, `${NS}/used`, (r) => r?.state === 'running');
  await waitForRoute(stack.service.app.registry, `${NS}/plain`, (r) => r?.state === 'running');
});

afterAll(async () => {
  await stack?.stop();
});

const writes = (name: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.apiGroup === 'agents.x-k8s.io' &&
      e.user.username === SERVICE_USER &&
      isActivityRecord(e),
  );

describe('agent-sandbox activity', () => {
  it('records the last activity of a sandbox in use, refreshed within the window, with writes within the bound', async () => {
    const seconds = 3 * WINDOW_S;
    const started = Date.now();
    while (Date.now() - started < seconds * 1000) {
      expect((await stack.getAgent(NS, 'used')).status).toBe(200);
      // The traffic's own cadence, two requests a second; not a wait for a state.
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const recorded = (await agents.get(NS, 'used')).metadata.annotations?.['sandbox-extproc.io/last-activity'];
    expect(recorded).toBeDefined();
    // Never staler than (1 - fraction) of the window, plus a second of rounding and a write in flight.
    expect(Date.now() - Date.parse(recorded as string)).toBeLessThanOrEqual((1 - FRACTION) * WINDOW_S * 1000 + 2000);
    const count = writes('used').length;
    expect(count).toBeGreaterThanOrEqual(2);
    expect(count).toBeLessThanOrEqual(Math.ceil(seconds / ((1 - FRACTION) * WINDOW_S)) + 1);
  }, 40_000);

  it('writes nothing for a sandbox that did not opt in to wake', async () => {
    for (let i = 0; i < 5; i += 1) expect((await stack.getAgent(NS, 'plain')).status).toBe(200);
    expect((await agents.get(NS, 'plain')).metadata.annotations?.['sandbox-extproc.io/last-activity']).toBeUndefined();
    await stack.plane.auditBarrier();
    expect(writes('plain')).toEqual([]);
  });
});
