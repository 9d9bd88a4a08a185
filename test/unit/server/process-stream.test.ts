// The stream loop against a real gRPC server on loopback: the protocol as Envoy speaks it, and the ways
// a peer can break it. The server must answer safely, end bad streams with a status, and never crash.
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExtProcClient } from '../../support/extproc-client.ts';
import { startService, type RunningService } from '../../support/service.ts';

let service: RunningService;
let client: ExtProcClient;
let socketPath: string;
let routesPath: string;

const headers = (pairs: Record<string, string>) => ({
  request_headers: {
    headers: { headers: Object.entries(pairs).map(([key, v]) => ({ key, raw_value: Buffer.from(v) })) },
    end_of_stream: true,
  },
});

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-stream-'));
  const routes = (routesPath = join(dir, 'routes.yaml'));
  writeFileSync(routes, 'routes:\n  - { id: sbx-1, podIP: 10.1.2.3 }\n');
  socketPath = join(dir, 'extproc.sock');
  service = await startService([
    '--route-source',
    'file',
    '--routes-file',
    routes,
    '--grpc-socket',
    socketPath,
    '--grpc-socket-mode',
    '0600',
  ]);
  client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await service?.stop();
});

describe('the ext_proc stream', () => {
  it('answers request_headers with the forward answer and ends normally on half-close', async () => {
    const { responses, status: s } = await client.exchange([headers({ 'e2b-sandbox-id': 'sbx-1', 'e2b-sandbox-port': '8080' })], {
      closeAfter: 1,
    });
    expect(s.code).toBe(status.OK);
    expect(JSON.stringify(responses[0]?.dynamic_metadata)).toContain('10.1.2.3:8080');
  });

  it('answers an error in place of the upstream', async () => {
    const { responses } = await client.exchange([headers({ 'e2b-sandbox-id': 'nope' })], { closeAfter: 1 });
    expect(responses[0]?.immediate_response?.status?.code).toBe(502);
  });

  it('answers messages it did not ask for with a harmless CONTINUE of the same kind', async () => {
    const { responses, status: s } = await client.exchange(
      [
        headers({ 'e2b-sandbox-id': 'sbx-1' }),
        { request_body: { body: Buffer.from('x'), end_of_stream: true } },
        { response_headers: { headers: { headers: [] } } },
      ],
      { closeAfter: 3 },
    );
    expect(s.code).toBe(status.OK);
    expect(responses.map((r) => Object.keys(r).find((k) => k !== 'response' && k !== 'dynamic_metadata'))).toEqual([
      'request_headers',
      'request_body',
      'response_headers',
    ]);
  });

  it('ends a stream that sends request_headers twice with FAILED_PRECONDITION', async () => {
    const { status: s } = await client.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' }), headers({ 'e2b-sandbox-id': 'sbx-1' })], {
      closeAfter: 99,
    });
    expect(s.code).toBe(status.FAILED_PRECONDITION);
  });

  it('ends a stream whose message carries nothing with INVALID_ARGUMENT', async () => {
    const { status: s } = await client.exchange([{}], { closeAfter: 99 });
    expect(s.code).toBe(status.INVALID_ARGUMENT);
  });

  it('survives garbage bytes and keeps serving', async () => {
    const { status: s } = await client.exchange([Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01, 0x02])], { raw: true, closeAfter: 99 });
    expect(s.code).not.toBe(status.OK);
    const { responses } = await client.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], { closeAfter: 1 });
    expect(responses).toHaveLength(1);
  });

  // With room for one request, whether a stream counts is visible from outside: the next request is
  // either served or answered 503 overloaded. Streams on one connection reach the server in order.
  const limitedService = () =>
    startService(['--route-source', 'file', '--routes-file', routesPath, '--max-streams', '1', '--shutdown-grace', '0s']);

  it('frees the slot of a client that cancels after its answer', async () => {
    const limited = await limitedService();
    const one = new ExtProcClient(`127.0.0.1:${limited.listening.grpcPort}`);
    try {
      const release = Promise.withResolvers<void>();
      const answered = Promise.withResolvers<void>();
      const first = one.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], {
        closeAfter: 99,
        cancelWhen: release.promise,
        onResponse: () => answered.resolve(),
      });
      await answered.promise;
      const second = await one.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], { closeAfter: 1 });
      expect(second.responses[0]?.immediate_response?.body?.toString()).toContain('overloaded');
      release.resolve();
      expect((await first).status.code).toBe(status.CANCELLED);
      const third = await one.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], { closeAfter: 1 });
      expect(JSON.stringify(third.responses[0]?.dynamic_metadata)).toContain('10.1.2.3:49983');
    } finally {
      one.close();
      await limited.stop();
    }
  });

  it('never counts a stream that has sent no request toward --max-streams (issue 24: idle streams caused 503s)', async () => {
    const limited = await limitedService();
    const one = new ExtProcClient(`127.0.0.1:${limited.listening.grpcPort}`);
    try {
      const release = Promise.withResolvers<void>();
      const idle = one.exchange([], { closeAfter: 99, cancelWhen: release.promise });
      const served = await one.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], { closeAfter: 1 });
      expect(JSON.stringify(served.responses[0]?.dynamic_metadata)).toContain('10.1.2.3:49983');
      release.resolve();
      expect((await idle).status.code).toBe(status.CANCELLED);
    } finally {
      one.close();
      await limited.stop();
    }
  });

  it('stays silent in observability mode', async () => {
    const { responses, status: s } = await client.exchange([{ ...headers({ 'e2b-sandbox-id': 'sbx-1' }), observability_mode: true }]);
    expect(s.code).toBe(status.OK);
    expect(responses).toHaveLength(0);
  });
});

describe('listeners', () => {
  it('serves on the Unix socket with the configured file mode', async () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    const unixClient = new ExtProcClient(`unix://${socketPath}`);
    const { responses } = await unixClient.exchange([headers({ 'e2b-sandbox-id': 'sbx-1' })], { closeAfter: 1 });
    unixClient.close();
    expect(JSON.stringify(responses[0]?.dynamic_metadata)).toContain('10.1.2.3');
  });

  it('reports SERVING on grpc.health.v1 once routes are loaded', async () => {
    const Health = makeGenericClientConstructor(
      {
        Check: {
          path: '/grpc.health.v1.Health/Check',
          requestStream: false,
          responseStream: false,
          // HealthCheckRequest{service=1}: an empty message asks about the server as a whole.
          requestSerialize: () => Buffer.alloc(0),
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'Health',
    );
    const health = new Health(`127.0.0.1:${service.listening.grpcPort}`, credentials.createInsecure()) as unknown as {
      Check(req: object, cb: (e: Error | null, r: Buffer) => void): void;
      close(): void;
    };
    const reply = await new Promise<Buffer>((resolve, reject) => health.Check({}, (e, r) => (e ? reject(e) : resolve(r))));
    health.close();
    // HealthCheckResponse{status=1: SERVING=1}
    expect([...reply]).toEqual([0x08, 0x01]);
  });

  it('serves /healthz, /readyz and /metrics', async () => {
    const base = `http://127.0.0.1:${service.listening.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('sandbox_extproc_requests_total{outcome="forward"}');
    expect(metrics).toContain('sandbox_extproc_routes{state="running"} 1');
    expect(metrics).toContain('sandbox_extproc_decision_duration_seconds_bucket');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});
