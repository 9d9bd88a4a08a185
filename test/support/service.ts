// Runs sandbox-extproc in-process for tests, through the same main() the command uses, on free ports.
import { Writable } from 'node:stream';
import { App, type Listening } from '../../src/app.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/settings.ts';
import { main } from '../../src/main.ts';

export interface RunningService {
  readonly app: App;
  readonly listening: Listening;
  stop(): Promise<void>;
}

/**
 * The stand-in sandboxes listen on loopback addresses, which the service refuses as pod IPs unless told
 * (a route to 127.0.0.1 would reach the sidecar Envoy's admin port in production).
 */
export const TEST_UPSTREAM_ENV = { SANDBOX_EXTPROC_UPSTREAM_CIDRS: '0.0.0.0/0,::/0,127.0.0.0/8' } as const;

/**
 * Outside a cluster the service has no namespace of its own for the idle suspender's Lease: the tests
 * keep it in the namespace of the service's ServiceAccount, where ControlPlane.serviceIdentity grants it.
 */
export const TEST_LEASE_ENV = { SANDBOX_EXTPROC_LEASE_NAMESPACE: 'sandbox-extproc-system' } as const;

export interface ServiceOptions {
  /**
   * Receives every log line the service writes (pino's JSON, one chunk per line), for a test that reads
   * its logs; the service is then built as main() builds it, with this as its log stream.
   */
  readonly logs?: (line: string) => void;
}

export async function startService(
  args: readonly string[],
  env: Record<string, string> = {},
  options: ServiceOptions = {},
): Promise<RunningService> {
  if (options.logs !== undefined) return startLogged(args, env, options.logs);
  const errors: string[] = [];
  const result = await main(
    ['--grpc-port', '0', '--http-port', '0', '--log-level', 'warn', ...args],
    { ...TEST_UPSTREAM_ENV, ...TEST_LEASE_ENV, ...env },
    {
      stdout: () => undefined,
      stderr: (text) => errors.push(text),
    },
  );
  if (typeof result === 'number') throw new Error(`sandbox-extproc did not start (exit ${result}): ${errors.join('')}`);
  return { app: result, listening: result.listening as Listening, stop: () => result.stop() };
}

/** main()'s start-up with the logs going to `logs` instead of stdout. */
async function startLogged(args: readonly string[], env: Record<string, string>, logs: (line: string) => void): Promise<RunningService> {
  const loaded = loadConfig(['--grpc-port', '0', '--http-port', '0', '--log-level', 'warn', ...args], {
    ...TEST_UPSTREAM_ENV,
    ...TEST_LEASE_ENV,
    ...env,
  });
  const sink = new Writable({ write: (chunk: Buffer, _encoding, done) => (logs(chunk.toString()), done()) });
  const app = await App.create((loaded as { config: Config }).config, sink);
  const listening = await app.start();
  return { app, listening, stop: () => app.stop() };
}
