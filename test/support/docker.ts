// The real Docker engine for the container suites (test/e2e/containers), through testcontainers where
// it fits (starting containers, waiting on their log lines, exec) and the docker CLI for the rest
// (build, pause, signals, networks). Nothing is ever pulled: every image is built locally
// (scripts/provision.sh images, and the project's Dockerfile). Testcontainers' reaper (Ryuk) is off,
// since its image cannot be pulled either: every container and network carries this run's labels, and
// the suite removes them itself (cleanupRun), also after a failure, and sweeps what a killed run left.
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { GenericContainer, getContainerRuntimeClient, Wait, type StartedTestContainer } from 'testcontainers';
import { track } from './process.ts';

process.env['TESTCONTAINERS_RYUK_DISABLED'] = 'true';

const run = promisify(execFile);

/** Labels on everything a container suite creates: which run made it (the vitest main process). */
export const SUITE_LABEL = 'sandbox-extproc.test';
export const RUN_LABEL = 'sandbox-extproc.test-run';

export function runLabels(runId: string): Record<string, string> {
  return { [SUITE_LABEL]: 'containers', [RUN_LABEL]: runId };
}

/** Runs the docker CLI; a failure carries its stderr. */
export async function docker(args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run('docker', args, {
      maxBuffer: 64 << 20,
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? 0,
    });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`docker ${args.slice(0, 3).join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}\n${e.stdout ?? ''}`.trim(), {
      cause: error,
    });
  }
}

/**
 * Why no engine can be used here, in one line, or undefined when one answers (asked through the docker
 * CLI, which honours DOCKER_HOST and contexts, then through testcontainers, which must find the same
 * engine). Only "no engine" is a reason to skip: with an engine, any later failure (a pull refused, a
 * build error) fails the suite.
 */
export async function whyNoEngine(): Promise<string | undefined> {
  try {
    await run('docker', ['version', '--format', '{{.Server.Version}}']);
  } catch (error) {
    const e = error as { code?: string; stderr?: string; message: string };
    const why = e.code === 'ENOENT' ? 'no docker command' : ((e.stderr ?? '').trim().split('\n').pop() ?? e.message);
    return `no Docker engine answers (${why}); as root, scripts/provision.sh docker starts one`;
  }
  await getContainerRuntimeClient();
  return undefined;
}

/** Builds the project's Dockerfile (the classic builder: BuildKit would look for a registry). */
export async function buildImage(context: string, tag: string): Promise<void> {
  await docker(['build', '--quiet', '--tag', tag, context], { env: { ...process.env, DOCKER_BUILDKIT: '0' } });
}

export async function imageExists(ref: string): Promise<boolean> {
  try {
    await docker(['image', 'inspect', '--format', '{{.Id}}', ref]);
    return true;
  } catch {
    return false;
  }
}

/** Removes the containers and networks of one run (or, with a filter function, of any matching run). */
export async function removeLabelled(filter: string): Promise<void> {
  const ids = (await docker(['ps', '-aq', '--filter', `label=${filter}`])).split('\n').filter(Boolean);
  if (ids.length > 0) await docker(['rm', '-f', '-v', ...ids]);
  const networks = (await docker(['network', 'ls', '-q', '--filter', `label=${filter}`])).split('\n').filter(Boolean);
  for (const network of networks) await docker(['network', 'rm', network]).catch(() => undefined);
}

/** Runs of the container suites whose process is gone (killed before their own cleanup). */
export async function staleRuns(): Promise<string[]> {
  const text = await docker(['ps', '-a', '--filter', `label=${SUITE_LABEL}`, '--format', `{{.Label "${RUN_LABEL}"}}`]);
  const networks = await docker(['network', 'ls', '--filter', `label=${SUITE_LABEL}`, '--format', `{{.Label "${RUN_LABEL}"}}`]);
  const runs = new Set([...text.split('\n'), ...networks.split('\n')].filter(Boolean));
  return [...runs].filter((id) => {
    const pid = Number(id.split('-')[0]);
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
}

export interface DockerNetwork {
  readonly name: string;
  /** The host's address on the network: containers reach host processes bound to it. */
  readonly gateway: string;
  /**
   * A range of the network's addresses the engine never hands out (its dynamic range is the first /24),
   * for pod IPs assigned elsewhere (a kwok node's pod CIDR) and taken with `docker run --ip`.
   */
  readonly podCIDR: string;
}

/**
 * Creates a network on an address pool the engine chooses as free, with its subnet stated at creation
 * (`docker run --ip` needs that): the engine picks the pool for a throwaway network of the same name,
 * which is then re-created on that subnet, with the engine's own addresses limited to its first /24. A
 * pool taken meanwhile by someone else's network makes the engine refuse the overlap: chosen again.
 */
export async function createNetwork(name: string, labels: Record<string, string>): Promise<DockerNetwork> {
  const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  for (let attempt = 1; ; attempt++) {
    await docker(['network', 'create', ...labelArgs, name]);
    const [subnet, gateway] = (
      await docker(['network', 'inspect', '--format', '{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}', name])
    )
      .trim()
      .split(' ') as [string, string];
    await docker(['network', 'rm', name]);
    const [base, bits] = subnet.split('/') as [string, string];
    if (Number(bits) > 23) throw new Error(`docker network ${name}: the engine's pool ${subnet} is smaller than two /24s`);
    const octets = base.split('.').map(Number) as [number, number, number, number];
    const dynamic = `${octets[0]}.${octets[1]}.${octets[2]}.0/24`;
    const podCIDR = `${octets[0]}.${octets[1]}.${octets[2] + 1}.0/24`;
    try {
      await docker(['network', 'create', ...labelArgs, '--subnet', subnet, '--gateway', gateway, '--ip-range', dynamic, name]);
      return { name, gateway, podCIDR };
    } catch (error) {
      if (attempt >= 5 || !/overlap/i.test(String(error))) throw error;
    }
  }
}

/** GenericContainer with what a pod's securityContext asks for and testcontainers does not offer. */
export class LocalContainer extends GenericContainer {
  constructor(image: string) {
    super(image);
    // Local images only: a missing one is an error, never a pull.
    this.withPullPolicy({ shouldPull: () => false });
  }

  withReadOnlyRootFilesystem(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }

  withGroupAdd(...groups: string[]): this {
    this.hostConfig.GroupAdd = [...(this.hostConfig.GroupAdd ?? []), ...groups];
    return this;
  }

  /** Started, and ready once a line matching the pattern is logged. */
  waitingFor(pattern: RegExp, timeoutMs = 60_000): this {
    return this.withWaitStrategy(Wait.forLogMessage(pattern)).withStartupTimeout(timeoutMs);
  }
}

/** Container facts the tests read from the engine. */
export async function inspect(id: string): Promise<{
  pid: number;
  running: boolean;
  paused: boolean;
  exitCode: number;
  ip: (network: string) => string;
  mounts: { Destination: string; Source: string; RW: boolean }[];
  user: string;
  readOnly: boolean;
}> {
  const [info] = JSON.parse(await docker(['inspect', id])) as {
    State: { Pid: number; Running: boolean; Paused: boolean; ExitCode: number };
    NetworkSettings: { Networks: Record<string, { IPAddress: string }> };
    Mounts: { Destination: string; Source: string; RW: boolean }[];
    Config: { User: string };
    HostConfig: { ReadonlyRootfs: boolean };
  }[];
  if (info === undefined) throw new Error(`no container ${id}`);
  return {
    pid: info.State.Pid,
    running: info.State.Running,
    paused: info.State.Paused,
    exitCode: info.State.ExitCode,
    ip: (network) => info.NetworkSettings.Networks[network]?.IPAddress ?? '',
    mounts: info.Mounts,
    user: info.Config.User,
    readOnly: info.HostConfig.ReadonlyRootfs,
  };
}

/** Sends a signal to a container's main process. */
export async function signal(id: string, name: 'TERM' | 'KILL'): Promise<void> {
  await docker(['kill', '--signal', name, id]);
}

/** Resolves with the container's exit code once it has exited (docker wait: no polling). */
export async function waitForExit(id: string): Promise<number> {
  return Number((await docker(['wait', id])).trim());
}

/** Resolves with the first line of the container's log (past or to come) matching the pattern. */
export function waitForContainerLog(id: string, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    // Tracked, so a harness that dies mid-wait leaves no `docker logs --follow` behind.
    const follower = track(spawn('docker', ['logs', '--follow', id], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const seen: string[] = [];
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      follower.kill();
      fn();
    };
    const timer = setTimeout(
      () =>
        finish(() =>
          reject(new Error(`container ${id}: no log line matching ${pattern} within ${timeoutMs} ms:\n${seen.slice(-20).join('\n')}`)),
        ),
      timeoutMs,
    );
    for (const stream of [follower.stdout, follower.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        seen.push(line);
        if (pattern.test(line)) finish(() => resolve(line));
      });
    }
    follower.once('exit', () =>
      finish(() => reject(new Error(`container ${id} ended before logging ${pattern}:\n${seen.slice(-20).join('\n')}`))),
    );
  });
}

export type { StartedTestContainer };
