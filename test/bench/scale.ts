// Scale: N Sandbox objects in the real API server; a fresh service's initial sync time and memory;
// a burst of status updates and how long the service takes to apply them all; and lookup cost
// (identify + decide + prepared answer) at 1k versus 100k routes, in-process.
import { performance } from 'node:perf_hooks';
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { decide } from '../../src/core/decide.ts';
import { identify } from '../../src/identification/identify.ts';
import { Answers } from '../../src/protocol/answers.ts';
import { readFacts } from '../../src/protocol/facts.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { makeRoute } from '../support/routes.ts';
import { GROUP, PLURAL, runningStatus, VERSION } from '../support/sandbox-controller.ts';
import { startServiceProcess } from '../support/service-process.ts';
import type { Report } from './report.ts';

const NS = 'scale';

/** Runs `work` over `count` items with at most `parallel` in flight. */
async function pool(count: number, parallel: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

export async function measureScale(report: Report, sandboxes: number, updates: number): Promise<void> {
  const plane = await ControlPlane.start();
  try {
    await plane.ensureNamespace(NS);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
    const api = plane.admin.makeApiClient(CustomObjectsApi);
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const created = performance.now();
    await pool(sandboxes, 48, async (i) => {
      await api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        namespace: NS,
        body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Sandbox', metadata: { name: `s${i}` }, spec: { paused: false } },
      });
      await api.patchNamespacedCustomObjectStatus(
        { group: GROUP, version: VERSION, plural: PLURAL, namespace: NS, name: `s${i}`, body: { status: runningStatus(ip(i)) } },
        merge,
      );
    });
    report.info(`create ${sandboxes} sandboxes (API server write rate)`, sandboxes / ((performance.now() - created) / 1000), 'objects/s');

    const started = performance.now();
    const service = await startServiceProcess(['--kubeconfig', kubeconfig, '--namespaces', NS, '--log-level', 'info']);
    try {
      await service.process.waitForLine(/routes synced from Kubernetes/, 300_000);
      report.atMost(`initial sync of ${sandboxes} sandboxes (process start to ready)`, (performance.now() - started) / 1000, 's', 60);
      report.atMost(`service RSS with ${sandboxes} routes`, service.memory().rss / 1e6, 'MB', 250);

      // A burst of status updates: how fast the API server takes them, and how long after the last
      // write the service has applied them all (read from its own watch-event counter).
      const counted = async () =>
        Number(
          /^sandbox_extproc_watch_events_total\{type="MODIFIED"\} (\d+)/m.exec(
            await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text(),
          )?.[1] ?? 0,
        );
      const base = await counted();
      const burst = performance.now();
      await pool(updates, 64, (i) =>
        api.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            plural: PLURAL,
            namespace: NS,
            name: `s${i % sandboxes}`,
            body: { status: { podInfo: { podIP: ip(i + 7) } } },
          },
          merge,
        ),
      );
      const written = performance.now();
      report.info('status updates written per second (API server bound)', updates / ((written - burst) / 1000), 'updates/s');
      // Scrape the service's counter until it has seen every update (bounded): the lag behind the writes.
      const deadline = written + 30_000;
      let seen = (await counted()) - base;
      while (seen < updates && performance.now() < deadline) {
        await new Promise((r) => setImmediate(r));
        seen = (await counted()) - base;
      }
      report.equals('status updates applied by the service', seen >= updates ? updates : seen, 'updates', updates);
      report.atMost('lag after the last status write until all were applied', performance.now() - written, 'ms', 1000);
    } finally {
      await service.stop();
    }
  } finally {
    await plane.stop();
  }
}

/** ns per request for identify + decide + prepared answer, at a given table size. */
function lookupCost(routes: number): number {
  const registry = new RouteRegistry();
  for (let i = 0; i < routes; i += 1)
    registry.upsert(makeRoute({ id: `sbx-${i}`, uid: `u${i}`, podIP: `10.0.${(i >> 8) & 255}.${i & 255}` }));
  registry.markReady();
  const answers = new Answers({
    metadataNamespace: 'envoy.lb.original_dst',
    metadataKey: 'host',
    strippedHeaders: ['x-envoy-original-dst-host'],
  });
  const names = { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port' };
  const requests = Array.from({ length: 4096 }, (_, i) => [
    { key: ':authority', raw_value: Buffer.from('edge.example.com') },
    { key: 'e2b-sandbox-id', raw_value: Buffer.from(`sbx-${((i % 1000) * Math.floor(routes / 1000)) % routes}`) },
    { key: 'x-request-id', raw_value: Buffer.from('0f2a6c1e-5b9d-4c7e-9a51-3d2b8e4f6a70') },
  ]);
  const options = { wakeEnabled: true, unnamed: 'reject' as const };
  const run = (n: number) => {
    for (let i = 0; i < n; i += 1) {
      const facts = readFacts(requests[i & 4095], names);
      const d = decide(
        identify(facts, { domains: [], defaultPort: 49983 }),
        registry,
        { now: Date.now(), accessToken: facts.accessToken },
        options,
      );
      if (d.kind === 'forward') answers.forward(d.route, d.port);
    }
  };
  run(200_000); // warm-up: JIT and the answer cache
  const n = 1_000_000;
  const t = performance.now();
  run(n);
  return ((performance.now() - t) * 1e6) / n;
}

export function measureLookup(report: Report, quick: boolean): void {
  const small = lookupCost(1_000);
  const large = lookupCost(100_000);
  report.info('decision cost per request, 1k routes', small, 'ns');
  report.info('decision cost per request, 100k routes', large, 'ns');
  report.atMost('decision cost 100k / 1k routes (flat lookup)', large / small, 'ratio', quick ? 3 : 1.5);
}
