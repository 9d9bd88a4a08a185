// Bytes allocated per ext_proc stream (issue 29's "fewer allocations per stream"), counted by V8 in the
// measured process itself (allocation-probe.cjs): the service as it ships, Node's bare http2 floor
// (what Node's HTTP/2 allocates for a stream with no work at all) and, with --baseline, an older build.
// The request is an Envoy-shaped request_headers message with the dozen headers Envoy sends for a
// plain GET, of which the service reads five: what the service does not read should cost nothing.
import type { ProcessingRequest } from '../../src/protocol/messages.ts';
import type { TestProcess } from '../support/process.ts';
import { IMAGE_NODE_FLAGS, startServiceProcess } from '../support/service-process.ts';
import { REPO_ROOT } from '../support/tools.ts';
import { differs, rawExchanges } from './answer-bytes.ts';
import { startBare } from './bare-servers.ts';
import type { Cleanup } from './cleanup.ts';
import { h2load, type Baseline } from './grpc-load.ts';
import type { Report } from './report.ts';

const PROBE = ['--require', `${REPO_ROOT}test/bench/allocation-probe.cjs`];

/** The request_headers Envoy sends for `GET /api/v1/files?path=/home/user` to sandbox `bench`. */
export const envoyShapedMessage: ProcessingRequest = {
  request_headers: {
    headers: {
      headers: Object.entries({
        ':authority': 'edge.example.com:10000',
        ':path': '/api/v1/files?path=/home/user',
        ':method': 'GET',
        ':scheme': 'http',
        'user-agent': 'Go-http-client/1.1',
        accept: '*/*',
        'accept-encoding': 'gzip',
        'x-forwarded-proto': 'http',
        'x-request-id': '0f2a6c1e-5b9d-4c7e-9a51-3d2b8e4f6a70',
        'e2b-sandbox-id': 'bench',
        'e2b-sandbox-port': '8080',
        'x-envoy-expected-rq-timeout-ms': '15000',
      }).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })),
    },
    end_of_stream: true,
  },
};

/** Bytes one process allocates per stream over `streams` streams (after a warm-up of as many). */
async function perStream(dir: string, port: number, process: TestProcess, streams: number): Promise<number> {
  await h2load(dir, port, streams, 2, 4, envoyShapedMessage);
  const report = async (n: number) => {
    process.child.kill('SIGUSR2');
    const line = await process.waitForLine(new RegExp(`"msg":"allocation probe","report":${n},`), 10_000);
    return (JSON.parse(line) as { allocated: number }).allocated;
  };
  await report(1); // the count starts here
  await h2load(dir, port, streams, 2, 4, envoyShapedMessage);
  return (await report(2)) / streams;
}

export async function measureAllocations(
  report: Report,
  options: { dir: string; routes: string; quick: boolean; cleanup: Cleanup; baseline?: Baseline },
): Promise<void> {
  const { dir, routes, quick, cleanup, baseline } = options;
  const streams = quick ? 10_000 : 50_000;
  const args = ['--route-source', 'file', '--routes-file', routes];
  const service = await startServiceProcess(args, { nodeFlags: [...IMAGE_NODE_FLAGS, ...PROBE] });
  cleanup.add(() => service.stop());
  const [own] = await rawExchanges(service.grpcPort, envoyShapedMessage);
  const answer = own?.answers[0];
  if (own?.status !== 0 || answer === undefined)
    throw new Error(`the service did not answer an Envoy-shaped request: ${JSON.stringify(own)}`);
  const floor = await startBare('bare-http2-server.ts', answer, undefined, [...IMAGE_NODE_FLAGS, ...PROBE]);
  cleanup.add(() => floor.stop());
  const wrong = differs(await rawExchanges(floor.port, envoyShapedMessage, 10), answer);
  if (wrong !== undefined) throw new Error(`the bare Node http2 floor does not send the service's answer: ${wrong}`);
  const name = 'heap bytes allocated per stream (Envoy-shaped request, 12 headers)';
  const ours = await perStream(dir, service.grpcPort, service.process, streams);
  report.info(`${name}, sandbox-extproc`, ours, 'bytes');
  report.info(`${name}, bare Node http2 server (floor)`, await perStream(dir, floor.port, floor.process, streams), 'bytes');
  if (baseline !== undefined) {
    const base = await startServiceProcess(args, { bundle: baseline.bundle, nodeFlags: [...IMAGE_NODE_FLAGS, ...PROBE] });
    cleanup.add(() => base.stop());
    const theirs = await perStream(dir, base.grpcPort, base.process, streams);
    report.info(`${name}, sandbox-extproc at ${baseline.label} (baseline)`, theirs, 'bytes');
    report.info(`${name}: sandbox-extproc / the baseline`, ours / theirs, 'ratio');
  }
}
