// agent-sandbox's own router (sandbox-router v1.0.1, built from the Go module by scripts/provision.sh
// controllers), run beside the stack as the reference a parity test compares against: same request to
// both, same status and the same `detail`. Without its Pod-IP cache it routes by DNS
// (<name>.<namespace>.svc.cluster.local), which names nothing here: what it is asked is answered before
// any dial (validation, authorization) or is its dial failure (502).
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { TestProcess } from './process.ts';
import { toolPath } from './tools.ts';

export interface TheirRouter {
  readonly url: string;
  readonly process: TestProcess;
  stop(): Promise<void>;
}

export async function startTheirRouter(args: readonly string[] = []): Promise<TheirRouter> {
  const [http, metrics, probes] = [await freePort(), await freePort(), await freePort()];
  const process = new TestProcess('sandbox-router', join(toolPath('SBX_AGENT_SANDBOX'), 'bin', 'sandbox-router'), [
    `--http-bind-address=127.0.0.1:${http}`,
    `--metrics-bind-address=127.0.0.1:${metrics}`,
    `--health-probe-bind-address=127.0.0.1:${probes}`,
    '--access-log=false',
    ...args,
  ]);
  try {
    await process.waitForLine(/"name":"proxy-http"/, 30_000);
  } catch (error) {
    await process.stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${http}`, process, stop: () => process.stop() };
}
