// Starts one of the bare reference ext_proc servers as its own process, optionally pinned to a CPU:
// bare-grpc-server.ts (grpc-js), bare-http2-server.ts (Node's http2, gRPC framing by hand) and
// bare-go-server (Go's net/http HTTP/2, the same by hand; built by scripts/provision.sh load).
import { TestProcess } from '../support/process.ts';
import { REPO_ROOT, toolPath } from '../support/tools.ts';

export type BareServer = 'bare-grpc-server.ts' | 'bare-http2-server.ts' | 'bare-go-server';

/** `nodeFlags`: Node flags for the Node servers (the allocation probe). */
export async function startBare(
  script: BareServer,
  reply?: Buffer,
  cpu?: number,
  nodeFlags: readonly string[] = [],
): Promise<{ port: number; process: TestProcess; stop(): Promise<void> }> {
  const program =
    script === 'bare-go-server' ? [toolPath('SBX_BARE_GO')] : [process.execPath, ...nodeFlags, `${REPO_ROOT}test/bench/${script}`];
  const command = [...program, ...(reply ? [reply.toString('hex')] : [])];
  const [file, ...args] = cpu === undefined ? command : ['taskset', '-c', String(cpu), ...command];
  const bare = new TestProcess(script, file as string, args);
  const { grpcPort } = JSON.parse(await bare.waitForLine(/server listening/, 20_000)) as { grpcPort: number };
  return { port: grpcPort, process: bare, stop: () => bare.stop() };
}
