// ext_proc streams per second on one core (the server pinned to CPU 0, the load generator to CPU 1):
// - h2load (nghttp2's HTTP/2 load generator) with gRPC framing, closed loop with 8 streams in flight,
//   for sandbox-extproc and, side by side, bare reference servers: grpc-js, Node http2 and Go HTTP/2;
// - ghz (a gRPC load generator) at one moderate rate, as a protocol-level cross-check. On 2 cores ghz
//   itself tops out near 6,000 streams/s with p99 >= 18 ms even against the bare server, so it cannot
//   judge the capacity target.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { encodeRequest } from '../../src/protocol/proto.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { REPO_ROOT, toolPath } from '../support/tools.ts';
import { startBare, type BareServer } from './bare-servers.ts';
import { percentile, type Report } from './report.ts';

const run = promisify(execFile);
const PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';
/** A request_headers message naming one sandbox, as Envoy sends it. */
export const namingMessage = (sandboxId: string) => ({
  request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(sandboxId) }] }, end_of_stream: true },
});
const message = namingMessage('bench');

interface Closed {
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly failed: number;
}

/** Closed loop: `clients` connections with `streams` each in flight, `total` requests. */
export async function h2load(
  dir: string,
  port: number,
  total: number,
  clients = 2,
  streams = 4,
  sent: ReturnType<typeof namingMessage> = message,
): Promise<Closed> {
  const body = join(dir, `request-${port}.grpc`);
  const encoded = encodeRequest(sent);
  const frame = Buffer.alloc(5 + encoded.length);
  frame.writeUInt32BE(encoded.length, 1);
  encoded.copy(frame, 5);
  writeFileSync(body, frame);
  const log = join(dir, `h2load-${port}.log`);
  const { stdout } = await run(
    'taskset',
    [
      '-c',
      '1',
      'h2load',
      '-c',
      String(clients),
      '-m',
      String(streams),
      '-n',
      String(total),
      '-H',
      'content-type: application/grpc',
      '-H',
      'te: trailers',
      '-d',
      body,
      '--log-file',
      log,
      `http://127.0.0.1:${port}${PATH}`,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const durations = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => Number(l.split('\t')[2]) / 1000)
    .sort((a, b) => a - b);
  const failed = Number(/(\d+) failed/.exec(stdout)?.[1] ?? 0) + Number(/(\d+) errored/.exec(stdout)?.[1] ?? 0);
  return {
    rps: Number(/([\d.]+) req\/s/.exec(stdout)?.[1] ?? 0),
    p50ms: percentile(durations, 50),
    p99ms: percentile(durations, 99),
    failed,
  };
}

async function ghz(port: number, rps: number, seconds: number): Promise<{ rps: number; p99ms: number; errors: number }> {
  const data = JSON.stringify([
    {
      request_headers: {
        headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from('bench').toString('base64') }] },
        end_of_stream: true,
      },
    },
  ]);
  const args = [
    '--insecure',
    '--proto',
    `${REPO_ROOT}proto/envoy/service/ext_proc/v3/external_processor.proto`,
    '--import-paths',
    `${REPO_ROOT}proto`,
    '--call',
    'envoy.service.ext_proc.v3.ExternalProcessor.Process',
    '-d',
    data,
    '--rps',
    String(rps),
    '-z',
    `${seconds}s`,
    '-c',
    '32',
    '--connections',
    '4',
    '-O',
    'json',
    `127.0.0.1:${port}`,
  ];
  const { stdout } = await run('taskset', ['-c', '1', toolPath('SANDBOX_EXTPROC_GHZ'), ...args], { maxBuffer: 64 * 1024 * 1024 });
  const result = JSON.parse(stdout) as {
    count: number;
    rps: number;
    latencyDistribution: { percentage: number; latency: number }[] | null;
    statusCodeDistribution: Record<string, number>;
  };
  const p99 = result.latencyDistribution?.find((d) => d.percentage === 99)?.latency ?? Infinity;
  return { rps: result.rps, p99ms: p99 / 1e6, errors: result.count - (result.statusCodeDistribution['OK'] ?? 0) };
}

/** Runs one of the bare reference servers pinned to CPU 0 and measures it like the service. */
async function floorOf(dir: string, script: BareServer, total: number): Promise<Closed> {
  const bare = await startBare(script, undefined, 0);
  try {
    await h2load(dir, bare.port, 10_000); // warm-up
    return await h2load(dir, bare.port, total);
  } finally {
    await bare.stop();
  }
}

export async function measureStreams(report: Report, quick: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-streams-'));
  const routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: bench, podIP: 10.0.0.1 }]\n');
  const total = quick ? 30_000 : 150_000;

  const floor = await floorOf(dir, 'bare-grpc-server.ts', total);
  report.info('bare grpc-js server, one core, 8 in flight: streams/s', floor.rps, 'streams/s');
  report.info('bare grpc-js server, one core, 8 in flight: p99', floor.p99ms, 'ms');
  const http2 = await floorOf(dir, 'bare-http2-server.ts', total);
  report.info('bare Node http2, gRPC framing by hand, one core: streams/s', http2.rps, 'streams/s');
  report.info('bare Node http2, gRPC framing by hand, one core: p99', http2.p99ms, 'ms');
  const go = await floorOf(dir, 'bare-go-server', total);
  report.info('bare Go net/http HTTP/2, gRPC framing by hand, one core: streams/s', go.rps, 'streams/s');
  report.info('bare Go net/http HTTP/2, gRPC framing by hand, one core: p99', go.p99ms, 'ms');

  const service = await startServiceProcess(['--route-source', 'file', '--routes-file', routes], { cpu: 0 });
  try {
    await h2load(dir, service.grpcPort, 10_000); // warm-up
    const ours = await h2load(dir, service.grpcPort, total);
    report.atLeast('sandbox-extproc, one core, 8 in flight: streams/s', ours.rps, 'streams/s', quick ? 4000 : 10_000);
    report.atMost('sandbox-extproc, one core, 8 in flight: p99', ours.p99ms, 'ms', quick ? 25 : 5);
    report.equals('sandbox-extproc under h2load: failed streams', ours.failed, 'streams', 0);
    report.info('sandbox-extproc / bare grpc-js throughput', ours.rps / floor.rps, 'ratio');
    const cross = await ghz(service.grpcPort, 3000, quick ? 3 : 5);
    report.info('ghz cross-check @3000/s offered: achieved', cross.rps, 'streams/s');
    report.info('ghz cross-check @3000/s offered: p99 (ghz-bound on 2 cores)', cross.p99ms, 'ms');
    report.info('ghz cross-check: non-OK streams', cross.errors, 'streams');
  } finally {
    await service.stop();
  }
}
