// docs/operations.md: "Activity writes fail (API server down): logged (warn),
// sandbox_extproc_activity_writes_total{outcome="failed"}; the next activity tries again." On the real
// stack: a sandbox in use whose pause timer needs pushing while the API server is down, then back.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/settings.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { TEST_UPSTREAM_ENV } from '../support/service.ts';

const NS = 'activity-faults';
const SERVICE = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
let plane: ControlPlane;
let controller: SandboxController;
let app: App;
let client: ExtProcClient;
const lines: string[] = [];
const lineWaiters = new Set<() => void>();

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
  controller = new SandboxController(plane.admin);
  await controller.start();
  // 120 s pause timeout, 60 s left: below the 0.5 fraction, so any request asks for a push, and far
  // enough that the controller does not pause it while the API server restarts.
  await controller.create({
    namespace: NS,
    name: 'busy',
    podIP: '10.4.0.1',
    wake: { by: 'policy', pauseTimeout: '120s' },
    pauseTime: rfc3339(Date.now() + 60_000),
  });
  const args = ['--kubeconfig', kubeconfig, '--namespaces', NS, '--grpc-port', '0', '--http-port', '0'];
  args.push('--min-pause-timeout', '1s', '--activity-min-interval', '1s', '--activity-fraction', '0.5', '--log-level', 'debug');
  const loaded = loadConfig(args, TEST_UPSTREAM_ENV);
  const sink = new Writable({
    write: (chunk: Buffer, _e, done) => {
      lines.push(chunk.toString());
      for (const wake of lineWaiters) wake();
      done();
    },
  });
  app = new App((loaded as { config: Config }).config, sink);
  const listening = await app.start();
  client = new ExtProcClient(`127.0.0.1:${listening.grpcPort}`);
  await waitForRoute(app.registry, `${NS}--busy`, (r) => r?.state === 'running' && r.pauseAt !== undefined);
});

afterAll(async () => {
  client?.close();
  await app?.stop();
  controller?.stop();
  await plane?.stop();
});

function logged(text: string, timeoutMs: number): Promise<void> {
  if (lines.some((l) => l.includes(text))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!lines.some((l) => l.includes(text))) return;
      clearTimeout(timer);
      lineWaiters.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      lineWaiters.delete(check);
      reject(new Error(`no log line with "${text}" within ${timeoutMs} ms`));
    }, timeoutMs);
    lineWaiters.add(check);
  });
}

const request = () =>
  client.exchange([{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(`${NS}--busy`) }] } } }], {
    closeAfter: 1,
  });
const writes = async (outcome: string) =>
  (await app.metrics.activityWrites.get()).values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;

describe('activity writes while the API server is down', () => {
  it('fail, are logged and counted, and the next activity after it is back writes the timer', async () => {
    await plane.stopApiserver();
    try {
      expect(JSON.stringify((await request()).responses[0]?.dynamic_metadata)).toContain('10.4.0.1');
      await logged('recording sandbox activity failed', 15_000);
      expect(await writes('failed')).toBeGreaterThanOrEqual(1);
      expect(await writes('applied')).toBe(0);
    } finally {
      await plane.startApiserver();
    }
    const pushed = plane.waitForAudit(
      (e) => e.verb === 'patch' && e.objectRef?.name === 'busy' && e.user.username === SERVICE && (e.responseStatus?.code ?? 0) < 300,
      20_000,
      'the activity write after the API server is back',
    );
    // The minimum interval between writes (1 s) may still run from the failed attempt: keep using it.
    const traffic = (async () => {
      let done = false;
      void pushed.finally(() => (done = true));
      while (!done) await request();
    })();
    await pushed;
    await traffic;
    // The audit event is written before the API server answers: wait for the service to have its answer.
    await logged('sandbox activity recorded', 20_000);
    expect(await writes('applied')).toBeGreaterThanOrEqual(1);
  });
});
