// Added latency and saturation throughput of the service on the request path: the same Envoy binary
// and bootstrap, the same upstream, with ext_proc routing (A) versus a static route without ext_proc
// (B), interleaved in rounds so machine noise hits both sides alike. Three more Envoys, identical to A
// but calling a bare ext_proc server that sends the service's exact forward answer without any work
// (grpc-js; Node's http2 and Go's net/http with gRPC framing by hand), show the floor below the
// service's own code, and below Node.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startEnvoy } from '../support/envoy.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { startUpstream } from '../support/upstream.ts';
import { Answers } from '../../src/protocol/answers.ts';
import { makeRoute } from '../support/routes.ts';
import { startBare } from './bare-servers.ts';
import { hey, type LoadResult } from './http-load.ts';
import { percentile, type Report } from './report.ts';

type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The baseline: envoy/envoy.yaml without the ext_proc filter, routing to one static upstream. */
export function baselineConfig(rendered: string, host: string, port: number): string {
  const config = parseYaml(rendered) as Yaml;
  const hcm = config['static_resources'].listeners[0].filter_chains[0].filters[0].typed_config;
  hcm.http_filters = hcm.http_filters.filter((f: Yaml) => f['name'] !== 'envoy.filters.http.ext_proc');
  hcm.route_config.virtual_hosts[0].routes[0].route.cluster = 'baseline';
  config['static_resources'].clusters.push({
    name: 'baseline',
    type: 'STATIC',
    connect_timeout: '2s',
    load_assignment: {
      cluster_name: 'baseline',
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
    },
  });
  return stringifyYaml(config);
}

export async function measureEnvoyPath(report: Report, quick: boolean): Promise<void> {
  const upstream = await startUpstream('bench', '127.0.0.51');
  const dir = mkdtempSync(join(tmpdir(), 'sbx-bench-'));
  const routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: bench, podIP: 127.0.0.51 }]\n');
  const service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes]);
  const withService = await startEnvoy({ extprocPort: service.grpcPort });
  const baseline = await startEnvoy({ extprocPort: service.grpcPort, transform: (y) => baselineConfig(y, upstream.host, upstream.port) });
  // The service's own answer for this route, byte for byte (its default metadata and stripped header).
  const forward = new Answers({
    metadataNamespace: 'envoy.lb.original_dst',
    metadataKey: 'host',
    strippedHeaders: ['x-envoy-original-dst-host'],
  }).forward(makeRoute({ id: 'bench', podIP: upstream.host }), upstream.port);
  const bareGrpc = await startBare('bare-grpc-server.ts', forward);
  const bareHttp2 = await startBare('bare-http2-server.ts', forward);
  const floorGrpc = await startEnvoy({ extprocPort: bareGrpc.port });
  const floorHttp2 = await startEnvoy({ extprocPort: bareHttp2.port });
  const bareGo = await startBare('bare-go-server', forward);
  const floorGo = await startEnvoy({ extprocPort: bareGo.port });
  const headers = { 'e2b-sandbox-id': 'bench', 'e2b-sandbox-port': String(upstream.port) };
  try {
    // Warm both paths (JIT, connection pools) before measuring.
    await hey(withService.url, headers, { seconds: 1, workers: 10, ratePerWorker: 100 });
    await hey(baseline.url, headers, { seconds: 1, workers: 10, ratePerWorker: 100 });
    await hey(floorGrpc.url, headers, { seconds: 1, workers: 10, ratePerWorker: 100 });
    await hey(floorHttp2.url, headers, { seconds: 1, workers: 10, ratePerWorker: 100 });
    await hey(floorGo.url, headers, { seconds: 1, workers: 10, ratePerWorker: 100 });
    const rounds = quick ? 2 : 5;
    const seconds = quick ? 3 : 10;
    const a: LoadResult[] = [];
    const b: LoadResult[] = [];
    const fg: LoadResult[] = [];
    const fh: LoadResult[] = [];
    const fgo: LoadResult[] = [];
    for (let round = 0; round < rounds; round += 1) {
      // 10 workers x 100 req/s = 1,000 req/s on each side.
      b.push(await hey(baseline.url, headers, { seconds, workers: 10, ratePerWorker: 100 }));
      a.push(await hey(withService.url, headers, { seconds, workers: 10, ratePerWorker: 100 }));
      fg.push(await hey(floorGrpc.url, headers, { seconds, workers: 10, ratePerWorker: 100 }));
      fh.push(await hey(floorHttp2.url, headers, { seconds, workers: 10, ratePerWorker: 100 }));
      fgo.push(await hey(floorGo.url, headers, { seconds, workers: 10, ratePerWorker: 100 }));
    }
    const merged = (runs: LoadResult[]) => runs.flatMap((r) => r.latencies).sort((x, y) => x - y);
    const la = merged(a);
    const lb = merged(b);
    report.info('latency p50, Envoy alone @1000 rps', percentile(lb, 50), 'ms');
    report.info('latency p50, Envoy + sandbox-extproc @1000 rps', percentile(la, 50), 'ms');
    report.info('latency p99, Envoy alone @1000 rps', percentile(lb, 99), 'ms');
    report.info('latency p99, Envoy + sandbox-extproc @1000 rps', percentile(la, 99), 'ms');
    const floors = [
      ['bare grpc-js ext_proc server (floor)', fg],
      ['bare Node http2 ext_proc server (floor)', fh],
      ['bare Go HTTP/2 ext_proc server (floor)', fgo],
    ] as const;
    for (const [name, runs] of floors) {
      const l = merged(runs);
      report.info(`added latency p50 @1000 rps, ${name}`, percentile(l, 50) - percentile(lb, 50), 'ms');
      report.info(`added latency p99 @1000 rps, ${name}`, percentile(l, 99) - percentile(lb, 99), 'ms');
    }
    report.atMost('added latency p50 @1000 rps', percentile(la, 50) - percentile(lb, 50), 'ms', quick ? 5 : 0.3);
    report.atMost('added latency p99 @1000 rps', percentile(la, 99) - percentile(lb, 99), 'ms', quick ? 30 : 1.5);
    const errors = (runs: LoadResult[]) => runs.reduce((n, r) => n + r.errors, 0);
    report.equals('errors in latency runs, Envoy alone and Envoy + sandbox-extproc', errors([...a, ...b]), 'requests', 0);
    // Every non-200 answer, per side and status; the bare servers are references: shown, not gated.
    for (const [name, runs] of [['Envoy alone', b], ['Envoy + sandbox-extproc', a], ...floors] as const) {
      const failed: Record<string, number> = {};
      for (const run of runs)
        for (const [status, count] of Object.entries(run.statuses)) if (status !== '200') failed[status] = (failed[status] ?? 0) + count;
      for (const [status, count] of Object.entries(failed))
        report.info(`latency runs, ${name}: answered ${status || 'nothing'}`, count, 'requests');
    }
    latencySamples = { withService: la, baseline: lb, floorGo: merged(fgo) };

    const satSeconds = quick ? 3 : 10;
    const satB = await hey(baseline.url, headers, { seconds: satSeconds, workers: 32 });
    const satA = await hey(withService.url, headers, { seconds: satSeconds, workers: 32 });
    report.info('saturation, Envoy alone', satB.rps, 'req/s');
    report.info('saturation, Envoy + sandbox-extproc', satA.rps, 'req/s');
    report.atLeast('saturation ratio (with / without service)', satA.rps / satB.rps, 'ratio', quick ? 0.2 : 0.6);
    // The same ratio with the bare servers in the service's place: what Envoy's ext_proc round trip
    // itself leaves of Envoy's throughput on this machine.
    for (const [name, envoy] of [
      ['bare grpc-js ext_proc server', floorGrpc],
      ['bare Go HTTP/2 ext_proc server', floorGo],
    ] as const) {
      const sat = await hey(envoy.url, headers, { seconds: satSeconds, workers: 32 });
      report.info(`saturation ratio, ${name} (floor)`, sat.rps / satB.rps, 'ratio');
    }
  } finally {
    await withService.stop();
    await baseline.stop();
    await floorGrpc.stop();
    await floorHttp2.stop();
    await floorGo.stop();
    await bareGo.stop();
    await bareGrpc.stop();
    await bareHttp2.stop();
    await service.stop();
    await upstream.close();
  }
}

/** Latency samples of the last run, for the plots in docs/benchmarks.md. */
export let latencySamples: { withService: number[]; baseline: number[]; floorGo: number[] } | undefined;
