// The gRPC server: ext_proc and grpc.health.v1 on TCP and/or a Unix domain socket.
import { chmod, readFile, rm } from 'node:fs/promises';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { externalProcessorService } from '../protocol/proto.ts';
import type { ProcessingRequest } from '../protocol/messages.ts';
import { allowEnvoyStreamResets } from './http2-limits.ts';
import { handleProcessStream, type StreamDeps } from './process-stream.ts';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

export interface GrpcTls {
  /** PEM files; clientCa set means clients must present a certificate it signed. */
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string;
}

export interface GrpcListenOptions {
  readonly tls: GrpcTls | undefined;
  readonly tcp: boolean;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly socket: string;
  readonly socketMode: number;
}

export class GrpcServer {
  readonly #server: Server;
  readonly #health = new HealthImplementation({ '': 'NOT_SERVING', [EXT_PROC_SERVICE]: 'NOT_SERVING' });
  /** The TCP port bound, once listening on TCP. */
  tcpPort: number | undefined;

  constructor(options: Omit<StreamDeps, 'load'>) {
    const deps: StreamDeps = { ...options, load: { active: 0 } };
    allowEnvoyStreamResets();
    // Envoy keeps one long-lived HTTP/2 connection: let it carry many concurrent streams.
    this.#server = new Server({ 'grpc.max_concurrent_streams': 10_000, 'grpc.keepalive_permit_without_calls': 1 });
    this.#server.addService(externalProcessorService, {
      Process: (call: ServerDuplexStream<ProcessingRequest, Buffer>) => handleProcessStream(call, deps),
    });
    this.#health.addToServer(this.#server);
  }

  async listen(options: GrpcListenOptions): Promise<void> {
    const credentials = options.tls === undefined ? ServerCredentials.createInsecure() : await tlsCredentials(options.tls);
    if (options.tcp)
      this.tcpPort = await this.#bind(`${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`, credentials);
    if (options.socket !== '') {
      await rm(options.socket, { force: true });
      // The socket's file mode is its access control, so it stays plaintext.
      await this.#bind(`unix://${options.socket}`, ServerCredentials.createInsecure());
      await chmod(options.socket, options.socketMode);
    }
  }

  setServing(serving: boolean): void {
    const state = serving ? 'SERVING' : 'NOT_SERVING';
    this.#health.setStatus('', state);
    this.#health.setStatus(EXT_PROC_SERVICE, state);
  }

  /**
   * Stops taking new streams and lets open ones finish for at most graceMs. Then `answerHeld` answers
   * requests still held (so their clients get a response, not a reset), and after a last second to
   * flush those answers the remaining streams are cut.
   */
  shutdown(graceMs: number, answerHeld: () => void = () => undefined): Promise<void> {
    this.setServing(false);
    return new Promise((resolve) => {
      let force: NodeJS.Timeout | undefined;
      const grace = setTimeout(() => {
        answerHeld();
        force = setTimeout(() => {
          this.#server.forceShutdown();
          resolve();
        }, 1000);
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(grace);
        clearTimeout(force);
        resolve();
      });
    });
  }

  #bind(address: string, credentials: ServerCredentials): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(address, credentials, (error, port) =>
        error ? reject(new Error(`cannot listen on ${address}: ${error.message}`)) : resolve(port),
      );
    });
  }
}

async function tlsCredentials(tls: GrpcTls): Promise<ServerCredentials> {
  const read = (path: string, setting: string) =>
    readFile(path).catch((error: unknown) => {
      throw new Error(`cannot read ${setting} ${path}: ${(error as Error).message}`, { cause: error });
    });
  const [cert, key] = [await read(tls.cert, '--grpc-tls-cert'), await read(tls.key, '--grpc-tls-key')];
  const ca = tls.clientCa === '' ? null : await read(tls.clientCa, '--grpc-tls-client-ca');
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
}
