// Issue 24: the gRPC transport holds against hostile HTTP/2 peers. Each peer here does what any pod
// the network admits could do to the gRPC port, with a raw HTTP/2 client (test/support/h2-frames.ts,
// for frames node:http2 will not send) or node:http2; each test asserts a bound that the transport
// before this issue broke: CPU, resident memory, the answer time of an ordinary request on another
// connection, the process alive. The service runs as its own process (src/cli.ts) wherever CPU or
// memory is measured, so the test's own allocations do not count.
import { mkdtempSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.ts';
import type { ProcessingRequest } from '../../src/protocol/messages.ts';
import { encodeRequest } from '../../src/protocol/proto.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import {
  data,
  ErrorCode,
  Flag,
  FrameType,
  goawayOf,
  grpcMessage,
  grpcRequest,
  headers,
  ping,
  RawH2Connection,
  rstCodeOf,
  rstStream,
  Setting,
  type Frame,
} from '../support/h2-frames.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { startService, type RunningService } from '../support/service.ts';

const PROCESS = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
let routes: string;

const named = (id: string): ProcessingRequest => ({
  request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] }, end_of_stream: true },
});
const REQUEST = grpcMessage(encodeRequest(named('sbx')));
/** The smallest message that gets an answer: a request_body chunk (answered CONTINUE). */
const TINY = grpcMessage(encodeRequest({ request_body: { body: Buffer.alloc(0), end_of_stream: false } }));

const endsStream = (id: number) => (f: Frame) =>
  f.streamId === id && (f.type === FrameType.RST_STREAM || (f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0));
const isGoaway = (f: Frame) => f.type === FrameType.GOAWAY;

/** An ordinary ext_proc request on its own connection, as Envoy sends it; resolves with its answer time and whether it was forwarded. */
async function ordinary(port: number): Promise<{ ms: number; forwarded: boolean; overloaded: boolean }> {
  const client = new ExtProcClient(`127.0.0.1:${port}`);
  try {
    const started = performance.now();
    const { responses } = await client.exchange([named('sbx')], { closeAfter: 1 });
    const ms = performance.now() - started;
    return {
      ms,
      forwarded: JSON.stringify(responses[0]?.dynamic_metadata).includes('10.9.9.9:49983'),
      overloaded: responses[0]?.immediate_response?.body?.toString().includes('overloaded') === true,
    };
  } finally {
    client.close();
  }
}

async function metric(httpPort: number, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  return Number(pattern.exec(text)?.[1] ?? 0);
}

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-hostile-'));
  routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 10.9.9.9 }]\n');
});

describe('a peer that sends a large message in tiny DATA frames (item 1: quadratic reassembly)', () => {
  let service: ServiceProcess;
  beforeAll(async () => {
    service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes, '--grpc-max-ext-proc-message', '4Mi']);
  });
  afterAll(() => service?.stop());

  it('2 MiB in 64-byte frames: the event loop never stalls (another connection is answered within 1 s) and CPU stays under 2 s', async () => {
    const big = encodeRequest({
      request_headers: {
        headers: {
          headers: [
            { key: 'e2b-sandbox-id', raw_value: Buffer.from('sbx') },
            ...Array.from({ length: 2080 }, (_, i) => ({ key: `x-pad-${i}`, raw_value: Buffer.alloc(1000, 'a') })),
          ],
        },
      },
    });
    expect(big.length).toBeGreaterThan(2 * 1024 * 1024);
    const peer = await RawH2Connection.open(service.grpcPort);
    try {
      const cpuBefore = service.cpuMs();
      peer.write(headers(1, grpcRequest(PROCESS)));
      let uploading = true;
      const upload = peer.sendData(1, grpcMessage(big), 64, true, 10_000).finally(() => (uploading = false));
      // Ordinary requests on another connection, back to back, for as long as the upload runs.
      const answers: number[] = [];
      while (uploading) answers.push((await ordinary(service.grpcPort)).ms);
      expect(await upload).toBe(big.length + 5);
      await peer.waitFor(endsStream(1), 10_000, 'the answer to the 2 MiB message');
      const cpu = service.cpuMs() - cpuBefore;
      expect(peer.frames.some((f) => f.streamId === 1 && f.type === FrameType.DATA)).toBe(true);
      expect(answers.length).toBeGreaterThan(0);
      expect(Math.max(...answers)).toBeLessThan(1000);
      expect(cpu).toBeLessThan(2000);
    } finally {
      peer.destroy();
    }
  }, 60_000);
});

describe('a peer that sends but never reads (items 2 and 3: write backpressure, bytes held per connection)', () => {
  let service: ServiceProcess;
  beforeAll(async () => {
    service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes]);
  });
  afterAll(() => service?.stop());

  it('with its window closed, 64 streams of tiny messages: streams past the connection buffer are reset ENHANCE_YOUR_CALM and RSS grows < 100 MB', async () => {
    // INITIAL_WINDOW_SIZE 0: the server may send no DATA at all, so every answer it makes is queued.
    const peer = await RawH2Connection.open(service.grpcPort, { settings: [[Setting.INITIAL_WINDOW_SIZE, 0]], replenish: false });
    try {
      await peer.barrier();
      const rssBefore = service.memory().rss;
      const perStream = Buffer.concat([REQUEST, ...Array.from<Buffer>({ length: 36_000 }).fill(TINY)]);
      const streams = Array.from({ length: 64 }, (_, i) => 1 + 2 * i);
      for (const id of streams) peer.write(headers(id, grpcRequest(PROCESS)));
      // Each stream pushes ~250 KB of messages for as long as the server grants window.
      const sent = await Promise.all(streams.map((id) => peer.sendData(id, perStream, 16_384, false, 3000)));
      await peer.barrier();
      const grown = service.memory().rss - rssBefore;
      const calmed = peer.frames.filter((f) => f.type === FrameType.RST_STREAM && rstCodeOf(f) === ErrorCode.ENHANCE_YOUR_CALM);
      // The server stopped reading streams whose answers it could not deliver: far from all was taken.
      expect(sent.reduce((a, b) => a + b, 0)).toBeLessThan(streams.length * perStream.length);
      expect(calmed.length).toBeGreaterThan(0);
      expect(grown).toBeLessThan(100 * 1024 * 1024);
      expect(await metric(service.httpPort, /^sandbox_extproc_grpc_limited_total\{limit="buffers"\} (\d+)/m)).toBeGreaterThan(0);
      const other = await ordinary(service.grpcPort);
      expect(other.forwarded).toBe(true);
    } finally {
      peer.destroy();
    }
  }, 60_000);

  it('partial messages on many streams: past the connection buffer (16 MiB) they are refused RESOURCE_EXHAUSTED', async () => {
    const session = http2.connect(`http://127.0.0.1:${service.grpcPort}`);
    session.on('error', () => undefined);
    try {
      const prefix = Buffer.alloc(5 + 100);
      prefix.writeUInt32BE(256 * 1024, 1);
      const statuses = Array.from({ length: 100 }, () => {
        const stream = session.request({ ':method': 'POST', ':path': PROCESS, 'content-type': 'application/grpc', te: 'trailers' });
        stream.on('error', () => undefined);
        stream.write(prefix);
        return new Promise<string | undefined>((resolve) => {
          stream.on('response', (h) => resolve(h['grpc-status'] as string | undefined));
          stream.on('close', () => resolve(undefined));
        });
      });
      // 64 x 256 KiB fill the connection's 16 MiB; the other 36 cannot be held.
      const refused = await Promise.race([
        Promise.all(statuses.slice(0, 100)).then(() => 'all'),
        new Promise((resolve) => setTimeout(resolve, 3000, 'timeout')),
      ]);
      expect(refused).toBe('timeout');
      const answered = (await Promise.all(statuses.map((s) => Promise.race([s, Promise.resolve('open')])))).filter(
        (s) => s === String(status.RESOURCE_EXHAUSTED),
      );
      expect(answered.length).toBeGreaterThanOrEqual(30);
      expect(answered.length).toBeLessThanOrEqual(40);
    } finally {
      session.destroy();
    }
  });
});

describe('a peer that opens 10,000 streams and sends nothing on them (item 5: idle streams)', () => {
  let service: ServiceProcess;
  beforeAll(async () => {
    service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes, '--grpc-first-message-timeout', '2s']);
  });
  afterAll(() => service?.stop());

  it('Envoy’s requests are still served (not 503 overloaded), and the idle streams are ended after --grpc-first-message-timeout', async () => {
    // 10 connections of 1,000 streams: as many as a connection may hold waiting for a first message.
    const peers = await Promise.all(Array.from({ length: 10 }, () => RawH2Connection.open(service.grpcPort)));
    try {
      for (const peer of peers) {
        peer.write(Buffer.concat(Array.from({ length: 1000 }, (_, i) => headers(1 + 2 * i, grpcRequest(PROCESS)))));
      }
      await Promise.all(peers.map((peer) => peer.barrier(10_000)));
      const opened = Date.now();
      expect(peers.every((peer) => !peer.ended && !peer.frames.some(isGoaway))).toBe(true);
      // 10,000 streams open, none counted: a request on another connection is forwarded.
      expect(await metric(service.httpPort, /^sandbox_extproc_streams_active (\d+)/m)).toBe(0);
      const other = await ordinary(service.grpcPort);
      expect(other.overloaded).toBe(false);
      expect(other.forwarded).toBe(true);
      // Each idle stream is ended (or its connection closed) within 1.25 timeouts and a margin.
      await Promise.all(
        peers.map(async (peer) => {
          const allEnded = Promise.all(Array.from({ length: 1000 }, (_, i) => peer.waitFor(endsStream(1 + 2 * i), 8000, 'end')));
          await Promise.race([allEnded, peer.closed]);
        }),
      );
      expect(Date.now() - opened).toBeLessThan(8000);
      expect(await metric(service.httpPort, /^sandbox_extproc_grpc_limited_total\{limit="idle_streams"\} (\d+)/m)).toBeGreaterThan(0);
    } finally {
      for (const peer of peers) peer.destroy();
    }
  }, 60_000);

  it('the bounds leave Envoy its room: 9,990 concurrent calls on one connection (held requests) are all served', async () => {
    // Health Watch calls stay open once answered, as held wakes do; none may be refused by the
    // connection's memory bounds (Node's maxSessionMemory, the buffers) or taken for idle streams.
    const peer = await RawH2Connection.open(service.grpcPort);
    try {
      const watch = grpcRequest('/grpc.health.v1.Health/Watch');
      const empty = grpcMessage(Buffer.alloc(0));
      for (let batch = 0; batch < 10; batch += 1) {
        const ids = Array.from({ length: 999 }, (_, i) => 1 + 2 * (batch * 999 + i));
        peer.write(Buffer.concat(ids.flatMap((id) => [headers(id, watch), data(id, empty, true)])));
        await peer.barrier(20_000);
      }
      expect(peer.frames.filter((f) => f.type === FrameType.RST_STREAM)).toHaveLength(0);
      expect(peer.frames.filter((f) => f.type === FrameType.DATA)).toHaveLength(9990);
      expect(peer.ended).toBe(false);
    } finally {
      peer.destroy();
    }
  }, 60_000);

  it('a connection may hold at most 1,000 streams waiting for their first message: more are refused (REFUSED_STREAM)', async () => {
    const peer = await RawH2Connection.open(service.grpcPort);
    try {
      peer.write(Buffer.concat(Array.from({ length: 1010 }, (_, i) => headers(1 + 2 * i, grpcRequest(PROCESS)))));
      await peer.barrier(10_000);
      const refused = peer.frames.filter((f) => f.type === FrameType.RST_STREAM && rstCodeOf(f) === ErrorCode.REFUSED_STREAM);
      expect(refused.map((f) => f.streamId)).toEqual(Array.from({ length: 10 }, (_, i) => 1 + 2 * (1000 + i)));
    } finally {
      peer.destroy();
    }
  }, 30_000);
});

describe('rapid reset, and resets the server is provoked into (CVE-2023-44487, CVE-2025-8671)', () => {
  let service: RunningService;
  beforeAll(async () => {
    // A loopback listener: Node's own reset limit does not apply (Envoy resets every stream it ends);
    // the guard against empty streams does, on every listener.
    service = await startService(['--route-source', 'file', '--routes-file', routes]);
  });
  afterAll(() => service?.stop());

  const port = () => service.listening.grpcPort as number;
  /** The connection is closed within 5 s by the empty-stream guard (GOAWAY ENHANCE_YOUR_CALM, if it arrives before the socket closes). */
  const closedForCalm = async (peer: RawH2Connection, before: number) => {
    await Promise.race([
      peer.closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('connection not closed within 5 s')), 5000)),
    ]);
    const goaway = peer.frames.find(isGoaway);
    if (goaway !== undefined) expect(goawayOf(goaway).code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    expect(await emptyStreamCuts()).toBe(before + 1);
  };
  const emptyStreamCuts = () => metric(service.listening.httpPort, /^sandbox_extproc_grpc_limited_total\{limit="empty_streams"\} (\d+)/m);

  it('a connection that opens and resets streams (HEADERS, RST_STREAM) is closed with GOAWAY ENHANCE_YOUR_CALM', async () => {
    const before = await emptyStreamCuts();
    const peer = await RawH2Connection.open(port());
    peer.write(
      Buffer.concat(
        Array.from({ length: 500 }, (_, i) =>
          Buffer.concat([headers(1 + 2 * i, grpcRequest(PROCESS)), rstStream(1 + 2 * i, ErrorCode.CANCEL)]),
        ),
      ),
    );
    await closedForCalm(peer, before);
  });

  it('a connection that makes the server reset its streams (a second HEADERS on each: MadeYouReset) is closed the same way', async () => {
    const before = await emptyStreamCuts();
    const peer = await RawH2Connection.open(port());
    const request = grpcRequest(PROCESS);
    peer.write(
      Buffer.concat(Array.from({ length: 500 }, (_, i) => Buffer.concat([headers(1 + 2 * i, request), headers(1 + 2 * i, request)]))),
    );
    await closedForCalm(peer, before);
  });

  it('Envoy’s way of ending streams (request, answer, END_STREAM and RST_STREAM) never trips it: 2,000 on one connection', async () => {
    const peer = await RawH2Connection.open(port());
    try {
      for (let batch = 0; batch < 20; batch += 1) {
        const ids = Array.from({ length: 100 }, (_, i) => 1 + 2 * (batch * 100 + i));
        peer.write(Buffer.concat(ids.flatMap((id) => [headers(id, grpcRequest(PROCESS)), data(id, REQUEST)])));
        await peer.waitForCount((f) => f.type === FrameType.DATA && ids.includes(f.streamId), 100, 10_000, 'answers');
        peer.write(Buffer.concat(ids.flatMap((id) => [data(id, Buffer.alloc(0), true), rstStream(id, ErrorCode.CANCEL)])));
      }
      await peer.barrier();
      expect(peer.ended).toBe(false);
      expect(peer.frames.some(isGoaway)).toBe(false);
    } finally {
      peer.destroy();
    }
  }, 60_000);
});

describe('protocol edges (item 6) and the process staying up (item 4)', () => {
  let app: App;
  let port: number;
  let httpPort: number;
  const logLines: string[] = [];
  beforeAll(async () => {
    const service = await startService(
      [
        '--route-source',
        'file',
        '--routes-file',
        routes,
        '--grpc-keepalive-interval',
        '300ms',
        '--grpc-keepalive-timeout',
        '300ms',
        '--grpc-max-connections',
        '5',
        '--shutdown-grace',
        '5s',
      ],
      {},
      { logs: (l) => logLines.push(l) },
    );
    app = service.app;
    const listening = service.listening;
    port = listening.grpcPort as number;
    httpPort = listening.httpPort;
  });
  afterAll(() => app?.stop());

  it('an absurd grpc-timeout (99,999,999 hours, past what a timer holds) is no deadline: the call stays open, no TimeoutOverflowWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const watch = session.request({
        ':method': 'POST',
        ':path': '/grpc.health.v1.Health/Watch',
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': '99999999H',
      });
      watch.on('error', () => undefined);
      let ended = false;
      watch.on('close', () => (ended = true));
      await new Promise<void>((resolve) => {
        watch.once('data', () => resolve());
        watch.end(grpcMessage(Buffer.alloc(0)));
      });
      // A later call on the same connection answered: the Watch would have ended before it.
      expect((await ordinary(port)).forwarded).toBe(true);
      await new Promise((resolve) => session.ping(resolve));
      expect(ended).toBe(false);
      expect(warnings).not.toContain('TimeoutOverflowWarning');
      watch.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      process.off('warning', onWarning);
      session.destroy();
    }
  });

  it('an exception in a handler ends that call INTERNAL, is logged and counted, and the process serves on', async () => {
    const gauge = app.metrics.streamsActive;
    const real = gauge.inc.bind(gauge);
    let thrown = 0;
    gauge.inc = () => {
      thrown += 1;
      gauge.inc = real;
      throw new Error('injected bug in a handler');
    };
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    try {
      const statusOf = await new Promise<string | undefined>((resolve) => {
        const stream = session.request({ ':method': 'POST', ':path': PROCESS, 'content-type': 'application/grpc', te: 'trailers' });
        stream.on('error', () => undefined);
        let found: string | undefined;
        stream.on('response', (h) => (found ??= h['grpc-status'] as string | undefined));
        stream.on('trailers', (h) => (found ??= h['grpc-status'] as string | undefined));
        stream.on('close', () => resolve(found));
        stream.resume();
        stream.end(REQUEST);
      });
      expect(thrown).toBe(1);
      expect(statusOf).toBe(String(status.INTERNAL));
      expect(logLines.join('')).toContain('injected bug in a handler');
      expect(
        await metric(
          httpPort,
          /^sandbox_extproc_grpc_handler_errors_total\{method="\/envoy\.service\.ext_proc\.v3\.ExternalProcessor\/Process"\} (\d+)/m,
        ),
      ).toBe(1);
      expect((await ordinary(port)).forwarded).toBe(true);
    } finally {
      gauge.inc = real;
      session.destroy();
    }
  });

  it('garbage in place of HTTP/2, or in a frame, closes that connection only', async () => {
    const garbage = await RawH2Connection.open(port);
    garbage.write(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\x13garbage'.repeat(10)));
    await garbage.closed;
    const broken = await RawH2Connection.open(port);
    broken.write(Buffer.from([0, 0, 4, 0xfe, 0xff, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 1, FrameType.SETTINGS, 0, 0, 0, 0, 1, 9]));
    await broken.closed;
    expect((await ordinary(port)).forwarded).toBe(true);
  });

  it('after trailers, a peer still sending is told RST_STREAM NO_ERROR; one whose END_STREAM is in gets nothing more', async () => {
    const peer = await RawH2Connection.open(port);
    try {
      // Stream 1 breaks the protocol (request_headers twice) and keeps its side open; stream 3 ends its side.
      peer.write(Buffer.concat([headers(1, grpcRequest(PROCESS)), data(1, Buffer.concat([REQUEST, REQUEST]))]));
      peer.write(Buffer.concat([headers(3, grpcRequest(PROCESS)), data(3, REQUEST, true)]));
      const rst = await peer.waitFor((f) => f.streamId === 1 && f.type === FrameType.RST_STREAM, 5000, 'RST_STREAM on stream 1');
      const onOne = peer.frames.filter((f) => f.streamId === 1).map((f) => f.type);
      expect(onOne).toEqual([FrameType.HEADERS, FrameType.DATA, FrameType.HEADERS, FrameType.RST_STREAM]);
      expect(rstCodeOf(rst)).toBe(ErrorCode.NO_ERROR);
      await peer.waitFor(endsStream(3), 5000, 'trailers on stream 3');
      await peer.barrier();
      expect(peer.frames.filter((f) => f.streamId === 3).map((f) => f.type)).toEqual([
        FrameType.HEADERS,
        FrameType.DATA,
        FrameType.HEADERS,
      ]);
    } finally {
      peer.destroy();
    }
  });

  it('a peer that stops answering PINGs is noticed and cut (--grpc-keepalive-*); one that answers stays', async () => {
    const dead = await RawH2Connection.open(port, { answerPings: false });
    const alive = await RawH2Connection.open(port);
    try {
      const started = Date.now();
      await Promise.race([
        dead.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('a silent peer was not cut within 3 s')), 3000)),
      ]);
      expect(Date.now() - started).toBeLessThan(3000);
      expect(dead.frames.some((f) => f.type === FrameType.PING)).toBe(true);
      await alive.barrier();
      expect(alive.ended).toBe(false);
      expect(await metric(httpPort, /^sandbox_extproc_grpc_limited_total\{limit="keepalive"\} (\d+)/m)).toBeGreaterThan(0);
    } finally {
      dead.destroy();
      alive.destroy();
    }
  });

  it('connections past --grpc-max-connections are closed as they arrive; those within are served', async () => {
    const within = await Promise.all(Array.from({ length: 5 }, () => RawH2Connection.open(port)));
    try {
      await Promise.all(within.map((peer) => peer.barrier()));
      const beyond = await RawH2Connection.open(port);
      await beyond.closed;
      expect(beyond.frames).toHaveLength(0);
      await Promise.all(within.map((peer) => peer.barrier()));
      expect(within.every((peer) => !peer.ended)).toBe(true);
      expect(await metric(httpPort, /^sandbox_extproc_grpc_limited_total\{limit="connections"\} (\d+)/m)).toBeGreaterThan(0);
    } finally {
      for (const peer of within) peer.destroy();
    }
  });
});

describe('graceful shutdown (item 6)', () => {
  let service: RunningService;
  beforeAll(async () => {
    service = await startService(['--route-source', 'file', '--routes-file', routes, '--shutdown-grace', '5s']);
  });
  afterAll(() => service?.stop());

  it('graceful shutdown: GOAWAY naming stream 2^31-1, a PING, then GOAWAY with the real last stream; an open call finishes', async () => {
    const peer = await RawH2Connection.open(service.listening.grpcPort as number, { answerPings: false });
    try {
      // Stream 1: a call the peer keeps open (answered, not half-closed) through the shutdown.
      peer.write(Buffer.concat([headers(1, grpcRequest(PROCESS)), data(1, REQUEST)]));
      await peer.waitFor((f) => f.streamId === 1 && f.type === FrameType.DATA, 5000, 'the answer on stream 1');
      const stopped = service.stop();
      const notice = await peer.waitFor(isGoaway, 5000, 'the first GOAWAY');
      expect(goawayOf(notice)).toEqual({ lastStreamId: 2 ** 31 - 1, code: ErrorCode.NO_ERROR });
      const probe = await peer.waitFor((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) === 0, 5000, 'the PING after it');
      // nghttp2, as Node drives it, takes no new stream once any GOAWAY is out (Node does not expose
      // nghttp2_submit_shutdown_notice): a stream raced in now is not served, and the final GOAWAY
      // says so (last stream 1), so the peer may safely retry it elsewhere.
      peer.write(Buffer.concat([headers(3, grpcRequest(PROCESS)), data(3, REQUEST, true), ping(probe.payload, true)]));
      const last = await peer.waitFor((f) => isGoaway(f) && f !== notice, 5000, 'the second GOAWAY');
      expect(goawayOf(last)).toEqual({ lastStreamId: 1, code: ErrorCode.NO_ERROR });
      expect(peer.frames.indexOf(notice)).toBeLessThan(peer.frames.indexOf(probe));
      expect(peer.frames.indexOf(probe)).toBeLessThan(peer.frames.indexOf(last));
      // The open call is still served after both, then ends normally.
      peer.write(data(1, Buffer.alloc(0), true));
      await peer.waitFor(endsStream(1), 5000, 'the trailers of stream 1');
      expect(peer.frames.some((f) => f.streamId === 3)).toBe(false);
      await stopped;
    } finally {
      peer.destroy();
    }
  });
});
