// Wake on traffic on the real stack: Envoy holds the request (override_message_timeout past its 1 s
// message_timeout), the service patches the Sandbox through the real API server, OpenKruise's own
// controller resumes it (a new pod, from kwok: phase Running with Ready=False first, then Ready once
// the runtime is initialised), the watch releases the request. Patches are counted from the API
// server's audit log.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_USER, type AuditEvent, type ControlPlane } from '../support/controlplane.ts';
import type { RunningEnvoy } from '../support/envoy.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { untilWaiting, waitForRoute } from '../support/registry-events.ts';
import { isPaused, isRunning, podIP, type NewSandbox, type OpenKruiseSandboxes, type SandboxObject } from '../support/openkruise.ts';
import type { UpstreamPool } from '../support/sandboxes.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'wake';
let stack: Stack;
let plane: ControlPlane;
let sandboxes: OpenKruiseSandboxes;
let pool: UpstreamPool;
let service: RunningService;
let envoy: RunningEnvoy;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    serviceArgs: ['--wake-timeout', '20s'],
    // Envoy's own timer is 1 s: only override_message_timeout keeps longer holds alive.
    envoy: { messageTimeout: '1s', maxMessageTimeout: '300s' },
  });
  ({ plane, openkruise: sandboxes, pool, service, envoy } = stack);
});

afterAll(async () => {
  await stack?.stop();
});

/**
 * Creates a sandbox, runs it, pauses it (the controller deletes its pod) and waits until the service
 * sees it paused. A slow resume is a pod slow to turn Ready (readyDelay); a resume that does not end
 * until the test says so is a held pod (hold), released explicitly: never a long delay.
 */
async function pausedSandbox(name: string, extra: Partial<NewSandbox> = {}): Promise<string> {
  await sandboxes.create({ namespace: NS, name, wake: { by: 'policy' }, paused: true, ...extra });
  const id = `${NS}--${name}`;
  await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
  return id;
}

/** The address the sandbox serves on now, as its controller reports it. */
const servingIP = async (name: string) => podIP(await sandboxes.waitFor(NS, name, isRunning, 30_000, 'running'));

/** Resume patches the API server applied (2xx) for one sandbox: a refused or conflicting one changed nothing. */
const patches = (name: string) =>
  plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.subresource === undefined &&
      e.user.username === SERVICE_USER &&
      (e.responseStatus?.code ?? 0) < 300,
  );
/**
 * Proof that nothing was patched for a sandbox: the audit barrier lets every request answered so far
 * reach the log, and no wake is still under way that could patch later.
 */
async function nothingPatched(name: string): Promise<void> {
  await plane.auditBarrier();
  expect(patches(name)).toHaveLength(0);
  expect(service.app.wakes?.inFlight).toBe(0);
}
/** The service's own count of wakes ended with this outcome. */
const wakesEnded = async (outcome: string) =>
  (await service.app.metrics.wakes.get()).values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
const get = (id: string, headers: Record<string, string> = {}) => stack.get(id, headers);

describe('wake on traffic', () => {
  it('wakes a paused, opted-in sandbox and serves the request, with one patch and the wake duration header', async () => {
    // Its pod turns Ready 2.5 s after it is created: longer than Envoy's 1 s message_timeout, so only
    // the override keeps the request alive, through "Running, not Ready yet".
    const id = await pausedSandbox('sleepy', { readyDelay: '2500ms' });
    const seen = await sandboxes.record(NS, 'sleepy');
    // Wakes never poll: every read the service makes of sandboxes is in the audit log (reads are
    // logged: its start-up list is there), and none may happen while it holds this request.
    expect(plane.auditEvents((e) => e.user.username === SERVICE_USER && e.verb === 'list').length).toBeGreaterThan(0);
    await plane.auditBarrier();
    const before = plane.auditEvents().length;
    const res = await get(id);
    seen.stop();
    expect(res.status, res.body).toBe(200);
    expect(res.json()['upstream']).toBe(await servingIP('sleepy'));
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThanOrEqual(2000);
    expect(patches('sleepy')).toHaveLength(1);
    // The controller did show the state that failed every wake before: Running, not Ready yet.
    expect(seen.versions.some((v: SandboxObject) => v.status?.phase === 'Running' && !isRunning(v) && v.spec?.paused === false)).toBe(true);
    await plane.auditBarrier();
    const reads = plane
      .auditEvents()
      .slice(before)
      .filter((e) => e.user.username === SERVICE_USER && ['get', 'list'].includes(e.verb));
    expect(reads).toEqual([]);
    expect(await envoy.stat('http.edge.ext_proc.override_message_timeout_ignored')).toBe(0);
    const entry = await envoy.waitForAccessLog((e) => e['sandbox_id'] === id && e['decision'] === 'wake');
    expect(Number(entry['wake_ms'])).toBeGreaterThanOrEqual(2000);
    // The next request finds it running: no hold, no header, no further patch.
    const again = await get(id);
    expect(again.headers['x-sandbox-wake-ms']).toBeUndefined();
    expect(patches('sleepy')).toHaveLength(1);
  });

  it('serves 200 concurrent requests to one paused sandbox with a single patch', async () => {
    const id = await pausedSandbox('crowd', { readyDelay: '1s' });
    const results = await Promise.all(Array.from({ length: 200 }, () => get(id)));
    expect(results.map((r) => r.status)).toEqual(Array(200).fill(200));
    expect(patches('crowd')).toHaveLength(1);
  });

  it('answers a sandbox that did not opt in with 502 and patches nothing', async () => {
    await sandboxes.create({ namespace: NS, name: 'hermit', paused: true });
    const id = `${NS}--hermit`;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'paused');
    const res = await get(id);
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
    await nothingPatched('hermit');
  });

  it('answers a wrong or missing access token with 401 and patches nothing', async () => {
    const id = await pausedSandbox('guarded', { accessToken: 'correct-horse' });
    expect((await get(id, { 'x-access-token': 'wrong' })).status).toBe(401);
    expect((await get(id)).status).toBe(401);
    await nothingPatched('guarded');
    const ok = await get(id, { 'x-access-token': 'correct-horse' });
    expect(ok.status).toBe(200);
    expect(patches('guarded')).toHaveLength(1);
  });

  it('answers 503 with Retry-After when the wake outlasts its deadline, and the sandbox is reachable afterwards', async () => {
    const id = await pausedSandbox('slowpoke', { readyDelay: '3500ms', wake: { by: 'annotation', deadlineSeconds: 2 } });
    const running = waitForRoute(service.app.registry, id, (r) => r?.state === 'running', 20_000);
    const res = await get(id);
    expect(res.status).toBe(503);
    expect(res.json()['error']).toBe('sandbox_wake_timeout');
    expect(res.headers['retry-after']).toBe('2');
    await running;
    expect((await get(id)).status).toBe(200);
    expect(patches('slowpoke')).toHaveLength(1);
  });

  it("forwards to the new pod's IP, read from the watch, not the one it had before the pause", async () => {
    const id = await pausedSandbox('mover');
    const before = await sandboxes.get(NS, 'mover');
    // Paused, the controller keeps reporting the old pod's address: never routed to.
    expect(service.app.registry.get(id)?.podIP).toBe('');
    const res = await get(id);
    const after = await sandboxes.get(NS, 'mover');
    expect(after.status?.podInfo?.podUID).not.toBe(before.status?.podInfo?.podUID);
    expect(res.json()['upstream']).toBe(podIP(after));
  });

  it('waits for a pause in progress to complete, then resumes: the resume never reaches the controller mid-pause', async () => {
    // Its container takes 1.5 s to stop: the controller shows phase Paused, SandboxPaused=False until then.
    await sandboxes.create({ namespace: NS, name: 'drowsy', wake: { by: 'policy' }, stopDelay: '1500ms' });
    const id = `${NS}--drowsy`;
    await waitForRoute(service.app.registry, id, (r) => r?.state === 'running');
    const seen = await sandboxes.record(NS, 'drowsy');
    await sandboxes.pause(NS, 'drowsy');
    await waitForRoute(service.app.registry, id, (r) => r?.pausing === true);
    const res = await get(id);
    seen.stop();
    expect(res.status, res.body).toBe(200);
    expect(res.json()['upstream']).toBe(await servingIP('drowsy'));
    expect(patches('drowsy')).toHaveLength(1);
    // In the order the API server saw it: the pause completed (SandboxPaused=True) before spec.paused=false.
    const completed = seen.versions.findIndex(isPaused);
    const resumed = seen.versions.findIndex((v, i) => i > 0 && v.spec?.paused === false && seen.versions[i - 1]?.spec?.paused === true);
    expect(completed).toBeGreaterThanOrEqual(0);
    expect(resumed).toBeGreaterThan(completed);
  });

  it('frees the slot of a client that disconnects while waiting', async () => {
    const id = await pausedSandbox('ghost', { hold: true });
    const wakes = service.app.wakes!;
    const abandoned = await wakesEnded('abandoned');
    const patched = plane.waitForAudit(
      (e) => e.verb === 'patch' && e.objectRef?.name === 'ghost' && e.user.username === SERVICE_USER && (e.responseStatus?.code ?? 0) < 300,
      20_000,
      'the resume patch of ghost',
    );
    const joined = untilWaiting(wakes, (n) => n === 1);
    const left = joined.then(() => untilWaiting(wakes, (n) => n === 0));
    // The wake ends once its patch is answered too (the audit event comes before the service has the answer).
    const ended = new Promise<string>((resolve) => {
      const off = wakes.onWakeEnd((outcome) => (off(), resolve(outcome)));
    });
    const req = request(`${envoy.url}/`, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port) }, agent: false });
    req.on('error', () => undefined);
    req.end();
    await joined;
    await patched;
    req.destroy();
    await left;
    expect(wakes.waiting).toBe(0);
    // Its only waiter gone, the wake ends, counted once as abandoned.
    expect(await ended).toBe('abandoned');
    expect(wakes.inFlight).toBe(0);
    expect(await wakesEnded('abandoned')).toBe(abandoned + 1);
  });
});

describe('long holds under traffic', () => {
  // Regression: Node's HTTP/2 rapid-reset limit closed Envoy's connection to the service after about
  // 1,000 completed streams (Envoy resets each one), failing every request held on it with a 500.
  // The resume is held until the traffic is done, so the request is held across all of it whatever
  // the machine's speed (a 6 s resume let a slow machine finish the wake before 1,500 had passed).
  it('keeps a held request alive while more than 1,500 other requests pass on the same connection', async () => {
    const id = await pausedSandbox('patient', { hold: true });
    await sandboxes.create({ namespace: NS, name: 'busy' });
    await waitForRoute(service.app.registry, `${NS}--busy`, (r) => r?.state === 'running');
    const connections = await envoy.stat('cluster.sandbox_extproc.upstream_cx_total');
    const wakes = service.app.wakes!;
    const joined = untilWaiting(wakes, (n) => n === 1);
    const held = get(id);
    await joined;
    let done = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 80; i += 1) {
          expect((await get(`${NS}--busy`)).status).toBe(200);
          done += 1;
        }
      }),
    );
    expect(done).toBe(1600);
    // Still held, on the connection it started on: Envoy opened no other to the service.
    expect(wakes.waiting).toBe(1);
    expect(await envoy.stat('cluster.sandbox_extproc.upstream_cx_total')).toBe(connections);
    await sandboxes.release(NS, 'patient');
    const res = await held;
    expect(res.status, res.body).toBe(200);
    expect(res.json()['upstream']).toBe(await servingIP('patient'));
  });
});

describe('graceful shutdown', () => {
  it('answers a request held mid-wake before the process stops, within the grace period', async () => {
    const id = await pausedSandbox('insomniac', { hold: true });
    const kubeconfig = await plane.serviceIdentity('second-replica', [NS]);
    const second = await startService(['--kubeconfig', kubeconfig, '--namespaces', NS, '--shutdown-grace', '500ms']);
    await waitForRoute(second.app.registry, id, (r) => r?.state === 'paused');
    const client = new ExtProcClient(`127.0.0.1:${second.listening.grpcPort}`);
    const joined = untilWaiting(second.app.wakes!, (n) => n === 1);
    const exchange = client.exchange(
      [{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }],
      { closeAfter: 2 },
    );
    await joined;
    const started = Date.now();
    await second.stop();
    expect(Date.now() - started).toBeLessThan(3000);
    const { responses, status } = await exchange;
    client.close();
    expect(responses[0]?.override_message_timeout, JSON.stringify({ responses, status })).toBeDefined();
    expect(responses[1]?.immediate_response?.status?.code).toBe(503);
  });
});
