// Settings that change how Envoy and the service meet, through the real Envoy: the gRPC listener on a
// Unix socket only (--grpc-tcp false; Envoy's cluster on a pipe address, as in a sidecar sharing an
// emptyDir), and requests that name no sandbox passed through (--unnamed-requests pass) to whatever
// route Envoy has for them, still stripped of client routing headers.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { startService } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let dir: string;
let routes: string;
let sandbox: Upstream;
let site: Upstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-variants-'));
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 127.0.0.86 }]\n');
  sandbox = await startUpstream('sandbox', '127.0.0.86');
  site = await startUpstream('site', '127.0.0.87');
});

afterAll(async () => {
  await sandbox?.close();
  await site?.close();
});

describe('--grpc-tcp false', () => {
  it('serves Envoy on the Unix socket alone, and listens on no TCP port', async () => {
    const socket = join(dir, 'extproc.sock');
    const service = await startService(['--route-source', 'file', '--routes-file', routes, '--grpc-socket', socket, '--grpc-tcp', 'false']);
    const envoy = await startEnvoy({
      extprocPort: 1, // unused: the cluster's address becomes the socket
      transform: (y) => {
        const config = parseYaml(y) as Yaml;
        const cluster = config['static_resources'].clusters.find((c: Yaml) => c['name'] === 'sandbox_extproc');
        cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address = { pipe: { path: socket } };
        return stringifyYaml(config);
      },
    });
    try {
      expect(service.listening.grpcPort).toBeUndefined();
      const res = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'sbx', 'e2b-sandbox-port': String(sandbox.port) });
      expect(res.status).toBe(200);
      expect(res.json()['upstream']).toBe('sandbox');
    } finally {
      await envoy.stop();
      await service.stop();
    }
  });
});

describe('--unnamed-requests', () => {
  /** envoy.yaml plus a route for /site (no sandbox named) to a static cluster, ahead of the catch-all. */
  const withSite = (y: string) => {
    const config = parseYaml(y) as Yaml;
    const hcm = config['static_resources'].listeners[0].filter_chains[0].filters[0].typed_config;
    hcm.route_config.virtual_hosts[0].routes.unshift({ match: { prefix: '/site' }, route: { cluster: 'site' } });
    config['static_resources'].clusters.push({
      name: 'site',
      type: 'STATIC',
      connect_timeout: '2s',
      load_assignment: {
        cluster_name: 'site',
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: site.host, port_value: site.port } } } }] }],
      },
    });
    return stringifyYaml(config);
  };

  it.each([
    ['pass', 200],
    ['reject', 400],
  ] as const)('%s: a request naming no sandbox is answered %i', async (mode, status) => {
    const service = await startService(['--route-source', 'file', '--routes-file', routes, '--unnamed-requests', mode]);
    const envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number, transform: withSite });
    try {
      const before = site.received.length;
      const res = await httpGet(`${envoy.url}/site/page`, { 'x-envoy-original-dst-host': `${sandbox.host}:${sandbox.port}` });
      expect(res.status).toBe(status);
      if (mode === 'pass') {
        expect(res.json()['upstream']).toBe('site');
        // Passed through unchanged but for the header a client could steer Envoy with.
        expect(site.received.at(-1)?.headers['x-envoy-original-dst-host']).toBeUndefined();
      } else {
        expect(res.json()['error']).toBe('missing_sandbox');
        expect(site.received.length).toBe(before);
      }
      // Requests that name a sandbox are routed as always.
      const named = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'sbx', 'e2b-sandbox-port': String(sandbox.port) });
      expect(named.json()['upstream']).toBe('sandbox');
    } finally {
      await envoy.stop();
      await service.stop();
    }
  });
});
