// Each method has its own largest message (issue 24): ext_proc runs headers only (256 KiB by default),
// Envoy's access log batches may be larger (1 MiB), a health check names one service (16 KiB). A
// message past its method's limit is refused RESOURCE_EXHAUSTED from its 5-byte prefix alone.
import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import type { Answers } from '../../../src/protocol/answers.ts';
import { ACCESS_LOG_PATH } from '../../../src/protocol/access-log.ts';
import { EXT_PROC_PATH } from '../../../src/protocol/proto.ts';
import { GrpcServer } from '../../../src/server/grpc-server.ts';
import type { RequestProcessor } from '../../../src/server/processor.ts';
import { grpcMessage } from '../../support/h2-frames.ts';

let server: GrpcServer;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  server = new GrpcServer({
    // Never reached: every message here is refused or fails before a decision.
    processor: {} as RequestProcessor,
    answers: {} as Answers,
    logger: createLogger('silent'),
    metrics: createMetrics(() => ({ running: 0, paused: 0, creating: 0, available: 0, dead: 0 })),
    maxStreams: 10,
    onActivity: () => undefined,
    limits: {
      bufferBytes: 16 * 1024 * 1024,
      serverBufferBytes: 64 * 1024 * 1024,
      maxConnections: 10,
      firstMessageTimeoutMs: 10_000,
      emptyStreamsPerSecond: 100,
      keepaliveIntervalMs: 0,
      keepaliveTimeoutMs: 1000,
      maxExtProcMessageBytes: 256 * 1024,
      maxAccessLogMessageBytes: 1024 * 1024,
    },
  });
  await server.listen({ tls: undefined, tcp: true, host: '127.0.0.1', port: 0, socket: '', socketMode: 0o600, untrustedResetLimit: 100 });
  session = http2.connect(`http://127.0.0.1:${server.tcpPort}`);
});

afterAll(async () => {
  session?.destroy();
  await server?.shutdown(0);
});

/** Sends a 5-byte prefix announcing `length` bytes and as many bytes of garbage; resolves with the call's status. */
function announce(path: string, length: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    let found: string | undefined;
    stream.on('response', (h) => (found ??= h['grpc-status'] as string | undefined));
    stream.on('trailers', (h) => (found ??= h['grpc-status'] as string | undefined));
    stream.on('close', () => resolve(found));
    stream.resume();
    stream.end(grpcMessage(Buffer.alloc(length, 0xff)));
  });
}

describe('message size limits per method', () => {
  it('the access log takes messages up to 1 MiB, past ext_proc’s 256 KiB (they reach the decoder)', async () => {
    expect(await announce(ACCESS_LOG_PATH, 600 * 1024)).toBe('3'); // INVALID_ARGUMENT: garbage, but read
  });

  it('the access log refuses one byte more than 1 MiB (RESOURCE_EXHAUSTED)', async () => {
    expect(await announce(ACCESS_LOG_PATH, 1024 * 1024 + 1)).toBe('8');
  });

  it('ext_proc refuses one byte more than 256 KiB (RESOURCE_EXHAUSTED)', async () => {
    expect(await announce(EXT_PROC_PATH, 256 * 1024 + 1)).toBe('8');
  });

  it('a health check refuses more than 16 KiB (RESOURCE_EXHAUSTED)', async () => {
    expect(await announce('/grpc.health.v1.Health/Check', 16 * 1024 + 1)).toBe('8');
  });
});
