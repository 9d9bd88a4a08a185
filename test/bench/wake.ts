// Wake latency on the real stack: from the moment the Running status is sent to the API server to the
// moment the held request arrives at the upstream; and 1,000 concurrent requests to one paused sandbox,
// every one of which must be held by the wake before the sandbox is let run (the service logs each
// decision at debug; the herd's service runs at that level so the bench can count them as they come).
// The bench plays the controller itself, so it knows exactly when the status is written. Runs once per
// Sandbox family (families.ts); the plotted curve is OpenKruise's.
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { ControlPlane, isActivityRecord, SERVICE_USER, waitForObject, type AuditEvent } from '../support/controlplane.ts';
import { startEnvoy } from '../support/envoy.ts';
import { writeSandbox } from '../support/sandbox-objects.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { startUpstream } from '../support/upstream.ts';
import { Cleanup } from './cleanup.ts';
import { FAMILIES, type BenchFamily } from './families.ts';
import { percentile, percentileCurve, type Report } from './report.ts';

const NS = 'bench';
const HERD = 1000;

function get(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    // A request that got no answer at all counts as status 0 (and fails the served gate).
    req.on('error', () => resolve(0));
    req.end();
  });
}

/** Resume patches the API server applied (2xx) for one sandbox: the ones that changed it. */
export function appliedPatches(plane: ControlPlane, name: string): AuditEvent[] {
  return plane.auditEvents(
    (e) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.subresource === undefined &&
      e.user.username === SERVICE_USER &&
      // Activity records (agent-sandbox's last-activity, once the woken sandbox serves) are not resumes.
      !isActivityRecord(e) &&
      (e.responseStatus?.code ?? 0) >= 200 &&
      (e.responseStatus?.code ?? 0) < 300,
  );
}

export async function measureWake(report: Report, quick: boolean): Promise<void> {
  for (const family of FAMILIES) await measureWakeOf(family, report, quick);
}

/**
 * Creates a paused sandbox opted in to wake, settled, with no controller acting on it afterwards: the
 * bench plays the controller, so that it knows the exact moment "running" is written (see the header).
 */
async function createPaused(family: BenchFamily, plane: ControlPlane, name: string): Promise<void> {
  await writeSandbox(plane.admin, { family: family.name, namespace: NS, name, state: 'paused', wake: true });
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function measureWakeOf(family: BenchFamily, report: Report, quick: boolean): Promise<void> {
  const cleanup = new Cleanup();
  const { group, version, plural, label } = family;
  try {
    const plane = await ControlPlane.start();
    cleanup.add(() => plane.stop());
    const upstream = await startUpstream('sandbox', '127.0.0.61');
    cleanup.add(() => upstream.close());
    const api = plane.admin.makeApiClient(CustomObjectsApi);
    // The bench is the controller: it writes the running status itself, timed.
    const setRunning = (name: string) =>
      api.patchNamespacedCustomObjectStatus(
        { group, version, plural, namespace: NS, name, body: { status: family.runningStatus('127.0.0.61') } },
        mergePatch,
      );
    const named = (name: string) => family.headers(NS, name, `${NS}--${name}`, upstream.port);
    const path = `/apis/${group}/${version}/namespaces/${NS}/${plural}`;
    await plane.ensureNamespace(NS);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS], [family.name]);
    const wakes = quick ? 20 : 100;
    for (let i = 0; i < wakes; i += 1) await createPaused(family, plane, `w${i}`);
    await createPaused(family, plane, 'herd');
    const serviceArgs = ['--kubeconfig', kubeconfig, '--namespaces', NS, ...family.serviceArgs];
    const service = await startServiceProcess(serviceArgs);
    cleanup.add(() => service.stop());
    await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
    const envoy = await startEnvoy({ extprocPort: service.grpcPort });
    cleanup.add(() => envoy.stop());
    const latencies: number[] = [];
    // The floor: how long the API server itself takes to deliver the same status change to a watch.
    const delivery: number[] = [];
    // The service's own share of each wake: the held request reaching the upstream after the API server
    // delivered the Running status to a plain watch (the floor above is the API server's, not ours).
    const shares: number[] = [];
    for (let i = 0; i < wakes; i += 1) {
      const name = `w${i}`;
      const resumed = waitForObject(
        plane.admin,
        path,
        { fieldSelector: `metadata.name=${name}` },
        (o) => family.resumeAsked(o as Record<string, unknown>),
        20_000,
      );
      const answered = get(`${envoy.url}/${name}`, named(name));
      await resumed;
      let delivered = 0;
      let watching!: () => void;
      const established = new Promise<void>((resolve) => (watching = resolve));
      const seen = waitForObject(
        plane.admin,
        path,
        { fieldSelector: `metadata.name=${name}` },
        (o) => {
          watching();
          const running = family.running(o as Record<string, unknown>);
          if (running) delivered = performance.now();
          return running;
        },
        20_000,
      );
      // The watch is open (its first event arrived) before the status is written.
      await established;
      const sent = performance.now();
      await setRunning(name);
      await seen;
      delivery.push(delivered - sent);
      if ((await answered) !== 200) throw new Error(`wake ${name} was not served`);
      const arrived = upstream.arrivals.get(`/${name}`);
      if (arrived === undefined) throw new Error(`no arrival for ${name}`);
      latencies.push(arrived - sent);
      shares.push(arrived - delivered);
    }
    latencies.sort((a, b) => a - b);
    delivery.sort((a, b) => a - b);
    shares.sort((a, b) => a - b);
    if (family.name === 'openkruise') {
      report.curve('wake', `${latencies.length} wakes through Envoy and the real API server`, percentileCurve(latencies));
    }
    report.info(`${label}floor: Running status written -> a plain watch sees it, p50`, percentile(delivery, 50), 'ms');
    report.info(`${label}floor: Running status written -> a plain watch sees it, p99`, percentile(delivery, 99), 'ms');
    report.info(`${label}wake: Running status written -> request at upstream, p50`, percentile(latencies, 50), 'ms');
    report.atMost(`${label}wake: Running status written -> request at upstream, p99`, percentile(latencies, 99), 'ms', quick ? 100 : 20);
    // Gated on the service's share: the API server's delivery alone is ~5 ms at the median here.
    report.atMost(
      `${label}wake: watch delivered -> request at upstream (the service's share), p50`,
      percentile(shares, 50),
      'ms',
      quick ? 10 : 2,
    );
    report.atMost(
      `${label}wake: watch delivered -> request at upstream (the service's share), p99`,
      percentile(shares, 99),
      'ms',
      quick ? 50 : 10,
    );
    await envoy.stop();
    await service.stop();

    // 1,000 concurrent requests to one paused sandbox, through a service of their own that logs each
    // decision (debug), so the bench knows when every one of them is held.
    const herdService = await startServiceProcess([...serviceArgs, '--max-waiters-per-sandbox', '2000', '--log-level', 'debug']);
    cleanup.add(() => herdService.stop());
    await herdService.process.waitForLine(/routes synced from Kubernetes/, 30_000);
    const herdEnvoy = await startEnvoy({ extprocPort: herdService.grpcPort });
    cleanup.add(() => herdEnvoy.stop());
    const before = herdService.memory().rss;
    const answers = Array.from({ length: HERD }, () => get(`${herdEnvoy.url}/herd`, named('herd')));
    const herdId = family.sandboxId(NS, 'herd', `${NS}--herd`);
    const decided = (line: string) =>
      line.includes('"msg":"request decided"') &&
      line.includes(`"sandboxId":${JSON.stringify(herdId)}`) &&
      line.includes('"outcome":"wake"');
    await herdService.process.waitForLines(decided, HERD, 60_000, 'herd requests held by the wake');
    // Every request is held now (nothing resumes the sandbox but the bench): the gauge must agree.
    const held = await waitersNow(herdService.httpPort);
    await setRunning('herd');
    const statuses = await Promise.all(answers);
    const peak = herdService.memory().peak;
    const tag = `${label}${HERD.toLocaleString('en-US')} concurrent requests`;
    report.equals(`${tag}: held by the wake at release`, held, 'requests', HERD);
    report.equals(`${tag} to one paused sandbox: resume patches applied`, appliedPatches(plane, 'herd').length, 'patches', 1);
    report.equals(`${tag} to one paused sandbox: served`, statuses.filter((s) => s === 200).length, 'requests', HERD);
    for (const [code, count] of Object.entries(Object.groupBy(statuses, (s) => String(s)))) {
      if (code !== '200') report.info(`${tag}: answered ${code === '0' ? 'nothing' : code}`, count?.length ?? 0, 'requests');
    }
    report.atMost(`${tag}: service RSS growth`, (peak - before) / 1e6, 'MB', quick ? 80 : 50);
  } finally {
    await cleanup.run();
  }
}

async function waitersNow(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(/^sandbox_extproc_wake_waiters (\d+)/m.exec(text)?.[1] ?? NaN);
}
