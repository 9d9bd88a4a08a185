// The hand-written gRPC transport (src/server/grpc-transport.ts, grpc-wire.ts), proven against a raw
// HTTP/2 client that can do what Envoy or a broken peer does, against a grpc-js client, and against
// real Envoy's gRPC health checking. Owning the protocol means every one of these must hold:
// framing across and within DATA frames, grpc-timeout, RST_STREAM from either side, trailers and
// trailers-only errors, GOAWAY and graceful shutdown, pings, flow control with large messages, unknown
// methods, bad content types, compressed messages.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http2, { type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, status, type ServiceError } from '@grpc/grpc-js';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessingRequest, ProcessingResponse } from '../../src/protocol/messages.ts';
import { decodeResponse, encodeRequest } from '../../src/protocol/proto.ts';
import { grpcMessage } from '../support/h2-frames.ts';
import { LineFifo } from '../support/line-fifo.ts';
import { startEnvoy } from '../support/envoy.ts';
import { startService, type RunningService } from '../support/service.ts';

const PROCESS = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
let dir: string;
let routes: string;
let service: RunningService;
let session: ClientHttp2Session;

const named = (id: string): ProcessingRequest => ({
  request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] }, end_of_stream: true },
});

interface RawResult {
  readonly headers: http2.IncomingHttpHeaders;
  /** The ext_proc answers received (decoded only for the ext_proc method). */
  readonly messages: ProcessingResponse[];
  readonly frames: Buffer[];
  readonly trailers: http2.IncomingHttpHeaders | undefined;
  readonly closeCode: number;
}

/** Opens a raw stream; `drive` writes to it; resolves when the stream closes, with all it received. */
function raw(
  path: string,
  drive: (stream: ClientHttp2Stream) => void | Promise<void>,
  headers: http2.OutgoingHttpHeaders = {},
  on: { session?: ClientHttp2Session } = {},
): Promise<RawResult> {
  const stream = (on.session ?? session).request({
    ':method': 'POST',
    ':path': path,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...headers,
  });
  return new Promise((resolve, reject) => {
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (responseHeaders = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      const all = Buffer.concat(chunks);
      const frames: Buffer[] = [];
      for (let offset = 0; offset + 5 <= all.length;) {
        const length = all.readUInt32BE(offset + 1);
        frames.push(all.subarray(offset + 5, offset + 5 + length));
        offset += 5 + length;
      }
      // Only a gRPC answer (HTTP 200) carries messages; a 415 carries a line of text.
      const messages = path === PROCESS && Number(responseHeaders[':status']) === 200 ? frames.map((f) => decodeResponse(f)) : [];
      resolve({ headers: responseHeaders, messages, frames, trailers, closeCode: stream.rstCode ?? 0 });
    });
    Promise.resolve(drive(stream)).catch(reject);
  });
}

const grpcStatus = (r: RawResult) => r.trailers?.['grpc-status'] ?? r.headers['grpc-status'];
/** Resolves after the socket has taken the bytes, so the next write becomes its own DATA frame. */
const flushed = (stream: ClientHttp2Stream, bytes: Buffer) =>
  new Promise<void>((resolve) => stream.write(bytes, () => setImmediate(resolve)));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-transport-'));
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 10.9.9.9 }]\n');
  service = await startService(['--route-source', 'file', '--routes-file', routes]);
  session = http2.connect(`http://127.0.0.1:${service.listening.grpcPort}`);
});

afterAll(async () => {
  session?.close();
  await service?.stop();
});

describe('framing', () => {
  it('reassembles a message split across many DATA frames', async () => {
    const bytes = grpcMessage(encodeRequest(named('sbx')));
    const result = await raw(PROCESS, async (stream) => {
      for (const byte of bytes) await flushed(stream, Buffer.from([byte]));
      stream.end();
    });
    expect(grpcStatus(result)).toBe('0');
    expect(JSON.stringify(result.messages[0]?.dynamic_metadata)).toContain('10.9.9.9:49983');
  });

  it('reads several messages from one DATA frame, in order', async () => {
    const both = Buffer.concat([
      grpcMessage(encodeRequest(named('sbx'))),
      grpcMessage(encodeRequest({ response_headers: { headers: { headers: [] } } })),
    ]);
    const result = await raw(PROCESS, (stream) => void stream.end(both));
    expect(result.messages.map((m) => Object.keys(m).find((k) => k !== 'response' && k !== 'dynamic_metadata'))).toEqual([
      'request_headers',
      'response_headers',
    ]);
    expect(grpcStatus(result)).toBe('0');
  });

  it('takes a 200 KB message through HTTP/2 flow control (far past the 64 KB initial window)', async () => {
    const headers = Array.from({ length: 400 }, (_, i) => ({ key: `x-big-${i}`, raw_value: Buffer.alloc(500, 'a') }));
    const big = grpcMessage(
      encodeRequest({ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from('sbx') }, ...headers] } } }),
    );
    expect(big.length).toBeGreaterThan(200_000);
    const result = await raw(PROCESS, (stream) => void stream.end(big));
    expect(grpcStatus(result)).toBe('0');
    expect(JSON.stringify(result.messages[0]?.dynamic_metadata)).toContain('10.9.9.9');
  });

  it('refuses an ext_proc message above --grpc-max-ext-proc-message (256 KiB) with RESOURCE_EXHAUSTED, from its prefix alone', async () => {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(256 * 1024 + 1, 1);
    const result = await raw(PROCESS, (stream) => void stream.write(prefix));
    expect(grpcStatus(result)).toBe(String(status.RESOURCE_EXHAUSTED));
    expect(result.trailers?.['grpc-message'] ?? result.headers['grpc-message']).toContain('262145');
  });

  it('refuses a message with the compressed flag but no grpc-encoding with INTERNAL, as the gRPC spec asks', async () => {
    const result = await raw(PROCESS, (stream) => void stream.end(grpcMessage(encodeRequest(named('sbx')), 1)));
    expect(grpcStatus(result)).toBe(String(status.INTERNAL));
  });

  it('refuses a grpc-encoding it does not support with UNIMPLEMENTED, naming what it accepts (grpc-accept-encoding)', async () => {
    const result = await raw(PROCESS, (stream) => void stream.end(grpcMessage(encodeRequest(named('sbx')))), { 'grpc-encoding': 'gzip' });
    expect(result.headers['grpc-status']).toBe(String(status.UNIMPLEMENTED));
    expect(result.headers['grpc-accept-encoding']).toBe('identity');
    expect(result.messages).toHaveLength(0);
  });

  it('ends a stream that stops in the middle of a message with INTERNAL', async () => {
    const bytes = grpcMessage(encodeRequest(named('sbx')));
    const result = await raw(PROCESS, (stream) => void stream.end(bytes.subarray(0, bytes.length - 2)));
    expect(grpcStatus(result)).toBe(String(status.INTERNAL));
  });
});

describe('statuses, trailers and methods', () => {
  it('ends a normal call with grpc-status 0 in trailers after its messages', async () => {
    const result = await raw(PROCESS, (stream) => void stream.end(grpcMessage(encodeRequest(named('sbx')))));
    expect(result.headers[':status']).toBe(200);
    expect(result.headers['content-type']).toBe('application/grpc');
    expect(result.headers['grpc-status']).toBeUndefined();
    expect(result.trailers?.['grpc-status']).toBe('0');
  });

  it('ends a broken call with its status in trailers after the answers already sent', async () => {
    const twice = Buffer.concat([grpcMessage(encodeRequest(named('sbx'))), grpcMessage(encodeRequest(named('sbx')))]);
    const result = await raw(PROCESS, (stream) => void stream.end(twice));
    expect(result.messages).toHaveLength(1);
    expect(result.trailers?.['grpc-status']).toBe(String(status.FAILED_PRECONDITION));
    expect(result.trailers?.['grpc-message']).toContain('request_headers');
  });

  it('answers an unknown method trailers-only with UNIMPLEMENTED, to a raw client and to grpc-js', async () => {
    const result = await raw('/no.Such/Method', (stream) => void stream.end(grpcMessage(Buffer.alloc(0))));
    expect(result.headers['grpc-status']).toBe(String(status.UNIMPLEMENTED));
    expect(result.trailers).toBeUndefined();
    const Client = makeGenericClientConstructor(
      {
        Nope: {
          path: '/no.Such/Method',
          requestStream: false,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      'Nope',
    );
    const client = new Client(`127.0.0.1:${service.listening.grpcPort}`, credentials.createInsecure()) as unknown as {
      Nope(req: Buffer, cb: (e: ServiceError | null) => void): void;
      close(): void;
    };
    const error = await new Promise<ServiceError | null>((resolve) => client.Nope(Buffer.alloc(0), resolve));
    client.close();
    expect(error?.code).toBe(status.UNIMPLEMENTED);
  });

  it('answers a request that is not gRPC (content type, method) with HTTP 415', async () => {
    const wrongType = await raw(PROCESS, (stream) => void stream.end(), { 'content-type': 'application/json' });
    expect(wrongType.headers[':status']).toBe(415);
    const get = await new Promise<number>((resolve) => {
      const stream = session.request({ ':method': 'GET', ':path': PROCESS });
      stream.on('response', (h) => resolve(h[':status'] as number));
      stream.on('error', () => undefined);
      stream.end();
    });
    expect(get).toBe(415);
  });
});

describe('deadlines, cancellation and pings', () => {
  it('ends a call at its grpc-timeout with DEADLINE_EXCEEDED', async () => {
    // A health Watch stays open until the client leaves: the client's deadline ends it.
    const started = Date.now();
    const result = await raw('/grpc.health.v1.Health/Watch', (stream) => void stream.end(grpcMessage(Buffer.alloc(0))), {
      'grpc-timeout': '300m',
    });
    expect(grpcStatus(result)).toBe(String(status.DEADLINE_EXCEEDED));
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('frees a stream the client resets (RST_STREAM CANCEL), and goes on serving the connection', async () => {
    const metrics = async () =>
      (await (await fetch(`http://127.0.0.1:${service.listening.httpPort}/metrics`)).text()).match(
        /^sandbox_extproc_streams_active (\d+)/m,
      )?.[1];
    const opened = session.request({ ':method': 'POST', ':path': PROCESS, 'content-type': 'application/grpc', te: 'trailers' });
    opened.on('error', () => undefined);
    // The stream is open on the server once its answer to a first message arrives.
    await new Promise<void>((resolve) => {
      opened.once('data', () => resolve());
      opened.write(grpcMessage(encodeRequest(named('sbx'))));
    });
    expect(await metrics()).toBe('1');
    opened.close(http2.constants.NGHTTP2_CANCEL);
    // Frames on one connection are handled in order: once a later call is answered, the reset was seen.
    const after = await raw(PROCESS, (stream) => void stream.end(grpcMessage(encodeRequest(named('sbx')))));
    expect(grpcStatus(after)).toBe('0');
    expect(await metrics()).toBe('0');
  });

  it('answers HTTP/2 pings (keepalive) on the connection', async () => {
    const ms = await new Promise<number>((resolve, reject) =>
      session.ping((error, duration) => (error ? reject(error) : resolve(duration))),
    );
    expect(ms).toBeGreaterThanOrEqual(0);
  });
});

describe('GOAWAY and graceful shutdown', () => {
  it('sends GOAWAY, lets an open call finish within the grace, refuses new ones, then stops', async () => {
    const own = await startService(['--route-source', 'file', '--routes-file', routes, '--shutdown-grace', '5s']);
    const client = http2.connect(`http://127.0.0.1:${own.listening.grpcPort}`);
    try {
      const goaway = new Promise<void>((resolve) => client.once('goaway', () => resolve()));
      // An ext_proc call the client keeps open (no half-close yet), answered once.
      const open = client.request({ ':method': 'POST', ':path': PROCESS, 'content-type': 'application/grpc', te: 'trailers' });
      open.on('error', () => undefined);
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => open.on('trailers', resolve));
      await new Promise<void>((resolve) => {
        open.once('data', () => resolve());
        open.write(grpcMessage(encodeRequest(named('sbx'))));
      });
      const started = Date.now();
      const stopped = own.stop();
      await goaway;
      // Still served: a second message on the open call is answered during the grace.
      await new Promise<void>((resolve) => {
        open.once('data', () => resolve());
        open.write(grpcMessage(encodeRequest({ response_headers: { headers: { headers: [] } } })));
      });
      open.end();
      expect((await trailers)['grpc-status']).toBe('0');
      await stopped;
      // The open call finishing ended the grace early: no waiting for the full 5 s.
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      client.close();
    }
  });
});

describe('with real Envoy', () => {
  it('Envoy’s gRPC health check sees the service SERVING, and NOT_SERVING once it drains', async () => {
    const own = await startService(['--route-source', 'file', '--routes-file', routes, '--drain-delay', '10s']);
    // Envoy writes health-check events to a file: a FIFO, read line by line as they come.
    const health = new LineFifo(join(dir, 'health-events'));
    const fifo = health.path;
    const event = (pattern: RegExp, timeoutMs: number) => health.waitFor((e) => pattern.test(e), timeoutMs, `health event ${pattern}`);
    const envoy = await startEnvoy({
      extprocPort: own.listening.grpcPort as number,
      transform: (yaml) => {
        const config = parseYaml(yaml) as { static_resources: { clusters: { name: string; health_checks?: unknown }[] } };
        const cluster = config.static_resources.clusters.find((c) => c.name === 'sandbox_extproc');
        if (cluster === undefined) throw new Error('envoy.yaml: no sandbox_extproc cluster');
        cluster.health_checks = [
          {
            timeout: '1s',
            interval: '0.2s',
            no_traffic_interval: '0.2s',
            no_traffic_healthy_interval: '0.2s',
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            grpc_health_check: { service_name: 'envoy.service.ext_proc.v3.ExternalProcessor' },
            event_logger: [
              {
                name: 'envoy.health_check.event_sinks.file',
                typed_config: {
                  '@type': 'type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink',
                  event_log_path: fifo,
                },
              },
            ],
          },
        ];
        return stringifyYaml(config);
      },
    });
    try {
      await event(/add_healthy_event/, 10_000);
      const draining = own.stop();
      await event(/eject_unhealthy_event|health_check_failure_event/, 10_000);
      await draining;
    } finally {
      await envoy.stop();
    }
  }, 40_000);
});
