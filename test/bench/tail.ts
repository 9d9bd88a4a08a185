// The tail, lever by lever (issue 29 section 3): what moves the added p99 of a Node ext_proc service
// behind Envoy. Every side is the shipping envoy/envoy.yaml in front of one ext_proc server, with the
// same upstream and the same load (vegeta, 1,000 req/s, every request accounted for), interleaved in
// rounds in a rotating order:
// - "Envoy alone, ORIGINAL_DST": the reference "added" is measured against (see envoy-path.ts);
// - the bare Node http2 floor: the service's exact answer bytes and nothing else, the runtime's floor;
// - the service as it ships, in its production shape: routes from a real API server's watch, the access
//   log stream served and read as activity (with file routes, as the path step runs it, Envoy sends no
//   access log entries and the service serves none);
// - one service per lever, each differing from "as it ships" in that one thing: the young generation's
//   size, V8's memory-saving mode, the access log and activity work turned off (its share of the tail),
//   watch churn on other sandboxes while it serves (the watch handling's share), and with --baseline an
//   older build (code levers: allocations per stream).
// Per side, from the service's own /metrics over its measured runs: CPU per request and the share of
// wall time spent in garbage collection, the causes a tail has in a single-threaded runtime.
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { writeSandbox } from '../support/sandbox-objects.ts';
import { IMAGE_NODE_FLAGS, startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { startUpstream } from '../support/upstream.ts';
import { differs, rawExchanges } from './answer-bytes.ts';
import { startBare } from './bare-servers.ts';
import { BulkWriter } from './bulk-writer.ts';
import { Cleanup } from './cleanup.ts';
import { originalDstConfig } from './envoy-path.ts';
import { OPENKRUISE } from './families.ts';
import type { Baseline } from './grpc-load.ts';
import { describeLoad, httpLoad, type LoadResult } from './http-load.ts';
import { percentile, type Report } from './report.ts';
import { ServiceMetrics } from './service-metrics.ts';

const NS = 'tail';
const RATE = 1000;
const UPSTREAM_IP = '127.0.0.71';
/** Other sandboxes in the namespace, whose status the churn side rewrites while it serves. */
const OTHERS = 100;
const CHURN_PER_SECOND = 100;

/** One service differing from the one that ships in one thing. */
interface Lever {
  readonly name: string;
  readonly nodeFlags?: readonly string[];
  readonly args?: readonly string[];
  readonly bundle?: string;
  /** Status writes to other sandboxes of the namespace while this side serves. */
  readonly churn?: boolean;
}

interface Side {
  readonly name: string;
  readonly envoy: RunningEnvoy;
  readonly service?: ServiceProcess;
  readonly churn?: boolean;
}

export async function measureTail(report: Report, quick: boolean, baseline?: Baseline): Promise<void> {
  const levers: Lever[] = [
    { name: 'as it ships' },
    { name: "young generation: Node's default size (no --max-semi-space-size)", nodeFlags: [] },
    { name: 'young generation: 32 MB semi-spaces', nodeFlags: ['--max-semi-space-size=32'] },
    { name: 'V8 memory-saving mode (--optimize-for-size)', nodeFlags: [...IMAGE_NODE_FLAGS, '--optimize-for-size'] },
    { name: 'access log and activity work off (--activity false)', args: ['--activity', 'false'] },
    { name: `watch churn: ${CHURN_PER_SECOND} status writes/s to other sandboxes`, churn: true },
    ...(baseline === undefined ? [] : [{ name: `build ${baseline.label}`, bundle: baseline.bundle }]),
  ];
  const cleanup = new Cleanup();
  try {
    const plane = await ControlPlane.start();
    cleanup.add(() => plane.stop());
    const upstream = await startUpstream('tail', UPSTREAM_IP);
    cleanup.add(() => upstream.close());
    await plane.ensureNamespace(NS);
    await writeSandbox(plane.admin, { family: 'openkruise', namespace: NS, name: 'served', state: { running: UPSTREAM_IP }, wake: true });
    const others = Array.from({ length: OTHERS }, (_, i) => `other-${i}`);
    for (const name of others)
      await writeSandbox(plane.admin, { family: 'openkruise', namespace: NS, name, state: { running: '10.0.0.1' } });
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
    const headers = OPENKRUISE.headers(NS, 'served', `${NS}--served`, upstream.port);

    const envoy = async (extprocPort: number, transform?: (y: string) => string) => {
      const e = await startEnvoy({ extprocPort, ...(transform === undefined ? {} : { transform }) });
      cleanup.add(() => e.stop());
      return e;
    };
    const services: Side[] = [];
    for (const lever of levers) {
      const service = await startServiceProcess(['--kubeconfig', kubeconfig, '--namespaces', NS, ...(lever.args ?? [])], {
        ...(lever.nodeFlags === undefined ? {} : { nodeFlags: lever.nodeFlags }),
        ...(lever.bundle === undefined ? {} : { bundle: lever.bundle }),
      });
      cleanup.add(() => service.stop());
      await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
      services.push({ name: lever.name, service, envoy: await envoy(service.grpcPort), ...(lever.churn ? { churn: true } : {}) });
    }
    const ships = services[0] as Side & { service: ServiceProcess };

    // The floor sends the very bytes the service answers this request with (its route's metadata, so
    // Envoy sends the floor the same access log entries).
    const asked = {
      request_headers: { headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) } },
    };
    const [own] = await rawExchanges(ships.service.grpcPort, asked);
    if (own?.status !== 0 || own.answers.length !== 1)
      throw new Error(`the service did not answer the bench request: ${JSON.stringify(own)}`);
    const forward = own.answers[0] as Buffer;
    const bare = await startBare('bare-http2-server.ts', forward);
    cleanup.add(() => bare.stop());
    const wrong = differs(await rawExchanges(bare.port, asked, 100), forward);
    if (wrong !== undefined) throw new Error(`the bare Node http2 floor does not send the service's answer: ${wrong}`);
    const floor: Side = { name: 'bare Node http2 ext_proc server (floor)', envoy: await envoy(bare.port) };
    const odst: Side = {
      name: 'Envoy alone, ORIGINAL_DST',
      envoy: await envoy(ships.service.grpcPort, (y) => originalDstConfig(y, upstream.host, upstream.port)),
    };
    // The floor again while the churn side's writes run: the API server's and the other services' share of
    // the machine under churn, which the churn side pays too, so that the service's own share shows.
    const floorUnderChurn: Side = {
      name: `bare Node http2 ext_proc server (floor), under the same churn`,
      envoy: floor.envoy,
      churn: true,
    };
    const sides = [odst, floor, floorUnderChurn, ...services];

    const writer = new BulkWriter(plane, OPENKRUISE);
    cleanup.add(() => writer.close());
    /** Rewrites other sandboxes' pod IPs at a steady rate until stopped: each is a route change for every service. */
    const churn = () => {
      let i = 0;
      const timer = setInterval(() => {
        for (let n = 0; n < CHURN_PER_SECOND / 10; n += 1, i += 1) {
          const ip = `10.0.${1 + (i % 2)}.${1 + (i % 200)}`;
          void writer.patch(NS, others[i % OTHERS] as string, { status: OPENKRUISE.podIPStatus(ip) }, 'status').catch(() => undefined);
        }
      }, 100);
      return () => clearInterval(timer);
    };

    const usage = new Map<Side, { cpuMs: number; gcSeconds: number; wallMs: number; requests: number }>();
    const run = async (side: Side, seconds: number, measured: boolean): Promise<LoadResult> => {
      const metrics = side.service === undefined ? undefined : await new ServiceMetrics(side.service).refresh();
      const gcBefore = metrics?.sum('nodejs_gc_duration_seconds_sum') ?? 0;
      const cpuBefore = side.service?.cpuMs() ?? 0;
      const started = performance.now();
      const stopChurn = side.churn === true ? churn() : undefined;
      const result = await httpLoad(side.envoy.url, headers, { seconds, rate: RATE });
      stopChurn?.();
      if (result.failed > 0) throw new Error(`${side.name}: requests failed in a measured run: ${describeLoad(result)}`);
      if (measured && side.service !== undefined && metrics !== undefined) {
        const u = usage.get(side) ?? { cpuMs: 0, gcSeconds: 0, wallMs: 0, requests: 0 };
        u.cpuMs += side.service.cpuMs() - cpuBefore;
        u.gcSeconds += (await metrics.refresh()).sum('nodejs_gc_duration_seconds_sum') - gcBefore;
        u.wallMs += performance.now() - started;
        u.requests += result.sent;
        usage.set(side, u);
      }
      return result;
    };
    const interleaved = async (rounds: number, seconds: number, measured: boolean) => {
      const results = new Map<Side, LoadResult[]>(sides.map((s) => [s, []]));
      for (let round = 0; round < rounds; round += 1) {
        for (let i = 0; i < sides.length; i += 1) {
          const side = sides[(round + i) % sides.length] as Side;
          results.get(side)?.push(await run(side, seconds, measured));
        }
      }
      return results;
    };

    // Warm every path (JIT, connection pools, the access log streams) before measuring.
    await interleaved(1, 1, false);
    const latency = await interleaved(quick ? 2 : 5, quick ? 3 : 10, true);
    const merged = (side: Side) => (latency.get(side) ?? []).flatMap((r) => r.latencies).sort((x, y) => x - y);
    const l = new Map(sides.map((s) => [s, merged(s)]));
    const p = (side: Side, pct: number) => percentile(l.get(side) ?? [], pct);
    const added = (side: Side, pct: number) => p(side, pct) - p(odst, pct);
    const tag = (side: Side) => (side === floor || side === floorUnderChurn || side === odst ? side.name : `sandbox-extproc, ${side.name}`);
    for (const side of sides) {
      report.info(`tail: latency p99 @${RATE} rps, ${tag(side)}`, p(side, 99), 'ms');
      if (side === odst) continue;
      report.info(`tail: added latency p50 @${RATE} rps, ${tag(side)}`, added(side, 50), 'ms');
      report.info(`tail: added latency p99 @${RATE} rps, ${tag(side)}`, added(side, 99), 'ms');
      report.info(`tail: added latency p99.9 @${RATE} rps, ${tag(side)}`, added(side, 99.9), 'ms');
      const u = usage.get(side);
      if (u === undefined) continue;
      report.info(`tail: CPU per request, ${tag(side)}`, (u.cpuMs * 1000) / u.requests, 'us');
      report.info(`tail: share of wall time in garbage collection, ${tag(side)}`, (100 * u.gcSeconds * 1000) / u.wallMs, '%');
    }
    for (const side of services.slice(1)) {
      report.info(`tail: added p99, ${side.name} / as it ships`, added(side, 99) / added(ships, 99), 'ratio');
    }
    const churned = services.find((s) => s.churn === true) as Side;
    report.info(
      'tail: added p99 under watch churn, sandbox-extproc / the floor under the same churn',
      added(churned, 99) / added(floorUnderChurn, 99),
      'ratio',
    );
    // The goal: the service's added p99 within 10 % of the runtime's floor, in the same run. A
    // --quick run's few seconds make the ratio of two sub-millisecond tails noise: shown, not gated.
    const name = 'tail: added latency p99, sandbox-extproc as it ships / the bare Node http2 floor';
    const ratio = added(ships, 99) / added(floor, 99);
    if (quick) report.info(name, ratio, 'ratio');
    else report.atMost(name, ratio, 'ratio', 1.1);
  } finally {
    await cleanup.run();
  }
}
