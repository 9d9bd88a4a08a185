// What the service costs on the request path, measured through the same Envoy binary and bootstrap,
// the same upstream and the same load generator (vegeta, which accounts for every request), side by
// side and interleaved in rounds (each round in a rotated order) so machine noise hits every side alike:
// - "Envoy alone, ORIGINAL_DST": no ext_proc filter; a set_metadata filter writes the upstream where the
//   ORIGINAL_DST cluster reads it, so the cluster type is the one that ships;
// - "Envoy + sandbox-extproc": envoy/envoy.yaml as it ships (ext_proc + ORIGINAL_DST). Against the
//   side above, the difference is the ext_proc filter and the service alone;
// - "Envoy alone, STATIC": a static route to the upstream. Against the first side, the difference is
//   the ORIGINAL_DST cluster's own cost, reported separately;
// - three floors, identical to the shipping config but calling a bare ext_proc server that sends the
//   service's exact answer bytes (checked) without any work: grpc-js, Node's http2, Go's net/http.
// Every run must have every request answered 200: a run with a failure is a failed benchmark, never a
// figure. Saturation throughput counts only 200s.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { startUpstream } from '../support/upstream.ts';
import { differs, rawExchanges } from './answer-bytes.ts';
import { startBare } from './bare-servers.ts';
import { describeLoad, httpLoad, type LoadResult } from './http-load.ts';
import { percentile, percentileCurve, type Report } from './report.ts';
import { Cleanup } from './cleanup.ts';

type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function withoutExtProc(rendered: string, edit: (config: Yaml, hcm: Yaml) => void): string {
  const config = parseYaml(rendered) as Yaml;
  const hcm = config['static_resources'].listeners[0].filter_chains[0].filters[0].typed_config;
  hcm.http_filters = hcm.http_filters.filter((f: Yaml) => f['name'] !== 'envoy.filters.http.ext_proc');
  edit(config, hcm);
  return stringifyYaml(config);
}

/** envoy/envoy.yaml without ext_proc, routing to one upstream through a STATIC cluster. */
export function staticConfig(rendered: string, host: string, port: number): string {
  return withoutExtProc(rendered, (config, hcm) => {
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
  });
}

/**
 * envoy/envoy.yaml without ext_proc, its ORIGINAL_DST cluster unchanged: a set_metadata filter writes
 * the upstream into the very metadata the service would (envoy.lb.original_dst/host).
 */
export function originalDstConfig(rendered: string, host: string, port: number): string {
  return withoutExtProc(rendered, (_config, hcm) => {
    hcm.http_filters.unshift({
      name: 'envoy.filters.http.set_metadata',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config',
        metadata: [{ metadata_namespace: 'envoy.lb.original_dst', value: { host: `${host}:${port}` } }],
      },
    });
  });
}

interface Side {
  readonly name: string;
  readonly envoy: RunningEnvoy;
}

const RATE = 1000;

export async function measureEnvoyPath(report: Report, quick: boolean): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const upstream = await startUpstream('bench', '127.0.0.51');
    cleanup.add(() => upstream.close());
    const dir = mkdtempSync(join(tmpdir(), 'sbx-bench-'));
    const routes = join(dir, 'routes.yaml');
    writeFileSync(routes, 'routes: [{ id: bench, podIP: 127.0.0.51 }]\n');
    const service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes]);
    cleanup.add(() => service.stop());
    const envoy = async (options: Parameters<typeof startEnvoy>[0]) => {
      const e = await startEnvoy(options);
      cleanup.add(() => e.stop());
      return e;
    };
    // The service's own answer to the request the bench sends, byte for byte, for the floors.
    const headers = { 'e2b-sandbox-id': 'bench', 'e2b-sandbox-port': String(upstream.port) };
    const asked = {
      request_headers: { headers: { headers: Object.entries(headers).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) } },
    };
    const [own] = await rawExchanges(service.grpcPort, asked);
    if (own?.status !== 0 || own.answers.length !== 1)
      throw new Error(`the service did not answer the bench request: ${JSON.stringify(own)}`);
    const forward = own.answers[0] as Buffer;
    const floors: Side[] = [];
    for (const [name, script] of [
      ['bare grpc-js ext_proc server (floor)', 'bare-grpc-server.ts'],
      ['bare Node http2 ext_proc server (floor)', 'bare-http2-server.ts'],
      ['bare Go HTTP/2 ext_proc server (floor)', 'bare-go-server'],
    ] as const) {
      const bare = await startBare(script, forward);
      cleanup.add(() => bare.stop());
      const wrong = differs(await rawExchanges(bare.port, asked, 100), forward);
      if (wrong !== undefined) throw new Error(`${name} does not send the service's answer: ${wrong}`);
      floors.push({ name, envoy: await envoy({ extprocPort: bare.port }) });
    }
    const odst: Side = {
      name: 'Envoy alone, ORIGINAL_DST',
      envoy: await envoy({ extprocPort: service.grpcPort, transform: (y) => originalDstConfig(y, upstream.host, upstream.port) }),
    };
    const statik: Side = {
      name: 'Envoy alone, STATIC',
      envoy: await envoy({ extprocPort: service.grpcPort, transform: (y) => staticConfig(y, upstream.host, upstream.port) }),
    };
    const ours: Side = { name: 'Envoy + sandbox-extproc', envoy: await envoy({ extprocPort: service.grpcPort }) };
    const sides = [odst, ours, statik, ...floors];

    /** Runs every side once per round, each round in a rotated order; any failed request stops the bench. */
    const interleaved = async (rounds: number, run: (side: Side) => Promise<LoadResult>) => {
      const results = new Map<Side, LoadResult[]>(sides.map((s) => [s, []]));
      for (let round = 0; round < rounds; round += 1) {
        for (let i = 0; i < sides.length; i += 1) {
          const side = sides[(round + i) % sides.length] as Side;
          const result = await run(side);
          if (result.failed > 0) throw new Error(`${side.name}: requests failed in a measured run: ${describeLoad(result)}`);
          results.get(side)?.push(result);
        }
      }
      return results;
    };

    // Warm every path (JIT, connection pools) before measuring.
    await interleaved(1, (side) => httpLoad(side.envoy.url, headers, { seconds: 1, rate: 500 }));

    const rounds = quick ? 2 : 5;
    const seconds = quick ? 3 : 10;
    const latency = await interleaved(rounds, (side) => httpLoad(side.envoy.url, headers, { seconds, rate: RATE }));
    const merged = (side: Side) => (latency.get(side) ?? []).flatMap((r) => r.latencies).sort((x, y) => x - y);
    const sent = (side: Side) => (latency.get(side) ?? []).reduce((n, r) => n + r.sent, 0);
    const l = new Map(sides.map((s) => [s, merged(s)]));
    const p = (side: Side, pct: number) => percentile(l.get(side) ?? [], pct);
    for (const side of sides) {
      report.equals(
        `latency runs @${RATE} rps, ${side.name}: requests sent and answered 200`,
        l.get(side)?.length ?? 0,
        'requests',
        sent(side),
      );
      report.info(`latency p50 @${RATE} rps, ${side.name}`, p(side, 50), 'ms');
      report.info(`latency p99 @${RATE} rps, ${side.name}`, p(side, 99), 'ms');
    }
    report.atMost(
      `added latency p50 @${RATE} rps (ext_proc filter + sandbox-extproc; both sides ORIGINAL_DST)`,
      p(ours, 50) - p(odst, 50),
      'ms',
      quick ? 5 : 0.3,
    );
    report.atMost(
      `added latency p99 @${RATE} rps (ext_proc filter + sandbox-extproc; both sides ORIGINAL_DST)`,
      p(ours, 99) - p(odst, 99),
      'ms',
      quick ? 30 : 1.5,
    );
    for (const floor of floors) {
      report.info(`added latency p50 @${RATE} rps, ${floor.name}`, p(floor, 50) - p(odst, 50), 'ms');
      report.info(`added latency p99 @${RATE} rps, ${floor.name}`, p(floor, 99) - p(odst, 99), 'ms');
    }
    report.info(`ORIGINAL_DST cluster's own cost p50 @${RATE} rps (Envoy alone: ORIGINAL_DST - STATIC)`, p(odst, 50) - p(statik, 50), 'ms');
    report.info(`ORIGINAL_DST cluster's own cost p99 @${RATE} rps (Envoy alone: ORIGINAL_DST - STATIC)`, p(odst, 99) - p(statik, 99), 'ms');
    report.info(`added latency p50 @${RATE} rps against a STATIC route (ext_proc + ORIGINAL_DST)`, p(ours, 50) - p(statik, 50), 'ms');
    report.info(`added latency p99 @${RATE} rps against a STATIC route (ext_proc + ORIGINAL_DST)`, p(ours, 99) - p(statik, 99), 'ms');
    report.curve('latency', 'Envoy alone, ORIGINAL_DST', percentileCurve(l.get(odst) ?? []));
    report.curve('latency', 'Envoy + sandbox-extproc', percentileCurve(l.get(ours) ?? []));
    report.curve(
      'latency',
      'Envoy + a bare Go server sending the same answer (the floor)',
      percentileCurve(l.get(floors[2] as Side) ?? []),
    );

    // Saturation: as many requests as 32 workers get through; only 200s count.
    const satRounds = quick ? 1 : 3;
    const satSeconds = quick ? 3 : 10;
    const saturation = await interleaved(satRounds, (side) => httpLoad(side.envoy.url, headers, { seconds: satSeconds, workers: 32 }));
    const throughput = (side: Side) => {
      const runs = saturation.get(side) ?? [];
      return runs.reduce((n, r) => n + r.ok, 0) / runs.reduce((n, r) => n + r.seconds, 0);
    };
    for (const side of sides) report.info(`saturation, ${side.name}`, throughput(side), 'req/s answered 200');
    report.atLeast(
      'saturation ratio (Envoy + sandbox-extproc / Envoy alone, both ORIGINAL_DST)',
      throughput(ours) / throughput(odst),
      'ratio',
      quick ? 0.2 : 0.6,
    );
    report.info('saturation ratio against a STATIC route', throughput(ours) / throughput(statik), 'ratio');
    for (const floor of floors) report.info(`saturation ratio, ${floor.name}`, throughput(floor) / throughput(odst), 'ratio');
  } finally {
    await cleanup.run();
  }
}
