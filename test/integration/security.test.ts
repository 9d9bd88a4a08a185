// Security properties on real processes: no client can choose an upstream even when the service fails,
// is slow or is gone; the gRPC listener's TLS and mTLS; the stream limit answered clearly; tokens kept
// out of logs.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBrokenProcessor } from '../support/broken-processor.ts';
import { grpcTlsArgs, makeCerts, type CertPaths } from '../support/certs.ts';
import { startEnvoy } from '../support/envoy.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { httpGet } from '../support/http.ts';
import { startService } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let dir: string;
let routes: string;
let victim: Upstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-sec-'));
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 127.0.0.71 }]\n');
  victim = await startUpstream('victim', '127.0.0.72');
});

afterAll(async () => {
  await victim?.close();
});

const headers = (id: string, extra: Record<string, string> = {}) => ({
  request_headers: {
    headers: { headers: Object.entries({ 'e2b-sandbox-id': id, ...extra }).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
  },
});

describe('no client can choose the upstream', () => {
  it.each([
    ['fails every stream', 'fail' as const, 500],
    ['never answers', 'silent' as const, 504],
  ])('when the processor %s (%s), Envoy answers %i itself and the spoofed upstream gets nothing', async (_what, behaviour, status) => {
    const broken = await startBrokenProcessor(behaviour);
    const envoy = await startEnvoy({ extprocPort: broken.port, messageTimeout: '0.5s' });
    try {
      const before = victim.received.length;
      const res = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'sbx', 'x-envoy-original-dst-host': `127.0.0.72:${victim.port}` });
      expect(res.status).toBe(status);
      expect(victim.received.length).toBe(before);
    } finally {
      await envoy.stop();
      broken.stop();
    }
  });
});

describe('gRPC listener TLS', () => {
  let certs: CertPaths;
  beforeAll(() => {
    certs = makeCerts(mkdtempSync(join(tmpdir(), 'sbx-tls-')));
  });
  const tlsArgs = (mtls: boolean) => grpcTlsArgs(certs, mtls);

  it('serves TLS clients that trust its CA, and refuses plaintext', async () => {
    const service = await startService(['--route-source', 'file', '--routes-file', routes, ...tlsArgs(false)]);
    const address = `127.0.0.1:${service.listening.grpcPort}`;
    const tls = new ExtProcClient(address, credentials.createSsl(readFileSync(certs.caCert)));
    const plain = new ExtProcClient(address);
    try {
      expect((await tls.exchange([headers('sbx')], { closeAfter: 1 })).responses).toHaveLength(1);
      expect((await plain.exchange([headers('sbx')], { closeAfter: 1 })).status.code).not.toBe(0);
    } finally {
      tls.close();
      plain.close();
      await service.stop();
    }
  });

  it('with mTLS, refuses a client without a certificate signed by the client CA', async () => {
    const service = await startService(['--route-source', 'file', '--routes-file', routes, ...tlsArgs(true)]);
    const address = `127.0.0.1:${service.listening.grpcPort}`;
    const withCert = new ExtProcClient(
      address,
      credentials.createSsl(readFileSync(certs.caCert), readFileSync(certs.adminKey), readFileSync(certs.adminCert)),
    );
    const without = new ExtProcClient(address, credentials.createSsl(readFileSync(certs.caCert)));
    try {
      expect((await withCert.exchange([headers('sbx')], { closeAfter: 1 })).responses).toHaveLength(1);
      const refused = await without.exchange([headers('sbx')], { closeAfter: 1 });
      expect(refused.responses).toHaveLength(0);
      expect(refused.status.code).not.toBe(0);
    } finally {
      withCert.close();
      without.close();
      await service.stop();
    }
  });

  it('stops at start-up naming the setting when a TLS file is missing', async () => {
    await expect(
      startService([
        '--route-source',
        'file',
        '--routes-file',
        routes,
        '--grpc-tls-cert',
        '/missing.crt',
        '--grpc-tls-key',
        certs.serverKey,
      ]),
    ).rejects.toThrow('--grpc-tls-cert');
  });
});

describe('limits', () => {
  it('answers 503 overloaded when the stream limit is reached, and serves again when streams close', async () => {
    const service = await startService(['--route-source', 'file', '--routes-file', routes, '--max-streams', '2']);
    const client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
    try {
      // Two streams that stay open fill the limit; each is known open once the service answered it,
      // and both are cancelled when the test says so (the cancels reach the service on the same
      // connection before the next stream does).
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const answered = [0, 1].map(() => Promise.withResolvers<void>());
      const open = answered.map((a) =>
        client.exchange([headers('sbx')], { closeAfter: 99, cancelWhen: released, onResponse: () => a.resolve() }),
      );
      await Promise.all(answered.map((a) => a.promise));
      const third = await client.exchange([headers('sbx')], { closeAfter: 1 });
      expect(third.responses[0]?.immediate_response?.status?.code).toBe(503);
      expect(third.responses[0]?.immediate_response?.body?.toString()).toContain('overloaded');
      release();
      expect((await Promise.all(open)).map((r) => r.status.code)).toEqual([1, 1]); // CANCELLED
      const after = await client.exchange([headers('sbx')], { closeAfter: 1 });
      expect(after.responses).toHaveLength(1);
      expect(JSON.stringify(after.responses[0]?.dynamic_metadata)).toContain('127.0.0.71:49983');
    } finally {
      client.close();
      await service.stop();
    }
  });
});

describe('tokens', () => {
  it('never appear in logs, even at trace level', async () => {
    const lines: string[] = [];
    const { app, listening } = await startService(
      ['--route-source', 'file', '--routes-file', routes, '--log-level', 'trace'],
      {},
      {
        logs: (l) => lines.push(l),
      },
    );
    const client = new ExtProcClient(`127.0.0.1:${listening.grpcPort}`);
    try {
      await client.exchange([headers('sbx', { 'x-access-token': 'super-secret-token-value' })], { closeAfter: 1 });
      await client.exchange([headers('other', { 'x-access-token': 'super-secret-token-value' })], { closeAfter: 1 });
    } finally {
      client.close();
      await app.stop();
    }
    expect(lines.join('')).toContain('request decided');
    expect(lines.join('')).not.toContain('super-secret-token-value');
  });
});
