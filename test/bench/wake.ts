// Wake latency on the real stack: from the moment the Running status is sent to the API server to the
// moment the held request arrives at the upstream; and 1,000 concurrent requests to one paused sandbox.
// The bench plays the controller itself, so it knows exactly when the status is written. Runs once per
// Sandbox family (families.ts); the returned timeline (for the plots) is OpenKruise's.
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { AgentSandboxController } from '../support/agent-sandbox-controller.ts';
import { ControlPlane, waitForObject } from '../support/controlplane.ts';
import { startEnvoy } from '../support/envoy.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { startUpstream } from '../support/upstream.ts';
import { FAMILIES, type BenchFamily } from './families.ts';
import { percentile, type Report } from './report.ts';

const NS = 'bench';
const SERVICE_USER = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';

function get(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function measureWake(report: Report, quick: boolean): Promise<{ timeline: number[] }> {
  let timeline: number[] = [];
  for (const family of FAMILIES) {
    const measured = await measureWakeOf(family, report, quick);
    if (family.name === 'openkruise') timeline = measured;
  }
  return { timeline };
}

/** Creates a paused sandbox opted in to wake, settled, with no controller acting on it afterwards. */
async function createPaused(family: BenchFamily, plane: ControlPlane, name: string, podIP: string): Promise<void> {
  if (family.name === 'openkruise') {
    await new SandboxController(plane.admin).create({ namespace: NS, name, podIP, paused: true, wake: { by: 'policy' } });
  } else {
    await new AgentSandboxController(plane.admin).create({ namespace: NS, name, podIP, suspended: true, wake: true });
  }
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function measureWakeOf(family: BenchFamily, report: Report, quick: boolean): Promise<number[]> {
  const plane = await ControlPlane.start();
  const upstream = await startUpstream('sandbox', '127.0.0.61');
  const timeline: number[] = [];
  const { group, version, plural, label } = family;
  const api = plane.admin.makeApiClient(CustomObjectsApi);
  // The bench is the controller: it writes the running status itself, timed.
  const setRunning = (name: string) =>
    api.patchNamespacedCustomObjectStatus(
      { group, version, plural, namespace: NS, name, body: { status: family.runningStatus('127.0.0.61') } },
      mergePatch,
    );
  const named = (name: string) => family.headers(NS, name, `${NS}--${name}`, upstream.port);
  try {
    await plane.ensureNamespace(NS);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS], [family.name]);
    const wakes = quick ? 20 : 100;
    for (let i = 0; i < wakes; i += 1) await createPaused(family, plane, `w${i}`, '127.0.0.61');
    await createPaused(family, plane, 'herd', '127.0.0.61');
    const service = await startServiceProcess([
      '--kubeconfig',
      kubeconfig,
      '--namespaces',
      NS,
      '--max-waiters-per-sandbox',
      '2000',
      ...family.serviceArgs,
    ]);
    await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
    const envoy = await startEnvoy({ extprocPort: service.grpcPort });
    try {
      const latencies: number[] = [];
      // The floor: how long the API server itself takes to deliver the same status change to a watch.
      const delivery: number[] = [];
      for (let i = 0; i < wakes; i += 1) {
        const name = `w${i}`;
        const resumed = waitForObject(
          plane.admin,
          `/apis/${group}/${version}/namespaces/${NS}/${plural}`,
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
          `/apis/${group}/${version}/namespaces/${NS}/${plural}`,
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
      }
      latencies.sort((a, b) => a - b);
      delivery.sort((a, b) => a - b);
      timeline.push(...latencies);
      report.info(`${label}floor: Running status written -> a plain watch sees it, p50`, percentile(delivery, 50), 'ms');
      report.info(`${label}floor: Running status written -> a plain watch sees it, p99`, percentile(delivery, 99), 'ms');
      report.atMost(`${label}wake: Running status written -> request at upstream, p50`, percentile(latencies, 50), 'ms', quick ? 25 : 5);
      report.atMost(`${label}wake: Running status written -> request at upstream, p99`, percentile(latencies, 99), 'ms', quick ? 100 : 20);

      // 1,000 concurrent requests to one paused sandbox.
      const before = service.memory().rss;
      const herd = 1000;
      const resumed = waitForObject(
        plane.admin,
        `/apis/${group}/${version}/namespaces/${NS}/${plural}`,
        { fieldSelector: 'metadata.name=herd' },
        (o) => family.resumeAsked(o as Record<string, unknown>),
        20_000,
      );
      const answers = Array.from({ length: herd }, () => get(`${envoy.url}/herd`, named('herd')));
      await resumed;
      // Requests still connecting when the sandbox runs are forwarded without waiting; report how many
      // were actually held at the moment of release.
      const held = await waitersNow(service.httpPort);
      await setRunning('herd');
      const statuses = await Promise.all(answers);
      const peak = service.memory().peak;
      const patches = plane.auditEvents(
        (e) =>
          e.verb === 'patch' && e.objectRef?.name === 'herd' && e.objectRef.subresource === undefined && e.user.username === SERVICE_USER,
      ).length;
      report.info(`${label}1,000 concurrent requests: held by the wake at release`, held, 'requests');
      report.equals(`${label}1,000 concurrent requests to one paused sandbox: resume patches`, patches, 'patches', 1);
      report.equals(
        `${label}1,000 concurrent requests to one paused sandbox: served`,
        statuses.filter((s) => s === 200).length,
        'requests',
        herd,
      );
      for (const [code, count] of Object.entries(Object.groupBy(statuses, (s) => String(s)))) {
        if (code !== '200') report.info(`${label}1,000 concurrent requests: answered ${code}`, count?.length ?? 0, 'requests');
      }
      report.atMost(`${label}1,000 concurrent requests: service RSS growth`, (peak - before) / 1e6, 'MB', quick ? 80 : 50);
    } finally {
      await envoy.stop();
      await service.stop();
    }
  } finally {
    await upstream.close();
    await plane.stop();
  }
  return timeline;
}

async function waitersNow(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(/^sandbox_extproc_wake_waiters (\d+)/m.exec(text)?.[1] ?? 0);
}
