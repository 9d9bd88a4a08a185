// Activity writes meeting faults, on the real stack (OpenKruise's own controller, kwok's pods), from a
// service whose way to the API server passes a fault proxy:
// - docs/operations.md: "Activity writes fail (API server down): logged (warn),
//   sandbox_extproc_activity_writes_total{outcome="failed"}; the next activity tries again";
// - issue 23 item 6: an activity write that waits, or is on its way, when the sandbox is recycled must
//   not re-arm it. The controller's recycle clears the claim's pauseTime and hands the sandbox back to
//   its pool; a late write that set pauseTime again would have the pooled sandbox paused later. Writes
//   are held on their way (the proxy stalls requests while the watch keeps delivering) until the
//   recycle has landed: deterministic, with no timing window to hit.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.ts';
import { isActivityRecord, type AuditEvent } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { FaultProxy, kubeconfigThrough } from '../support/fault-proxy.ts';
import { CLAIMED_LABEL, podIP, type OpenKruiseSandboxes } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'activity-faults';
const IDENTITY = 'activity-faults';
const USER = `system:serviceaccount:sandbox-extproc-system:${IDENTITY}`;
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
// A replica pushes a timer once less than fraction x (1 - 0.2 x its jitter draw) of the pause timeout
// is left: 0.4 to 0.5 x 300 s here. A timer 100 s out is below that whatever the draw.
const PAUSE_TIMEOUT_S = 300;
const PUSH_DUE_MS = 100_000;
let stack: Stack;
let sandboxes: OpenKruiseSandboxes;
let proxy: FaultProxy;
let app: App;
let client: ExtProcClient;
const lines: string[] = [];
const lineWaiters = new Set<() => void>();

beforeAll(async () => {
  // A short recycle grace period: the recycle lands in about a second.
  stack = await startStack({ namespaces: [NS], recycleGracePeriod: '1s' });
  sandboxes = stack.openkruise;
  proxy = await FaultProxy.start(Number(new URL(stack.plane.url).port));
  const kubeconfig = kubeconfigThrough(await stack.plane.serviceIdentity(IDENTITY, [NS]), proxy);
  const args = ['--kubeconfig', kubeconfig, '--namespaces', NS];
  args.push('--min-pause-timeout', '1s', '--activity-min-interval', '1s', '--activity-fraction', '0.5', '--log-level', 'debug');
  const service = await startService(
    args,
    {},
    {
      logs: (line) => {
        lines.push(line);
        for (const wake of lineWaiters) wake();
      },
    },
  );
  app = service.app;
  client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await app?.stop();
  await proxy?.close();
  await stack?.stop();
});

/** Resolves once `count` log lines with the text have been written at or after line index `from`. */
function logged(text: string, timeoutMs: number, from = 0, count = 1): Promise<void> {
  const seen = () => lines.slice(from).filter((l) => l.includes(text)).length >= count;
  if (seen()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!seen()) return;
      clearTimeout(timer);
      lineWaiters.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      lineWaiters.delete(check);
      reject(new Error(`fewer than ${count} log lines with "${text}" within ${timeoutMs} ms`));
    }, timeoutMs);
    lineWaiters.add(check);
  });
}

/** One request for the sandbox, as Envoy sends it; resolves with the service's first answer. */
const request = async (id: string) =>
  (
    await client.exchange([{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }], {
      closeAfter: 1,
    })
  ).responses[0];
const writes = async (outcome: string) =>
  (await app.metrics.activityWrites.get()).values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
/**
 * The service's activity writes to one sandbox, as the API server answered them, from audit event
 * `since` on (a pool member may serve one test's tenant, then, recycled, the next one's).
 */
const activityWrites = (name: string, since = 0) =>
  stack.plane
    .auditEvents()
    .slice(since)
    .filter((e: AuditEvent) => e.verb === 'patch' && e.objectRef?.name === name && e.user.username === USER && isActivityRecord(e));

describe('activity writes while the API server is down', () => {
  it('fail, are logged and counted, and the next activity after it is back writes the timer', async () => {
    // Far enough that the controller does not pause it while the API server restarts, and below every
    // replica's push threshold: any request asks for a push (see PUSH_DUE).
    const running = await sandboxes.create({
      namespace: NS,
      name: 'busy',
      wake: { by: 'policy', pauseTimeout: `${PAUSE_TIMEOUT_S}s` },
      pauseTime: rfc3339(Date.now() + PUSH_DUE_MS),
    });
    const id = `${NS}--busy`;
    await waitForRoute(app.registry, id, (r) => r?.state === 'running' && r.pauseAt !== undefined);
    const [failedBefore, appliedBefore] = [await writes('failed'), await writes('applied')];
    const from = lines.length;
    await stack.plane.stopApiserver();
    try {
      expect(JSON.stringify((await request(id))?.dynamic_metadata)).toContain(`${podIP(running)}:`);
      await logged('recording sandbox activity failed', 15_000, from);
      expect(await writes('failed')).toBeGreaterThan(failedBefore);
      expect(await writes('applied')).toBe(appliedBefore);
    } finally {
      await stack.plane.startApiserver();
    }
    const pushed = stack.plane.waitForAudit(
      (e) => e.verb === 'patch' && e.objectRef?.name === 'busy' && e.user.username === USER && (e.responseStatus?.code ?? 0) < 300,
      20_000,
      'the activity write after the API server is back',
    );
    // The minimum interval between writes (1 s) may still run from the failed attempt: keep using it.
    const traffic = (async () => {
      let done = false;
      void pushed.finally(() => (done = true));
      while (!done) await request(id);
    })();
    await pushed;
    await traffic;
    // The audit event is written before the API server answers: wait for the service to have its answer.
    await logged('sandbox activity recorded', 20_000, from);
    expect(await writes('applied')).toBeGreaterThan(appliedBefore);
  });
});

describe('an activity write that waits or is on its way when the sandbox is recycled (issue 23 item 6)', () => {
  beforeAll(async () => {
    await sandboxes.createSandboxSet({ namespace: NS, name: 'pool', replicas: 1, recyclable: true });
  });

  /**
   * A tenant claims a member of the pool and opts it in to wake on traffic with a pause timeout (the
   * claim's annotations, which the controller writes onto the sandbox), then sets its pause timer, due
   * for a push: a request asks for one.
   */
  async function claimed(claim: string) {
    await sandboxes.waitForPool(NS, 'pool');
    const sandbox = await sandboxes.claim({
      namespace: NS,
      name: claim,
      pool: 'pool',
      annotations: { 'agents.kruise.io/wake-on-traffic': 'true', 'agents.kruise.io/wake-timeout-seconds': String(PAUSE_TIMEOUT_S) },
    });
    const name = sandbox.metadata.name;
    await sandboxes.patch(NS, name, { spec: { pauseTime: rfc3339(Date.now() + PUSH_DUE_MS) } });
    const id = `${NS}--${name}`;
    const route = await waitForRoute(app.registry, id, (r) => r?.state === 'running' && r.pauseAt !== undefined);
    return { name, id, podIP: route?.podIP ?? '' };
  }

  /**
   * The tenant is done: the sandbox is recycled (sandbox-manager's cleanup annotation), and after the
   * grace period the controller hands it back to its pool without its timer; the service sees that
   * too (its watch still delivers while requests are stalled): pooled, nothing to push.
   */
  async function recycled(name: string, id: string): Promise<void> {
    await sandboxes.recycle(NS, name);
    await sandboxes.waitFor(
      NS,
      name,
      (o) =>
        o.metadata.labels?.[CLAIMED_LABEL] === 'false' &&
        o.metadata.ownerReferences?.some((r) => r.kind === 'SandboxSet') === true &&
        o.status?.phase === 'Running' &&
        o.spec?.pauseTime === undefined,
      30_000,
      'back in its pool',
    );
    await waitForRoute(app.registry, id, (r) => r?.state === 'available' && r.pauseAt === undefined);
  }

  it('does not re-arm the recycled sandbox with a write on its way: the API server refuses it on the newer version', async () => {
    const { name, id, podIP } = await claimed('tenant');
    const since = stack.plane.auditEvents().length;
    const [supersededBefore, appliedBefore] = [await writes('superseded'), await writes('applied')];
    const from = lines.length;
    proxy.stallRequests();
    try {
      // In use: the request is forwarded, and the write it asks for leaves the service and is held.
      expect(JSON.stringify((await request(id))?.dynamic_metadata)).toContain(`${podIP}:`);
      await proxy.untilStalled(10_000);
      await recycled(name, id);
    } finally {
      proxy.release();
    }
    // The held write arrives now, and the service has its answer: refused, the sandbox changed since.
    await logged('sandbox activity not recorded: it changed since', 20_000, from);
    const after = await sandboxes.get(NS, name);
    expect(after.spec?.pauseTime, 'the pooled sandbox was given a pause timer again').toBeUndefined();
    expect(after.metadata.labels?.[CLAIMED_LABEL]).toBe('false');
    expect(activityWrites(name, since).map((e) => e.responseStatus?.code)).toEqual([409]);
    expect(await writes('superseded')).toBe(supersededBefore + 1);
    expect(await writes('applied')).toBe(appliedBefore);
    // In its pool it has no timer: traffic to it asks for no write.
    await request(id);
    await stack.plane.auditBarrier();
    expect(activityWrites(name, since)).toHaveLength(1);
  });

  it('sends nothing for a write still queued when the sandbox is recycled: it is decided on what the watch shows when it goes out', async () => {
    // Six other sandboxes in use first: their writes take the service's few write slots (4) and are
    // held on their way, so the tenant's write waits in the queue behind them.
    const fillers = Array.from({ length: 6 }, (_, i) => `filler-${i}`);
    await Promise.all(
      fillers.map((name) =>
        sandboxes.create({
          namespace: NS,
          name,
          wake: { by: 'policy', pauseTimeout: `${PAUSE_TIMEOUT_S}s` },
          pauseTime: rfc3339(Date.now() + PUSH_DUE_MS),
        }),
      ),
    );
    for (const name of fillers)
      await waitForRoute(app.registry, `${NS}--${name}`, (r) => r?.state === 'running' && r.pauseAt !== undefined);
    const { name, id } = await claimed('second-tenant');
    const since = stack.plane.auditEvents().length;
    const from = lines.length;
    proxy.stallRequests();
    try {
      for (const filler of fillers) await request(`${NS}--${filler}`);
      await proxy.untilStalled(10_000);
      await request(id);
      await recycled(name, id);
    } finally {
      proxy.release();
    }
    // Every filler's write answered: the queue has drained past the tenant's turn.
    await logged('sandbox activity recorded', 20_000, from, fillers.length);
    for (const filler of fillers) expect(activityWrites(filler, since).map((e) => e.responseStatus?.code)).toEqual([200]);
    await stack.plane.auditBarrier();
    expect(activityWrites(name, since), 'a write was sent for the recycled sandbox').toEqual([]);
    expect((await sandboxes.get(NS, name)).spec?.pauseTime).toBeUndefined();
  });
});
