// Keeping sandboxes awake while they are used (issue #16), on the real stack: OpenKruise's own
// controller pauses a running sandbox once its pauseTime passes, and deletes it once its shutdownTime
// passes (unless its pauseTime has passed too). Pause timeouts are a few seconds here
// (--min-pause-timeout 1s) and Envoy flushes access logs every second, so "3x the timeout" fits in a
// test: a sandbox receiving requests stays up, and with E2B's timers (shutdownTime = pauseTime + the
// paused retention) outlives its original shutdownTime (issue 23 item 3); a websocket held open with no
// other traffic keeps it up and it pauses on time after the socket closes; an idle one pauses on time;
// and writes stay within the stated bound, from two replicas too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { isActivityRecord, SERVICE_USER, type AuditEvent } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { isPaused, podIP, type NewSandbox, type SandboxObject } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'busy';
// Long enough that Envoy's access log entries (every 1 s here, buffered up to 1 s) and a write on a
// loaded machine always land before a timer that is pushed with half its timeout left runs out.
const TIMEOUT_S = 8;
const FRACTION = 0.5;
const ACTIVITY_ARGS = ['--min-pause-timeout', '1s', '--activity-fraction', String(FRACTION), '--activity-min-interval', '2s'];
/** Envoy logs open requests every second instead of every 30 s. */
const fastFlush = (yaml: string) => {
  if (!yaml.includes('access_log_flush_interval: 30s')) throw new Error('envoy.yaml: the access log flush interval moved');
  return yaml.replace('access_log_flush_interval: 30s', 'access_log_flush_interval: 1s');
};
/** Writes of one sandbox's pause timer by the given users, from the API server's audit log. */
const bound = (seconds: number) => Math.ceil(seconds / ((1 - FRACTION) * TIMEOUT_S)) + 1;
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    serviceArgs: ACTIVITY_ARGS,
    envoy: { transform: fastFlush },
  });
});

afterAll(async () => {
  await stack?.stop();
});

/** A running sandbox whose pause timer fires in TIMEOUT_S seconds unless pushed; its ID and pod IP. */
async function timed(name: string, extra: Partial<NewSandbox> = {}): Promise<{ id: string; ip: string; sandbox: SandboxObject }> {
  const sandbox = await stack.openkruise.create({
    namespace: NS,
    name,
    wake: { by: 'policy', pauseTimeout: `${TIMEOUT_S}s` },
    pauseTime: rfc3339(Date.now() + TIMEOUT_S * 1000),
    ...extra,
  });
  const id = `${NS}--${name}`;
  await waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'running');
  return { id, ip: podIP(sandbox), sandbox };
}

const writes = (name: string, users = [SERVICE_USER]) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.subresource === undefined &&
      users.includes(e.user.username) &&
      isActivityRecord(e),
  );
/** Versions of a sandbox in which a pause was asked for (spec.paused=true): here only its controller asks, when pauseTime passes. */
const pauses = (versions: readonly SandboxObject[]) => versions.filter((v) => v.spec?.paused === true);
const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a sandbox in use stays awake', () => {
  it('requests every second keep it running for 3x its pause timeout, with writes within the bound', async () => {
    const { id, ip } = await timed('chatty');
    const seen = await stack.openkruise.record(NS, 'chatty');
    const started = Date.now();
    while (Date.now() - started < 3 * TIMEOUT_S * 1000) {
      const res = await stack.get(id);
      expect(res.status).toBe(200);
      expect(res.json()['upstream']).toBe(ip);
      // The traffic's own cadence (one request a second), not a wait for a state.
      await settle(1000);
    }
    seen.stop();
    expect(pauses(seen.versions)).toEqual([]);
    expect(stack.service.app.registry.get(id)?.state).toBe('running');
    const written = writes('chatty').length;
    expect(written).toBeGreaterThanOrEqual(2);
    expect(written).toBeLessThanOrEqual(bound(3 * TIMEOUT_S));
  }, 60_000);

  it("outlives its original shutdownTime while in use, with E2B's timers (shutdownTime = pauseTime + paused retention)", async () => {
    // The timers as sandbox-manager's create writes them with autoPause (its computeTimeoutOptions;
    // openkruise-semantics.test.ts shows the real sandbox-manager writing this shape): a retention
    // annotation, pauseTime = now + timeout, shutdownTime = pauseTime + the retention. The controller
    // deletes a running sandbox whose shutdownTime has passed unless its pauseTime has passed too.
    const retentionMs = 4000;
    const pauseAt = Date.now() + TIMEOUT_S * 1000;
    const shutdownAt = pauseAt + retentionMs;
    const { id, ip, sandbox } = await timed('long-haul', {
      annotations: { 'agents.kruise.io/reserve-paused-sandbox-duration': `${retentionMs / 1000}s` },
      pauseTime: rfc3339(pauseAt),
      shutdownTime: rfc3339(shutdownAt),
    });
    const seen = await stack.openkruise.record(NS, 'long-haul');
    // In continuous use until well past the original shutdownTime.
    while (Date.now() < shutdownAt + TIMEOUT_S * 1000) {
      const res = await stack.get(id);
      expect(res.status, `${Date.now() - shutdownAt} ms past the original shutdownTime: ${res.body}`).toBe(200);
      expect(res.json()['upstream']).toBe(ip);
      await settle(1000);
    }
    seen.stop();
    const now = await stack.openkruise.get(NS, 'long-haul');
    expect(now.metadata.uid).toBe(sandbox.metadata.uid);
    expect(pauses(seen.versions)).toEqual([]);
    // Both timers moved on together: the retention between them is what it was.
    const [pauseTime, shutdownTime] = [Date.parse(now.spec?.pauseTime ?? ''), Date.parse(now.spec?.shutdownTime ?? '')];
    expect(shutdownTime).toBeGreaterThan(shutdownAt);
    expect(shutdownTime - pauseTime).toBe(retentionMs);
    expect(writes('long-haul').length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  it('a websocket held open with no other traffic keeps it running, and it pauses on time after the socket closes', async () => {
    const { id, ip } = await timed('terminal');
    const socket = new WebSocket(`ws://127.0.0.1:${stack.envoy.port}/`, {
      headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(stack.pool.port) },
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => socket.once('message', (data) => resolve(data.toString())));
    socket.send('hello');
    expect(await echoed).toBe(`${ip}:hello`);
    // Held open, silent, for 3x the timeout: only Envoy's periodic access log entries report it.
    const seen = await stack.openkruise.record(NS, 'terminal');
    const paused = waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'paused', 60_000);
    const early = await Promise.race([paused.then(() => 'paused while in use'), settle(3 * TIMEOUT_S * 1000).then(() => 'kept awake')]);
    expect(early).toBe('kept awake');
    expect(socket.readyState).toBe(WebSocket.OPEN);
    const closedAt = Date.now();
    socket.close();
    await paused;
    const pausedAfterMs = Date.now() - closedAt;
    // It pauses when the last push (at most (1 - fraction) x timeout before the close) runs out.
    expect(pausedAfterMs).toBeLessThanOrEqual(TIMEOUT_S * 1000 + 2000);
    // Paused by its controller when the timer the open socket had kept pushing ran out after the close
    // (pauseTime is to the second), and the pause completes.
    await stack.openkruise.waitFor(NS, 'terminal', isPaused, 30_000, 'paused');
    seen.stop();
    const asked = pauses(seen.versions)[0];
    expect(Date.parse(asked?.spec?.pauseTime ?? '')).toBeGreaterThanOrEqual(closedAt - 1000);
    expect(writes('terminal').length).toBeLessThanOrEqual(bound(3 * TIMEOUT_S + TIMEOUT_S));
  }, 90_000);

  it('an idle sandbox pauses on time, untouched', async () => {
    const created = Date.now();
    const { id } = await timed('idle');
    await waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'paused', 20_000);
    const after = Date.now() - created;
    expect(after).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 1500);
    expect(after).toBeLessThanOrEqual(TIMEOUT_S * 1000 + 3000);
    expect(writes('idle')).toEqual([]);
  }, 30_000);
});

describe('two replicas', () => {
  let second: RunningService;
  let secondEnvoy: RunningEnvoy;
  const secondUser = 'system:serviceaccount:sandbox-extproc-system:second-activity';

  beforeAll(async () => {
    const kubeconfig = await stack.plane.serviceIdentity('second-activity', [NS]);
    second = await startService(['--kubeconfig', kubeconfig, '--namespaces', NS, ...ACTIVITY_ARGS]);
    secondEnvoy = await startEnvoy({ extprocPort: second.listening.grpcPort as number, transform: fastFlush });
  });
  afterAll(async () => {
    await secondEnvoy?.stop();
    await second?.stop();
  });

  it('do not multiply writes: both see traffic, the first to cross its threshold writes, the other sees the new timer', async () => {
    const { id } = await timed('shared');
    await waitForRoute(second.app.registry, id, (r) => r?.state === 'running');
    const seen = await stack.openkruise.record(NS, 'shared');
    const started = Date.now();
    const through = [stack.envoy.url, secondEnvoy.url];
    let turn = 0;
    while (Date.now() - started < 3 * TIMEOUT_S * 1000) {
      const url = through[turn++ % 2] as string;
      const res = await httpGet(`${url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(stack.pool.port) });
      expect(res.status).toBe(200);
      await settle(250);
    }
    seen.stop();
    expect(pauses(seen.versions)).toEqual([]);
    const perReplica = [writes('shared', [SERVICE_USER]).length, writes('shared', [secondUser]).length];
    const total = perReplica[0]! + perReplica[1]!;
    expect(total).toBeGreaterThanOrEqual(2);
    // Never more than one write per replica per (1 - fraction) x timeout ...
    for (const count of perReplica) expect(count).toBeLessThanOrEqual(bound(3 * TIMEOUT_S));
    // ... and together well short of double what one replica alone writes (a race can add one now and then).
    const oneReplica = (3 * TIMEOUT_S) / ((1 - FRACTION) * TIMEOUT_S);
    expect(total).toBeLessThan(1.5 * oneReplica);
  }, 60_000);
});
