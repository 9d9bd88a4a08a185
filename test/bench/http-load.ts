// HTTP load through Envoy with vegeta (a real load generator), counting every request it sent: each
// one ends as an HTTP status or as a transport error (refused, reset, closed, timed out), and the run
// is checked for completeness (one result per sequence number, none missing) before any figure is
// read from it. Fixed-rate runs (open model: requests go out on schedule whether or not earlier ones
// were answered) measure latency; runs with a fixed number of workers and no rate measure saturation.
// hey, used before, left refused, reset and timed-out requests out of its per-request CSV altogether.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { percentile } from './report.ts';
import { toolPath } from '../support/tools.ts';
import { track } from '../support/process.ts';

export interface LoadOptions {
  readonly seconds: number;
  /** Requests per second in total (open model). Absent: as fast as `workers` allow (saturation). */
  readonly rate?: number;
  /** Concurrent workers for saturation runs (ignored with a rate). */
  readonly workers?: number;
  /** Per-request timeout (vegeta's own; default 30 s). */
  readonly timeoutMs?: number;
  /** false: a new connection for every request (vegeta -keepalive=false). Default: connections are reused. */
  readonly keepalive?: boolean;
  /** Pins the load generator to this CPU. */
  readonly cpu?: number;
}

/** What became of every request sent. */
export interface LoadResult {
  /** Requests sent: every sequence number from 0 to sent - 1 has exactly one result. */
  readonly sent: number;
  /** Requests that got an HTTP status back. */
  readonly answered: number;
  /** Requests that got no status: refused, reset, closed without an answer, timed out. */
  readonly transportErrors: number;
  /** Answered 200. */
  readonly ok: number;
  /** Everything but a 200: answered with another status, or not answered at all. */
  readonly failed: number;
  /** Outcomes: HTTP statuses ("200", "503") and transport errors ("refused", "reset", "closed", "timeout", "other"). */
  readonly outcomes: Record<string, number>;
  /** A few transport error texts, as vegeta reported them. */
  readonly errorSamples: string[];
  readonly seconds: number;
  /** Sorted latencies of the requests answered 200, in milliseconds. */
  readonly latencies: number[];
  p(pct: number): number;
  /** 200s per second: only answered requests count as throughput. */
  readonly okPerSecond: number;
}

/** The kind of a transport error, from Go's error text. */
export function transportErrorKind(error: string): string {
  if (/connection refused/.test(error)) return 'refused';
  if (/connection reset by peer/.test(error)) return 'reset';
  if (/Client\.Timeout|timeout|deadline exceeded/i.test(error)) return 'timeout';
  if (/EOF|server closed|broken pipe/.test(error)) return 'closed';
  return 'other';
}

interface VegetaResult {
  seq: number;
  code: number;
  latency: number;
  error: string;
}

export async function httpLoad(url: string, headers: Record<string, string>, options: LoadOptions): Promise<LoadResult> {
  const vegeta = toolPath('SBX_VEGETA');
  const args = ['attack', '-duration', `${options.seconds}s`, '-max-body', '0', '-timeout', `${options.timeoutMs ?? 30_000}ms`];
  if (options.rate !== undefined) args.push('-rate', `${options.rate}/s`);
  else {
    const workers = String(options.workers ?? 32);
    args.push('-rate', '0', '-workers', workers, '-max-workers', workers);
  }
  if (options.keepalive === false) args.push('-keepalive=false');
  for (const [k, v] of Object.entries(headers)) args.push('-header', `${k}: ${v}`);
  const pinned = (command: string[]) => (options.cpu === undefined ? command : ['taskset', '-c', String(options.cpu), ...command]);
  const run = (command: string[]) => track(spawn(command[0] as string, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }));
  const attack = run(pinned([vegeta, ...args]));
  const encode = run(pinned([vegeta, 'encode', '--to', 'json']));
  // Listened for now: the attack ends while its last results are still being read.
  const closed = [attack, encode].map((c) => new Promise<number | null>((resolve) => c.once('close', resolve)));
  attack.stdin.end(`GET ${url}\n`);
  attack.stdout.pipe(encode.stdin);
  let stderr = '';
  for (const child of [attack, encode]) child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  const seen = new Set<number>();
  const outcomes: Record<string, number> = {};
  const errorSamples: string[] = [];
  const latencies: number[] = [];
  let answered = 0;
  let transportErrors = 0;
  let maxSeq = -1;
  for await (const line of createInterface({ input: encode.stdout })) {
    const r = JSON.parse(line) as VegetaResult;
    if (seen.has(r.seq)) throw new Error(`vegeta reported request ${r.seq} twice`);
    seen.add(r.seq);
    maxSeq = Math.max(maxSeq, r.seq);
    let outcome: string;
    if (r.code > 0) {
      answered += 1;
      outcome = String(r.code);
      if (r.code === 200) latencies.push(r.latency / 1e6);
    } else {
      transportErrors += 1;
      outcome = transportErrorKind(r.error);
      if (errorSamples.length < 5) errorSamples.push(r.error);
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  const codes = await Promise.all(closed);
  if (codes.some((c) => c !== 0)) throw new Error(`vegeta failed (exit ${codes.join(', ')}): ${stderr.trim()}`);
  // Every request accounted for: results for 0..sent-1, each once (each is either answered or an error).
  const sent = seen.size;
  if (maxSeq !== sent - 1) throw new Error(`vegeta results are incomplete: ${sent} results, highest sequence ${maxSeq}`);
  latencies.sort((a, b) => a - b);
  const ok = outcomes['200'] ?? 0;
  return {
    sent,
    answered,
    transportErrors,
    ok,
    failed: sent - ok,
    outcomes,
    errorSamples,
    seconds: options.seconds,
    latencies,
    p: (pct) => percentile(latencies, pct),
    okPerSecond: ok / options.seconds,
  };
}

/** One line for logs and failure messages: every outcome of a run. */
export function describeLoad(result: LoadResult): string {
  const parts = Object.entries(result.outcomes)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}: ${v}`);
  const samples = result.errorSamples.length > 0 ? `; e.g. ${result.errorSamples[0]}` : '';
  return `sent ${result.sent} = answered ${result.answered} + transport errors ${result.transportErrors} (${parts.join(', ')})${samples}`;
}
