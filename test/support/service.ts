// Runs sandbox-extproc in-process for tests, through the same main() the command uses, on free ports.
import { App, type Listening } from '../../src/app.ts';
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

export async function startService(args: readonly string[], env: Record<string, string> = {}): Promise<RunningService> {
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
