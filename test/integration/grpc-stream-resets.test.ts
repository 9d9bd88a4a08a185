// Regression guard for issue #12: Envoy ends every ext_proc stream with RST_STREAM, and Node's HTTP/2
// rapid-reset guard closed the connection (GOAWAY) after about 1,000 of them; the fix once applied
// only to plaintext servers, so with TLS Envoy's connection died every ~1,000 requests. Through the real
// Envoy on TLS and mTLS: 2,500 requests ride one connection. And the guard still protects listeners
// whose peers are neither authenticated nor local.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { grpcTlsArgs, makeCerts, type CertPaths } from '../support/certs.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const REQUESTS = 2_500;
let dir: string;
let certs: CertPaths;
let routes: string;
let upstream: Upstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-resets-'));
  certs = makeCerts(dir);
  upstream = await startUpstream('sbx', '127.0.0.95');
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 127.0.0.95 }]\n');
});

afterAll(async () => {
  await upstream?.close();
});

/** Envoy's ext_proc cluster speaking TLS to the service, presenting a client certificate for mTLS. */
function upstreamTls(mtls: boolean): (yaml: string) => string {
  const socket = [
    '      transport_socket:',
    '        name: envoy.transport_sockets.tls',
    '        typed_config:',
    '          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    '          common_tls_context:',
    '            alpn_protocols: [h2]',
    `            validation_context: { trusted_ca: { filename: ${certs.caCert} } }`,
    ...(mtls
      ? [
          `            tls_certificates: [{ certificate_chain: { filename: ${certs.adminCert} }, private_key: { filename: ${certs.adminKey} } }]`,
        ]
      : []),
  ].join('\n');
  return (yaml) => {
    const anchor = '    - name: sandbox_extproc\n      type: STATIC\n';
    if (!yaml.includes(anchor)) throw new Error('envoy.yaml: the sandbox_extproc cluster moved');
    return yaml.replace(anchor, `${anchor}${socket}\n`);
  };
}

/** Sends `count` requests through Envoy, 20 at a time; returns the statuses that were not 200. */
async function drive(envoy: RunningEnvoy, count: number): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < count) {
        next += 1;
        const res = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'sbx', 'e2b-sandbox-port': String(upstream.port) });
        if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
      }
    }),
  );
  return failures;
}

async function run(serviceArgs: string[], envoyTransform?: (yaml: string) => string) {
  const service: RunningService = await startService(['--route-source', 'file', '--routes-file', routes, ...serviceArgs]);
  const envoy = await startEnvoy({
    extprocPort: service.listening.grpcPort as number,
    ...(envoyTransform ? { transform: envoyTransform } : {}),
  });
  try {
    const failures = await drive(envoy, REQUESTS);
    return { failures, connections: await envoy.stat('cluster.sandbox_extproc.upstream_cx_total') };
  } finally {
    await envoy.stop();
    await service.stop();
  }
}

const tls = (mtls: boolean) => grpcTlsArgs(certs, mtls);

describe('Envoy’s stream resets never cost it the connection', () => {
  it('with mTLS (an authenticated Envoy): 2,500 requests on one connection, none failed', async () => {
    expect(await run(tls(true), upstreamTls(true))).toEqual({ failures: [], connections: 1 });
  });

  it('with server-only TLS: 2,500 requests on one connection, within the untrusted limit', async () => {
    expect(await run(tls(false), upstreamTls(false))).toEqual({ failures: [], connections: 1 });
  });

  it('on a loopback listener (a sidecar), the untrusted limit does not apply', async () => {
    expect(await run(['--grpc-stream-reset-limit', '200'])).toEqual({ failures: [], connections: 1 });
  });
});

describe('the rapid-reset guard stays on for peers that are neither authenticated nor local', () => {
  it('closes a connection that resets more streams than --grpc-stream-reset-limit', async () => {
    const { connections } = await run(['--grpc-host', '0.0.0.0', '--grpc-stream-reset-limit', '200']);
    expect(connections).toBeGreaterThan(1);
  });
});
