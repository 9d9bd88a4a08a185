// Scale to zero for agent-sandbox, the whole loop, on agent-sandbox's own controller (pods by kwok): a
// Sandbox that opted in is suspended by the service once idle for its timeout (the controller deletes
// its pod), and woken by its next request. Use keeps it up, whether requests or one open WebSocket
// (Envoy reports open requests to the service's access log every second here). The suspender runs on
// the one replica holding the Lease; the activity record on the object is what every replica shares.
// Idle timeouts are seconds long here (production ones are minutes: see the README).
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isServing, isSuspended, podIPOf, type AgentSandboxObject, type NewAgentSandbox } from '../support/agent-sandbox.ts';
import { SERVICE_USER, type AuditEvent } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'idle';
/** A namespace where the service's default idle timeout applies (--idle-namespaces). */
const DEFAULT_NS = 'idle-default';
const IDLE_S = 4;
const LEASE_S = 3;
const ARGS = [
  '--agent-sandbox-namespaces',
  `${NS},${DEFAULT_NS}`,
  '--activity-fraction',
  '0.5',
  '--activity-min-interval',
  '1s',
  '--idle-sweep-interval',
  '250ms',
  '--lease-duration',
  `${LEASE_S}s`,
  '--idle-timeout',
  `${IDLE_S}s`,
  '--idle-namespaces',
  DEFAULT_NS,
];
/** The longest a sandbox may stay up once idle: its timeout, plus what its record may lag, plus a sweep. */
const DUE_S = IDLE_S + Math.max(IDLE_S * (1 - 0.5 * 0.8), 1) + 0.25;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS, DEFAULT_NS],
    kinds: ['agent-sandbox'],
    serviceArgs: ARGS,
    envoy: { accessLogFlushInterval: '1s' },
  });
});

afterAll(async () => {
  await stack?.stop();
});

const idleOptIn = (name: string, extra: Partial<NewAgentSandbox> = {}): NewAgentSandbox => ({
  namespace: NS,
  name,
  wake: true,
  annotations: { 'sandbox-extproc.io/idle-timeout': `${IDLE_S}s` },
  ...extra,
});
/** Idle suspensions the API server applied for one sandbox (the suspender's own field manager). */
const suspensions = (name: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.user.username.startsWith('system:serviceaccount:sandbox-extproc-system:') &&
      (e.requestURI ?? '').includes('fieldManager=sandbox-extproc-idle') &&
      (e.responseStatus?.code ?? 0) < 300,
  );
const resumes = (name: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.user.username === SERVICE_USER &&
      /fieldManager=sandbox-extproc(&|$)/.test(e.requestURI ?? '') &&
      (e.responseStatus?.code ?? 0) < 300,
  );
const suspendedAt = (o: AgentSandboxObject) => Date.parse(o.metadata.annotations?.['sandbox-extproc.io/idle-suspended-at'] ?? '');
const metric = async (service: { httpPort: number } | undefined, name: string) => {
  const port = service?.httpPort ?? stack.service.listening.httpPort;
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm'))) total += Number(m[1]);
  return total;
};
/** Sends a request every `everyMs` through the given Envoy until `forMs` have passed; returns the statuses. */
async function traffic(envoys: RunningEnvoy[], name: string, forMs: number, everyMs = 500): Promise<number[]> {
  const statuses: number[] = [];
  const until = Date.now() + forMs;
  for (let i = 0; Date.now() < until; i += 1) {
    const envoy = envoys[i % envoys.length] as RunningEnvoy;
    const res = await httpGet(`${envoy.url}/`, {
      'x-sandbox-id': name,
      'x-sandbox-namespace': NS,
      'x-sandbox-port': String(stack.pool.port),
    });
    statuses.push(res.status);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return statuses;
}

describe('a Sandbox idle for its timeout', () => {
  it('is suspended (its pod deleted by the controller), and its next request wakes it with one patch, served by the new pod', async () => {
    const created = await stack.agent!.create(idleOptIn('dozy'));
    const readyAt = Date.parse(created.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '');
    const suspended = await stack.agent!.waitFor(NS, 'dozy', isSuspended, (DUE_S + 10) * 1000, 'suspended');
    expect(suspended.spec?.operatingMode).toBe('Suspended');
    expect(suspensions('dozy')).toHaveLength(1);
    // Never before its idle timeout (whole seconds on both sides).
    expect(suspendedAt(suspended) - readyAt).toBeGreaterThanOrEqual((IDLE_S - 1) * 1000);
    expect(await stack.cluster.podsOwnedBy(NS, created.metadata.uid as string)).toEqual([]);
    expect(await metric(undefined, 'sandbox_extproc_suspensions_total')).toBe(1);

    const flaps = await metric(undefined, 'sandbox_extproc_idle_flaps_total');
    const res = await stack.getAgent(NS, 'dozy');
    expect(res.status, res.body).toBe(200);
    expect(res.json()['upstream']).toBe(podIPOf(await stack.agent!.waitFor(NS, 'dozy', isServing, 10_000, 'serving')));
    expect(resumes('dozy')).toHaveLength(1);
    // Woken within a minute of its suspension: a flap (its timeout is shorter than the gaps in its use).
    expect(await metric(undefined, 'sandbox_extproc_idle_flaps_total')).toBe(flaps + 1);
  });

  it('is suspended by the namespace default too, and never when it did not opt in (no idle timeout, or no wake)', async () => {
    await Promise.all([
      stack.agent!.create({ namespace: DEFAULT_NS, name: 'defaulted', wake: true }),
      stack.agent!.create({ namespace: NS, name: 'awake', wake: true }),
      stack.agent!.create({ namespace: NS, name: 'unwakeable', annotations: { 'sandbox-extproc.io/idle-timeout': `${IDLE_S}s` } }),
    ]);
    await stack.agent!.waitFor(DEFAULT_NS, 'defaulted', isSuspended, (DUE_S + 10) * 1000, 'suspended');
    // Both others have been idle at least as long, and the suspender swept many times since.
    await stack.plane.auditBarrier();
    expect(suspensions('awake')).toEqual([]);
    expect(suspensions('unwakeable')).toEqual([]);
    expect(isServing(await stack.agent!.get(NS, 'awake'))).toBe(true);
    expect(isServing(await stack.agent!.get(NS, 'unwakeable'))).toBe(true);
  });
});

describe('a Sandbox in use', () => {
  it('is never suspended while requests come, for 3x its idle timeout, and is suspended once they stop', async () => {
    await stack.agent!.create(idleOptIn('busy'));
    const statuses = await traffic([stack.envoy], 'busy', 3 * IDLE_S * 1000);
    const lastRequest = Date.now();
    expect(statuses.every((s) => s === 200)).toBe(true);
    await stack.plane.auditBarrier();
    expect(suspensions('busy')).toEqual([]);
    const suspended = await stack.agent!.waitFor(NS, 'busy', isSuspended, (DUE_S + 10) * 1000, 'suspended');
    expect(suspendedAt(suspended)).toBeGreaterThanOrEqual(Math.floor(lastRequest / 1000) * 1000 + (IDLE_S - 1) * 1000);
  });

  it('is never suspended while one WebSocket is open with no requests, for 3x its idle timeout, and is once it closes', async () => {
    await stack.agent!.create(idleOptIn('socket'));
    const socket = new WebSocket(`ws://127.0.0.1:${stack.envoy.port}/`, {
      headers: { 'x-sandbox-id': 'socket', 'x-sandbox-namespace': NS, 'x-sandbox-port': String(stack.pool.port) },
    });
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    await new Promise((resolve) => setTimeout(resolve, 3 * IDLE_S * 1000));
    expect(socket.readyState).toBe(WebSocket.OPEN);
    await stack.plane.auditBarrier();
    expect(suspensions('socket')).toEqual([]);
    socket.close();
    await stack.agent!.waitFor(NS, 'socket', isSuspended, (DUE_S + 10) * 1000, 'suspended');
  });
});

describe('two replicas', () => {
  let replicas: ServiceProcess[] = [];
  let envoys: RunningEnvoy[] = [];

  afterAll(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(replicas.map((r) => r.stop()));
  });

  it('with traffic split between them never suspend a sandbox in use; killing the leader moves the job within the lease duration', async () => {
    await stack.plane.serviceIdentity('second', [NS], ['agent-sandbox']);
    const kubeconfigs = [stack.kubeconfig, await stack.plane.kubeconfigFor('sandbox-extproc-system', 'second')];
    replicas = await Promise.all(
      kubeconfigs.map((k) => startServiceProcess(['--kubeconfig', k, '--namespaces', NS, '--sandbox-kind', 'agent-sandbox', ...ARGS])),
    );
    envoys = await Promise.all(replicas.map((r) => startEnvoy({ extprocPort: r.grpcPort, accessLogFlushInterval: '1s' })));
    // The in-process replica of the stack steps aside: the two here are the replicas under test.
    await stack.service.stop();
    await stack.agent!.create(idleOptIn('shared'));
    const statuses = await traffic(envoys, 'shared', 3 * IDLE_S * 1000);
    expect(statuses.every((s) => s === 200)).toBe(true);
    await stack.plane.auditBarrier();
    expect(suspensions('shared')).toEqual([]);

    // One of them leads; kill it (no release of the Lease), and the other takes over once it expires.
    const leaders = await Promise.all(replicas.map((r) => metric(r, 'sandbox_extproc_idle_suspender_leader')));
    expect(leaders.sort()).toEqual([0, 1]);
    const leader = replicas[(await metric(replicas[0], 'sandbox_extproc_idle_suspender_leader')) === 1 ? 0 : 1] as ServiceProcess;
    const follower = replicas.find((r) => r !== leader) as ServiceProcess;
    const killedAt = Date.now();
    leader.process.child.kill('SIGKILL');
    await follower.process.waitForLine(/"msg":"started leading"/, (LEASE_S + 5) * 1000);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(LEASE_S * 1000 + 1000);
    // And it does the job: 'shared', idle now, is suspended by the new leader.
    await stack.agent!.waitFor(NS, 'shared', isSuspended, (DUE_S + 10) * 1000, 'suspended by the new leader');
    expect(await metric(follower, 'sandbox_extproc_suspensions_total')).toBeGreaterThanOrEqual(1);
  });
});
