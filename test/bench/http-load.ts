// HTTP load through Envoy with hey (a real load generator): rate-limited runs for latency, unlimited
// runs for saturation throughput. Latencies come from hey's per-request CSV.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { percentile } from './report.ts';
import { toolPath } from '../support/tools.ts';

const run = promisify(execFile);

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  /** Sorted latencies in milliseconds. */
  readonly latencies: number[];
  p(pct: number): number;
  readonly rps: number;
  /** Responses by HTTP status ('' when no response came back). */
  readonly statuses: Record<string, number>;
}

export async function hey(
  url: string,
  headers: Record<string, string>,
  options: { seconds: number; workers: number; ratePerWorker?: number },
): Promise<LoadResult> {
  const args = ['-z', `${options.seconds}s`, '-c', String(options.workers), '-o', 'csv', '-disable-compression'];
  if (options.ratePerWorker !== undefined) args.push('-q', String(options.ratePerWorker));
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  const { stdout } = await run(toolPath('SANDBOX_EXTPROC_HEY'), [...args, url], { maxBuffer: 512 * 1024 * 1024 });
  const lines = stdout.trim().split('\n').slice(1);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  for (const line of lines) {
    // response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    const cols = line.split(',');
    const status = cols[6] ?? '';
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status !== '200') errors += 1;
    latencies.push(Number(cols[0]) * 1000);
  }
  latencies.sort((a, b) => a - b);
  return {
    requests: lines.length,
    errors,
    seconds: options.seconds,
    latencies,
    p: (pct) => percentile(latencies, pct),
    rps: lines.length / options.seconds,
    statuses,
  };
}
