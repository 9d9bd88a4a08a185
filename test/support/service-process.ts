// sandbox-extproc as its own process (the real command), for measurements that must not share a
// process with the load (memory, CPU pinning). Ready when it logs where it listens.
import { readFileSync } from 'node:fs';
import { TestProcess } from './process.ts';
import { TEST_LEASE_ENV, TEST_UPSTREAM_ENV } from './service.ts';
import { REPO_ROOT } from './tools.ts';

export interface ServiceProcess {
  readonly process: TestProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** Resident and peak resident memory, in bytes (from /proc). */
  memory(): { rss: number; peak: number };
  /** CPU time used so far (user + system), in ms (from /proc, in 10 ms ticks). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/**
 * The Node flags the image's ENTRYPOINT runs the bundle with (a test keeps the Dockerfile in step). A
 * young generation capped at 8 MB semi-spaces keeps ~30 MB off the RSS at 100k routes with no
 * measurable cost in streams/s (docs/benchmarks.md). Not --enable-source-maps: parsing the bundle's
 * map costs ~100 MB of RSS; the bundle is not minified, so stack traces stay readable without it.
 */
export const IMAGE_NODE_FLAGS = ['--max-semi-space-size=8'];

/** Set by the benchmark after it builds: run the bundle in dist/ the image ships, not the sources. */
export const runBuilt = { value: false };

/**
 * `bundle`: run this bundle (another build of the service, such as the bench's --baseline) instead;
 * `nodeFlags`: run a bundle with these Node flags instead of the image's (the bench's tail levers).
 */
export async function startServiceProcess(
  args: readonly string[],
  options: { cpu?: number; bundle?: string; nodeFlags?: readonly string[] } = {},
): Promise<ServiceProcess> {
  const built = runBuilt.value || options.bundle !== undefined;
  const entry = options.bundle ?? (runBuilt.value ? `${REPO_ROOT}dist/sandbox-extproc.mjs` : `${REPO_ROOT}src/cli.ts`);
  const flags = built ? (options.nodeFlags ?? IMAGE_NODE_FLAGS) : [];
  const command = [process.execPath, ...flags, entry, '--grpc-port', '0', '--http-port', '0', ...args];
  const [file, ...rest] = options.cpu === undefined ? command : ['taskset', '-c', String(options.cpu), ...command];
  const proc = new TestProcess('sandbox-extproc', file as string, rest, {
    env: { ...process.env, ...TEST_UPSTREAM_ENV, ...TEST_LEASE_ENV },
  });
  const line = await proc.waitForLine(/"msg":"sandbox-extproc listening"/, 30_000);
  const { grpcPort, httpPort } = JSON.parse(line) as { grpcPort: number; httpPort: number };
  return {
    process: proc,
    grpcPort,
    httpPort,
    memory() {
      const status = readFileSync(`/proc/${proc.child.pid}/status`, 'utf8');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      return { rss: kb('VmRSS'), peak: kb('VmHWM') };
    },
    cpuMs() {
      const fields = readFileSync(`/proc/${proc.child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      return (Number(fields[11]) + Number(fields[12])) * 10;
    },
    stop: () => proc.stop(15_000),
  };
}
