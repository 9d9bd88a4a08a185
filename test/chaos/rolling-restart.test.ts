// Chaos (npm run test:chaos): two service replicas behind one Envoy (gRPC health-checked), restarted one
// after the other under load. A replica draining on SIGTERM turns NOT_SERVING, keeps serving for
// --drain-delay while Envoy's health check moves traffic away, then stops: zero failed requests, every
// request sent accounted for (answered, or a transport error). Bounded: 25 s of load at 300 requests/s,
// on loopback only.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeLoad, httpLoad } from '../bench/http-load.ts';
import { LineFifo } from '../support/line-fifo.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { freePort } from '../support/ports.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const SECONDS = 25;
const RATE = 300;

/** envoy/envoy.yaml with a second ext_proc endpoint and an active gRPC health check. */
function twoReplicas(rendered: string, ports: readonly number[], eventLog: string): string {
  const config = parseYaml(rendered) as Yaml;
  const cluster = config['static_resources'].clusters.find((c: Yaml) => c['name'] === 'sandbox_extproc');
  cluster.load_assignment.endpoints[0].lb_endpoints = ports.map((port) => ({
    endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } },
  }));
  // Health events go to stdout, so the test can wait for Envoy to see a replica healthy again.
  cluster.health_checks = [
    {
      timeout: '0.5s',
      interval: '0.2s',
      // Check at the same pace when the cluster is idle (Envoy's default there is 60 s).
      no_traffic_interval: '0.2s',
      no_traffic_healthy_interval: '0.2s',
      unhealthy_threshold: 1,
      healthy_threshold: 1,
      grpc_health_check: {},
      event_logger: [
        {
          name: 'envoy.health_check.event_sinks.file',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink',
            event_log_path: eventLog,
          },
        },
      ],
    },
  ];
  return stringifyYaml(config);
}

let routes: string;
let dir: string;
let upstream: Upstream;
let ports: number[];
let replicas: ServiceProcess[];
let envoy: RunningEnvoy;
/** Envoy's health-check events, read from a FIFO as they are written. */
let healthEvents: LineFifo;

const args = () => ['--route-source', 'file', '--routes-file', routes, '--drain-delay', '3s', '--shutdown-grace', '5s'];

beforeAll(async () => {
  upstream = await startUpstream('sandbox', '127.0.0.95');
  dir = mkdtempSync(join(tmpdir(), 'sbx-roll-'));
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 127.0.0.95 }]\n');
  ports = [await freePort(), await freePort()];
  replicas = await Promise.all(ports.map((port) => startServiceProcess([...args(), '--grpc-port', String(port)])));
  healthEvents = new LineFifo(join(dir, 'health-events'));
  envoy = await startEnvoy({ extprocPort: ports[0] as number, transform: (y) => twoReplicas(y, ports, healthEvents.path) });
});

afterAll(async () => {
  await envoy?.stop();
  for (const r of replicas ?? []) await r.stop();
  await upstream?.close();
});

describe('graceful rolling restart of two replicas under load', () => {
  it('fails no request', async () => {
    const load = httpLoad(
      envoy.url,
      { 'e2b-sandbox-id': 'sbx', 'e2b-sandbox-port': String(upstream.port) },
      { seconds: SECONDS, rate: RATE },
    );
    for (let i = 0; i < replicas.length; i += 1) {
      const port = ports[i] as number;
      await (replicas[i] as ServiceProcess).stop();
      const restarted = Date.now();
      replicas[i] = await startServiceProcess([...args(), '--grpc-port', String(port)]);
      // Envoy must see the new replica healthy before the next one goes.
      const healthy = (line: string) => {
        if (!line.includes('add_healthy_event') || !line.includes(`"port_value":${port}`)) return false;
        return Date.parse((JSON.parse(line) as { timestamp: string }).timestamp) >= restarted;
      };
      await healthEvents.waitFor(healthy, 10_000, `replica ${port} healthy again`);
    }
    const result = await load;
    console.log(`chaos: rolling restart: ${describeLoad(result)}`);
    // vegeta paces requests to the rate; a run may end one or two short of rate x seconds.
    expect(result.sent, describeLoad(result)).toBeGreaterThanOrEqual(SECONDS * RATE * 0.99);
    expect(result.failed, describeLoad(result)).toBe(0);
  });
});
