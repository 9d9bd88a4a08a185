// Scale, in the spirit of Cluster API's scale tests: scenarios (create, pause, wake, delete) at 1k,
// 10k and the largest tier (100k by default) of Sandbox objects in the real API server, each with SLA
// thresholds that fail the run, figures read from the service's own /metrics. At the largest tier a
// fresh service process also measures initial sync, memory and how fast it applies status updates.
// Lookup cost (identify + decide + prepared answer) at 1k versus 100k routes is measured in-process.
// The scenarios run once per Sandbox family (families.ts), each on its own control plane and service.
import { performance } from 'node:perf_hooks';
import { Watch } from '@kubernetes/client-node';
import { decide } from '../../src/core/decide.ts';
import { identify } from '../../src/identification/identify.ts';
import { Answers } from '../../src/protocol/answers.ts';
import { readFacts } from '../../src/protocol/facts.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { ROUTE_STATES } from '../../src/routes/route.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { makeRoute } from '../support/routes.ts';
import { REPO_ROOT } from '../support/tools.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { BulkWriter, pool } from './bulk-writer.ts';
import { FAMILIES, type BenchFamily } from './families.ts';
import { percentile, type Report } from './report.ts';

/** Concurrent writes in flight: enough to saturate the API server, which runs out of CPU first. */
const WRITERS = 200;
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/** Reads the service's Prometheus metrics. */
class ServiceMetrics {
  readonly #url: string;
  #text = '';

  constructor(service: ServiceProcess) {
    this.#url = `http://127.0.0.1:${service.httpPort}/metrics`;
  }

  async refresh(): Promise<this> {
    this.#text = await (await fetch(this.#url)).text();
    return this;
  }

  /** A sample's value; `labels` is the exact label text, such as 'state="running"'. */
  value(name: string, labels = ''): number {
    const line = this.#text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  routes(state?: string): number {
    if (state !== undefined) return this.value('sandbox_extproc_routes', `state="${state}"`);
    return ROUTE_STATES.reduce((sum, s) => sum + this.routes(s), 0);
  }

  /**
   * Samples /metrics every 10 ms until `done` holds or the deadline passes; returns the ms from `since`
   * until it held (Infinity if it never did). A measurement of convergence, with 10 ms resolution: the
   * service has no per-event signal to wait on, and logging one per event would change what is measured.
   */
  async convergence(done: (m: this) => boolean, since: number, deadlineMs: number): Promise<number> {
    const deadline = since + deadlineMs;
    for (;;) {
      if (done(await this.refresh())) return performance.now() - since;
      if (performance.now() > deadline) return Infinity;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

interface Tiers {
  readonly sizes: readonly number[];
  /** Updates for the update-rate figures, at the largest tier. */
  readonly updates: number;
  /** SLA on how long after the last write of a phase the service's table matches (ms). */
  readonly convergeMs: number;
  readonly quick: boolean;
}

export async function measureScale(report: Report, largest: number, quick: boolean): Promise<void> {
  for (const family of FAMILIES) await measureScaleOf(family, report, largest, quick);
}

async function measureScaleOf(family: BenchFamily, report: Report, largest: number, quick: boolean): Promise<void> {
  const sizes = [...new Set(quick ? [largest] : [1_000, 10_000, largest])].filter((n) => n <= largest).sort((a, b) => a - b);
  const tiers: Tiers = { sizes, updates: quick ? 2_000 : 10_000, convergeMs: quick ? 5_000 : 2_000, quick };
  const plane = await ControlPlane.start({ auditPolicy: `${REPO_ROOT}test/fixtures/audit-policy-resumes.yaml` });
  const writer = new BulkWriter(plane, family);
  const namespaces = sizes.map((n) => `tier-${n}`);
  try {
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', namespaces, [family.name]);
    const serviceArgs = ['--kubeconfig', kubeconfig, '--namespaces', namespaces.join(','), '--max-waiters', '20000', ...family.serviceArgs];
    const service = await startServiceProcess(serviceArgs);
    try {
      await service.process.waitForLine(/routes synced from Kubernetes/, 60_000);
      const metrics = new ServiceMetrics(service);
      for (const size of sizes) {
        await scenario(report, { family, plane, writer, service, metrics, size, tiers, largest: size === sizes.at(-1), serviceArgs });
      }
      report.info(
        `${family.label}service RSS after every tier was deleted`,
        (await metrics.refresh()).value('sandbox_extproc_process_resident_memory_bytes') / 1e6,
        'MB',
      );
    } finally {
      await service.stop();
    }
  } finally {
    writer.close();
    await plane.stop();
  }
}

interface ScenarioContext {
  readonly family: BenchFamily;
  readonly plane: ControlPlane;
  readonly writer: BulkWriter;
  readonly service: ServiceProcess;
  readonly metrics: ServiceMetrics;
  readonly size: number;
  readonly tiers: Tiers;
  readonly largest: boolean;
  readonly serviceArgs: readonly string[];
}

/** create -> (largest tier: fresh-process sync, memory, update rate) -> pause -> wake -> delete. */
async function scenario(report: Report, c: ScenarioContext): Promise<void> {
  const { family, writer, metrics, size, tiers } = c;
  const ns = `tier-${size}`;
  const tag = `${family.label}${size.toLocaleString('en-US')} sandboxes`;
  const converged = (phase: string, lag: number) =>
    report.atMost(`${tag}: ${phase}, last write -> service table matches`, lag, 'ms', tiers.convergeMs);

  // Create: running sandboxes, opted in to wake on traffic.
  let t = performance.now();
  await pool(size, WRITERS, async (i) => {
    await writer.create(ns, family.object(ns, `s${i}`, `${ns}-${i}`));
    await writer.patch(ns, `s${i}`, { status: family.runningStatus(ip(i)) }, 'status');
  });
  let written = performance.now();
  report.info(`${tag}: create rate (API server bound: create + status write)`, size / ((written - t) / 1000), 'objects/s');
  converged('create', await metrics.convergence((m) => m.routes('running') === size, written, 60_000));
  report.equals(`${tag}: routes after create`, metrics.routes(), 'routes', size);
  report.info(`${tag}: service RSS`, metrics.value('sandbox_extproc_process_resident_memory_bytes') / 1e6, 'MB');

  if (c.largest) await freshProcess(report, c, tag);

  // Pause: what the family's controller does for a pause (spec first, then the paused status), for a batch.
  const paused = Math.min(size, 1_000);
  await pool(paused, WRITERS, async (i) => {
    await writer.patch(ns, `s${i}`, { spec: family.pauseSpec() });
    await writer.patch(ns, `s${i}`, { status: family.pausedStatus() }, 'status');
  });
  written = performance.now();
  converged(`pause ${paused}`, await metrics.convergence((m) => m.routes('paused') === paused, written, 60_000));

  // Wake: concurrent requests to paused sandboxes through the service's gRPC API, as Envoy sends them;
  // the bench plays the controller, answering each resume patch with the Running status.
  const wakes = Math.min(paused, 100);
  const before = (await metrics.refresh()).value('sandbox_extproc_wakes_total', 'outcome="woken"');
  const resumed = new Set<string>();
  const controller = await new Watch(c.plane.admin).watch(
    writer.path(ns),
    { resourceVersion: await listVersion(writer, ns) },
    (type, object: Record<string, unknown> & { metadata: { name: string } }) => {
      const name = object.metadata.name;
      if (type !== 'MODIFIED' || !family.resumeAsked(object)) return;
      resumed.add(name);
      void writer.patch(ns, name, { status: family.runningStatus(ip(Number(name.slice(1)))) }, 'status').catch(() => undefined);
    },
    () => undefined,
  );
  const client = new ExtProcClient(`127.0.0.1:${c.service.grpcPort}`);
  try {
    const latencies: number[] = [];
    const answers = await Promise.all(
      Array.from({ length: wakes }, async (_, i) => {
        const sent = performance.now();
        const headers = Object.entries(family.headers(ns, `s${i}`, `${ns}-${i}`)).map(([key, v]) => ({ key, raw_value: Buffer.from(v) }));
        const result = await client.exchange(
          [{ request_headers: { headers: { headers } } }],
          // The wake path answers twice: a longer message timeout for Envoy, then the forward.
          { closeAfter: 2 },
        );
        latencies.push(performance.now() - sent);
        return result.responses.at(-1)?.request_headers !== undefined;
      }),
    );
    latencies.sort((a, b) => a - b);
    report.equals(`${tag}: wake ${wakes} paused sandboxes at once, served`, answers.filter(Boolean).length, 'requests', wakes);
    report.equals(`${tag}: wake ${wakes}: sandboxes resumed`, resumed.size, 'sandboxes', wakes);
    const patches = c.plane.auditEvents(
      (e) => e.verb === 'patch' && e.objectRef?.namespace === ns && e.objectRef.subresource === undefined,
    );
    report.equals(`${tag}: wake ${wakes}: resume patches the API server received`, patches.length, 'patches', wakes);
    report.equals(
      `${tag}: wake ${wakes}: wakes counted woken by the service`,
      (await metrics.refresh()).value('sandbox_extproc_wakes_total', 'outcome="woken"') - before,
      'wakes',
      wakes,
    );
    report.atMost(
      `${tag}: wake ${wakes}: request -> forwarded, p99 (bench controller answers at once)`,
      percentile(latencies, 99),
      'ms',
      tiers.quick ? 3_000 : 1_000,
    );
  } finally {
    client.close();
    controller.abort();
  }

  // Delete them all.
  t = performance.now();
  await pool(size, WRITERS, (i) => writer.delete(ns, `s${i}`));
  written = performance.now();
  report.info(`${tag}: delete rate (API server bound)`, size / ((written - t) / 1000), 'objects/s');
  converged('delete', await metrics.convergence((m) => m.routes() === 0, written, 60_000));
}

/**
 * At the largest tier, a second, fresh service process: initial sync and memory with every object
 * present, then how fast it applies status updates. The API server takes writes far slower than
 * 5,000/s here, so the rate is measured on a backlog: the process is stopped (SIGSTOP) while the
 * updates are written, then continued, and the real API server's watch replays them as fast as the
 * service reads them. The running service, meanwhile, shows the lag behind live writes.
 */
async function freshProcess(report: Report, c: ScenarioContext, tag: string): Promise<void> {
  const { family, writer, size, tiers } = c;
  const ns = `tier-${size}`;
  const started = performance.now();
  const fresh = await startServiceProcess(c.serviceArgs);
  try {
    await fresh.process.waitForLine(/routes synced from Kubernetes/, 300_000);
    report.atMost(`${tag}: initial sync, fresh process start -> ready`, (performance.now() - started) / 1000, 's', 60);
    const freshMetrics = new ServiceMetrics(fresh);
    report.equals(`${tag}: routes after initial sync`, (await freshMetrics.refresh()).routes(), 'routes', size);
    report.atMost(`${tag}: service RSS after initial sync`, fresh.memory().rss / 1e6, 'MB', 250);

    // Counted as route-table changes: a relist (the periodic resync) may apply some updates instead of
    // the watch, and each update changes exactly one route either way.
    const changes = (m: ServiceMetrics) => m.value('sandbox_extproc_route_changes_total');
    const freshBase = changes(freshMetrics);
    const liveBase = changes(await c.metrics.refresh());
    fresh.process.child.kill('SIGSTOP');
    const burst = performance.now();
    try {
      await pool(tiers.updates, WRITERS, (i) => writer.patch(ns, `s${i % size}`, { status: family.podIPStatus(ip(i + 7)) }, 'status'));
    } finally {
      fresh.process.child.kill('SIGCONT');
    }
    const resumed = performance.now();
    report.info(
      `${family.label}status updates written per second (API server bound)`,
      tiers.updates / ((resumed - burst) / 1000),
      'updates/s',
    );
    const [live, drain] = await Promise.all([
      c.metrics.convergence((m) => changes(m) - liveBase >= tiers.updates, resumed, 30_000),
      freshMetrics.convergence((m) => changes(m) - freshBase >= tiers.updates, resumed, 60_000),
    ]);
    report.atMost(`${family.label}live status updates: last write -> all applied by the service`, live, 'ms', 1_000);
    report.equals(
      `${family.label}backlog of status updates applied after the pause`,
      changes(freshMetrics) - freshBase,
      'updates',
      tiers.updates,
    );
    report.atLeast(
      `${family.label}status updates applied per second (backlog from the real watch)`,
      tiers.updates / (drain / 1000),
      'updates/s',
      tiers.quick ? 2_000 : 5_000,
    );
  } finally {
    await fresh.stop();
  }
}

/** The namespace's current list resourceVersion: a watch from it sees only what happens next. */
async function listVersion(writer: BulkWriter, ns: string): Promise<string> {
  const list = JSON.parse(await writer.request('GET', `${writer.path(ns)}?limit=1`, undefined, 200)) as {
    metadata: { resourceVersion: string };
  };
  return list.metadata.resourceVersion;
}

/**
 * ns per request for identify + decide + prepared answer, at a given table size, for requests named by
 * E2B's headers (OpenKruise) or agent-sandbox's (x-sandbox-id and x-sandbox-namespace).
 */
function lookupCost(routes: number, family: BenchFamily = FAMILIES[0] as BenchFamily): number {
  const agent = family.name === 'agent-sandbox';
  const registry = new RouteRegistry();
  for (let i = 0; i < routes; i += 1)
    registry.upsert(makeRoute({ id: agent ? `ns/sbx-${i}` : `sbx-${i}`, uid: `u${i}`, podIP: `10.0.${(i >> 8) & 255}.${i & 255}` }));
  registry.markReady();
  const answers = new Answers({
    metadataNamespace: 'envoy.lb.original_dst',
    metadataKey: 'host',
    strippedHeaders: ['x-envoy-original-dst-host'],
  });
  const names = { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port', agentSandbox: agent };
  const requests = Array.from({ length: 4096 }, (_, i) => [
    { key: ':authority', raw_value: Buffer.from('edge.example.com') },
    ...Object.entries(
      family.headers(
        'ns',
        `sbx-${((i % 1000) * Math.floor(routes / 1000)) % routes}`,
        `sbx-${((i % 1000) * Math.floor(routes / 1000)) % routes}`,
      ),
    ).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })),
    { key: 'x-request-id', raw_value: Buffer.from('0f2a6c1e-5b9d-4c7e-9a51-3d2b8e4f6a70') },
  ]);
  const identifyOptions = {
    domains: [],
    defaultPort: 49983,
    conventions: [agent ? ('agent-sandbox' as const) : ('e2b' as const)],
    agentSandbox: { defaultNamespace: 'ns', defaultPort: 8888, namespaces: [] },
  };
  const options = { wakeEnabled: true, unnamed: 'reject' as const };
  const run = (n: number) => {
    for (let i = 0; i < n; i += 1) {
      const facts = readFacts(requests[i & 4095], names);
      const d = decide(identify(facts, identifyOptions), registry, { now: Date.now(), accessToken: facts.accessToken }, options);
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
  for (const family of FAMILIES) {
    const small = lookupCost(1_000, family);
    const large = lookupCost(100_000, family);
    report.info(`${family.label}decision cost per request, 1k routes`, small, 'ns');
    report.info(`${family.label}decision cost per request, 100k routes`, large, 'ns');
    report.atMost(`${family.label}decision cost 100k / 1k routes (flat lookup)`, large / small, 'ratio', quick ? 3 : 1.5);
  }
}
