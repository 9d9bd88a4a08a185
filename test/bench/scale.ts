// Scale, in the spirit of Cluster API's scale tests: scenarios (create, pause, wake, delete) at 1k,
// 10k and the largest tier (100k by default) of Sandbox objects in the real API server, each with SLA
// thresholds that fail the run. At the largest tier a fresh service process also measures initial sync,
// memory and how fast it applies status updates. Lookup cost (identify + decide + prepared answer) at 1k
// versus 100k routes is measured in-process.
//
// When has the service applied a phase's writes? It logs nothing per event, and sampling /metrics
// would be polling. A barrier answers it through the watch itself: before a phase, the bench holds a
// wake request on a paused "barrier" sandbox in the same namespace; after the phase's last write, it
// writes the barrier's Running status. A watch delivers one namespace's events in resourceVersion
// order and the service applies them in turn, so the moment the held request is answered, every write
// of the phase has been applied: the convergence time is measured to that answer (an upper bound, one
// more write and watch delivery later than the true one), then the route table is checked exactly.
// The scenarios run once per Sandbox family (families.ts), each on its own control plane and service.
import { performance } from 'node:perf_hooks';
import { Watch } from '@kubernetes/client-node';
import { decide } from '../../src/core/decide.ts';
import { identify } from '../../src/identification/identify.ts';
import { Answers } from '../../src/protocol/answers.ts';
import { readFacts } from '../../src/protocol/facts.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { ControlPlane, isActivityRecord, waitForObject } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { makeRoute } from '../support/routes.ts';
import { REPO_ROOT } from '../support/tools.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { BulkWriter, pool } from './bulk-writer.ts';
import { Cleanup } from './cleanup.ts';
import { FAMILIES, type BenchFamily } from './families.ts';
import { percentile, type Report } from './report.ts';
import { ServiceMetrics } from './service-metrics.ts';

/** Concurrent writes in flight: enough to saturate the API server, which runs out of CPU first. */
const WRITERS = 200;
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const BARRIER_IP = '10.255.255.1';

/**
 * The barriers of one namespace: sandboxes barrier-0, barrier-1, ..., each paused until it is used.
 * The next one is always created before the current one is released, so when a release is answered
 * the service has seen the next barrier too, and can hold a request on it.
 */
class Barriers {
  readonly #writer: BulkWriter;
  readonly #plane: ControlPlane;
  readonly #family: BenchFamily;
  readonly ns: string;
  #current = 0;

  constructor(plane: ControlPlane, writer: BulkWriter, family: BenchFamily, ns: string) {
    this.#plane = plane;
    this.#writer = writer;
    this.#family = family;
    this.ns = ns;
  }

  static isBarrier(name: string): boolean {
    return name.startsWith('barrier-');
  }

  /** Creates barrier-k, opted in to wake on traffic, and pauses it (spec, then status). */
  async create(k: number): Promise<void> {
    const name = `barrier-${k}`;
    await this.#writer.create(this.ns, this.#family.object(this.ns, name, `${this.ns}-${name}`));
    await this.#writer.patch(this.ns, name, { spec: this.#family.pauseSpec() });
    await this.#writer.patch(this.ns, name, { status: this.#family.pausedStatus() }, 'status');
  }

  /**
   * Holds one wake request on the current barrier in each service; resolves once every service holds
   * it and the resume it asked for is written (so a release is the only write left).
   */
  async hold(services: readonly ServiceProcess[]): Promise<Held> {
    const name = `barrier-${this.#current}`;
    const family = this.#family;
    const id = family.sandboxId(this.ns, name, `${this.ns}-${name}`);
    const resumed = waitForObject(
      this.#plane.admin,
      `/apis/${family.group}/${family.version}/namespaces/${this.ns}/${family.plural}`,
      { fieldSelector: `metadata.name=${name}` },
      (o) => family.resumeAsked(o as Record<string, unknown>),
      60_000,
    );
    const headers = Object.entries(family.headers(this.ns, name, `${this.ns}-${name}`)).map(([key, v]) => ({
      key,
      raw_value: Buffer.from(v),
    }));
    const clients = services.map((s) => new ExtProcClient(`127.0.0.1:${s.grpcPort}`));
    const answered: number[] = [];
    const held = services.map(() => Promise.withResolvers<void>());
    const exchanges = clients.map((client, i) =>
      client.exchange([{ request_headers: { headers: { headers } } }], {
        closeAfter: 2,
        onResponse: (response, index) => {
          if (index === 0 && response.override_message_timeout !== undefined) held[i]?.resolve();
          else if (index === 0) held[i]?.reject(new Error(`barrier ${id} was not held: ${JSON.stringify(response)}`));
          else answered[i] = performance.now();
        },
      }),
    );
    await Promise.all(held.map((h) => h.promise));
    await resumed;
    return {
      release: async (afterWrite = () => undefined) => {
        // Before the release: the next barrier appears and the previous one goes, so that once the
        // release is answered, exactly one barrier runs (this one) and one is paused (the next).
        await this.create(this.#current + 1);
        if (this.#current > 0) await this.#writer.delete(this.ns, `barrier-${this.#current - 1}`);
        await this.#writer.patch(this.ns, name, { status: family.runningStatus(BARRIER_IP) }, 'status');
        afterWrite();
        const results = await Promise.all(exchanges);
        for (const client of clients) client.close();
        for (const [i, r] of results.entries()) {
          if (r.responses[1]?.request_headers === undefined)
            throw new Error(`barrier ${id} released without a forward: ${JSON.stringify(r)}`);
          if (answered[i] === undefined) throw new Error(`barrier ${id}: no answer time`);
        }
        this.#current += 1;
        return answered;
      },
    };
  }

  /** Deletes the barriers left (the released one and the next). */
  async clear(): Promise<void> {
    for (const k of [this.#current - 1, this.#current]) await this.#writer.delete(this.ns, `barrier-${k}`).catch(() => undefined);
  }
}

interface Held {
  /** Writes the barrier's Running status, calls afterWrite, and resolves with each service's answer time. */
  release(afterWrite?: () => void): Promise<number[]>;
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
  const cleanup = new Cleanup();
  try {
    const plane = await ControlPlane.start({ auditPolicy: `${REPO_ROOT}test/fixtures/audit-policy-resumes.yaml` });
    cleanup.add(() => plane.stop());
    const writer = new BulkWriter(plane, family);
    cleanup.add(() => writer.close());
    const namespaces = sizes.map((n) => `tier-${n}`);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', namespaces, [family.name]);
    // Each tier's first barrier exists before the service starts, so its initial list holds them.
    const barriers = namespaces.map((ns) => new Barriers(plane, writer, family, ns));
    for (const b of barriers) await b.create(0);
    // Barrier requests are held for as long as a phase takes (minutes at 100k): no Envoy in between.
    const serviceArgs = [
      ...['--kubeconfig', kubeconfig, '--namespaces', namespaces.join(','), '--max-waiters', '20000'],
      ...['--wake-timeout', '3500s', '--max-message-timeout', '3600s'],
      ...family.serviceArgs,
    ];
    const service = await startServiceProcess(serviceArgs);
    cleanup.add(() => service.stop());
    await service.process.waitForLine(/routes synced from Kubernetes/, 60_000);
    const metrics = new ServiceMetrics(service);
    for (const [t, size] of sizes.entries()) {
      await scenario(report, {
        family,
        plane,
        writer,
        service,
        metrics,
        size,
        tiers,
        largest: size === sizes.at(-1),
        serviceArgs,
        barriers: barriers[t] as Barriers,
        // Later tiers' first barriers: paused routes in other namespaces, present all along.
        otherPaused: sizes.length - 1 - t,
      });
    }
    report.info(
      `${family.label}service RSS after every tier was deleted`,
      (await metrics.refresh()).value('process_resident_memory_bytes') / 1e6,
      'MB',
    );
  } finally {
    await cleanup.run();
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
  readonly barriers: Barriers;
  readonly otherPaused: number;
}

/** create -> (largest tier: fresh-process sync, memory, update rate) -> pause -> wake -> delete. */
async function scenario(report: Report, c: ScenarioContext): Promise<void> {
  const { family, writer, metrics, size, tiers, barriers } = c;
  const ns = barriers.ns;
  const tag = `${family.label}${size.toLocaleString('en-US')} sandboxes`;
  const converged = (phase: string, lag: number) =>
    report.atMost(`${tag}: ${phase}, last write -> service table matches (barrier answered)`, lag, 'ms', tiers.convergeMs);
  // After a release: the released barrier runs, the next one is paused.
  const expect = async (phase: string, running: number, paused: number) => {
    await metrics.refresh();
    report.equals(`${tag}: routes running after ${phase}`, metrics.routes('running'), 'routes', running + 1);
    report.equals(`${tag}: routes paused after ${phase}`, metrics.routes('paused'), 'routes', paused + 1 + c.otherPaused);
    report.equals(`${tag}: routes in all after ${phase}`, metrics.routes(), 'routes', running + paused + 2 + c.otherPaused);
  };

  // Create: running sandboxes, opted in to wake on traffic.
  let held = await barriers.hold([c.service]);
  let t = performance.now();
  await pool(size, WRITERS, async (i) => {
    await writer.create(ns, family.object(ns, `s${i}`, `${ns}-${i}`));
    await writer.patch(ns, `s${i}`, { status: family.runningStatus(ip(i)) }, 'status');
  });
  let written = performance.now();
  report.info(`${tag}: create rate (API server bound: create + status write)`, size / ((written - t) / 1000), 'objects/s');
  converged('create', ((await held.release())[0] as number) - written);
  await expect('create', size, 0);
  report.info(`${tag}: service RSS`, metrics.value('process_resident_memory_bytes') / 1e6, 'MB');

  if (c.largest) await freshProcess(report, c, tag);

  // Pause: what the family's controller does for a pause (spec first, then the paused status), for a batch.
  const paused = Math.min(size, 1_000);
  held = await barriers.hold([c.service]);
  await pool(paused, WRITERS, async (i) => {
    await writer.patch(ns, `s${i}`, { spec: family.pauseSpec() });
    await writer.patch(ns, `s${i}`, { status: family.pausedStatus() }, 'status');
  });
  written = performance.now();
  converged(`pause ${paused}`, ((await held.release())[0] as number) - written);
  await expect(`pause ${paused}`, size - paused, paused);

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
      if (Barriers.isBarrier(name)) return;
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
    // Counted from the API server's audit log: the patches it applied (2xx) to the sandboxes woken.
    const patches = c.plane.auditEvents(
      (e) =>
        e.verb === 'patch' &&
        e.objectRef?.namespace === ns &&
        e.objectRef.subresource === undefined &&
        !Barriers.isBarrier(e.objectRef.name ?? '') &&
        !isActivityRecord(e) &&
        (e.responseStatus?.code ?? 0) < 300,
    );
    report.equals(`${tag}: wake ${wakes}: resume patches the API server applied`, patches.length, 'patches', wakes);
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
  held = await barriers.hold([c.service]);
  t = performance.now();
  await pool(size, WRITERS, (i) => writer.delete(ns, `s${i}`));
  written = performance.now();
  report.info(`${tag}: delete rate (API server bound)`, size / ((written - t) / 1000), 'objects/s');
  converged('delete', ((await held.release())[0] as number) - written);
  await expect('delete', 0, 0);
  await barriers.clear();
}

/**
 * At the largest tier, a second, fresh service process: initial sync and memory with every object
 * present, then how fast it applies status updates. The API server takes writes far slower than
 * 5,000/s here, so the rate is measured on a backlog: the process is stopped (SIGSTOP) while the
 * updates are written, then continued, and the real API server's watch replays them as fast as the
 * service reads them; a barrier held in both processes marks the end. The running service, meanwhile,
 * shows the lag behind live writes.
 */
async function freshProcess(report: Report, c: ScenarioContext, tag: string): Promise<void> {
  const { family, writer, size, tiers, barriers } = c;
  const ns = barriers.ns;
  const started = performance.now();
  const fresh = await startServiceProcess(c.serviceArgs);
  try {
    await fresh.process.waitForLine(/routes synced from Kubernetes/, 300_000);
    report.atMost(`${tag}: initial sync, fresh process start -> ready`, (performance.now() - started) / 1000, 's', 60);
    const freshMetrics = new ServiceMetrics(fresh);
    // Every sandbox, the released barrier, the next one, later tiers' first barriers.
    report.equals(`${tag}: routes after initial sync`, (await freshMetrics.refresh()).routes(), 'routes', size + 2 + c.otherPaused);
    report.atMost(`${tag}: service RSS after initial sync`, fresh.memory().rss / 1e6, 'MB', 250);

    // Counted as route-table changes: each update changes exactly one route.
    const changes = (m: ServiceMetrics) => m.value('sandbox_extproc_route_changes_total');
    const freshBase = changes(freshMetrics);
    const liveBase = changes(await c.metrics.refresh());
    const held = await barriers.hold([c.service, fresh]);
    fresh.process.child.kill('SIGSTOP');
    let continued = 0;
    const burst = performance.now();
    try {
      await pool(tiers.updates, WRITERS, (i) => writer.patch(ns, `s${i % size}`, { status: family.podIPStatus(ip(i + 7)) }, 'status'));
    } catch (error) {
      fresh.process.child.kill('SIGCONT');
      throw error;
    }
    const written = performance.now();
    report.info(
      `${family.label}status updates written per second (API server bound)`,
      tiers.updates / ((written - burst) / 1000),
      'updates/s',
    );
    const [live, drained] = (await held.release(() => {
      fresh.process.child.kill('SIGCONT');
      continued = performance.now();
    })) as [number, number];
    report.atMost(
      `${family.label}live status updates: last write -> all applied by the service (barrier answered)`,
      live - written,
      'ms',
      1_000,
    );
    report.atLeast(
      `${family.label}backlog of status updates applied after the pause`,
      changes(await freshMetrics.refresh()) - freshBase,
      'updates',
      tiers.updates,
    );
    report.atLeast(`${family.label}live status updates applied`, changes(await c.metrics.refresh()) - liveBase, 'updates', tiers.updates);
    report.atLeast(
      `${family.label}status updates applied per second (backlog from the real watch)`,
      tiers.updates / ((drained - continued) / 1000),
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
