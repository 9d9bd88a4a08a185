// The gRPC server: ext_proc and grpc.health.v1 on TCP and/or a Unix domain socket. The service owns its
// listening sockets and hands each connection to grpc-js (a connection injector per listener), so each
// listener's HTTP/2 server gets the stream-reset limits its peers deserve (http2-limits.ts):
// - trusted: clients proved who they are (mTLS), or can only be local (a loopback-only TCP address,
//   a Unix socket guarded by its file mode): no practical limit, Envoy's per-stream resets are normal;
// - anything else (plaintext or server-only TLS on a reachable address): Node's rapid-reset guard
//   stays on, at --grpc-stream-reset-limit, high enough for an Envoy, low enough to stop a flood.
import { chmod, readFile, rm } from 'node:fs/promises';
import { createServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { Server, ServerCredentials, type ServerDuplexStream, type ServerReadableStream, type sendUnaryData } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { accessLogService, type ActivityFact, type StreamAccessLogsMessage } from '../protocol/access-log.ts';
import { externalProcessorService } from '../protocol/proto.ts';
import type { ProcessingRequest } from '../protocol/messages.ts';
import { TRUSTED_PEER_LIMITS, withStreamResetLimits, type StreamResetLimits } from './http2-limits.ts';
import { handleAccessLogStream } from './access-log-stream.ts';
import { handleProcessStream, StreamLoad, type StreamDeps } from './process-stream.ts';

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
  /** Stream resets per second (and burst) allowed per connection from peers that are not trusted. */
  readonly untrustedResetLimit: number;
}

/** How a listener's peers are known; decides its stream-reset limits. */
export type PeerTrust = 'mtls' | 'local' | 'untrusted';

/** Whether a TCP listen address can only be reached from this host. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const version = isIP(host);
  return (version === 4 && host.startsWith('127.')) || (version === 6 && (host === '::1' || host.startsWith('::ffff:127.')));
}

interface Listener {
  readonly server: NetServer;
  readonly trust: PeerTrust;
  readonly sockets: Set<Socket>;
}

export class GrpcServer {
  readonly #server: Server;
  readonly #health = new HealthImplementation({ '': 'NOT_SERVING', [EXT_PROC_SERVICE]: 'NOT_SERVING' });
  readonly #listeners: Listener[] = [];
  readonly #load = new StreamLoad();
  /** The TCP port bound, once listening on TCP. */
  tcpPort: number | undefined;

  /** `onActivity` set: also serve Envoy's access log service, whose entries are sandbox activity. */
  constructor(options: Omit<StreamDeps, 'load'> & { readonly onActivity?: (fact: ActivityFact) => void }) {
    const { onActivity, ...streamOptions } = options;
    const deps: StreamDeps = { ...streamOptions, load: this.#load };
    // Envoy keeps one long-lived HTTP/2 connection: let it carry many concurrent streams.
    this.#server = new Server({ 'grpc.max_concurrent_streams': 10_000, 'grpc.keepalive_permit_without_calls': 1 });
    this.#server.addService(externalProcessorService, {
      Process: (call: ServerDuplexStream<ProcessingRequest, Buffer>) => handleProcessStream(call, deps),
    });
    if (onActivity !== undefined) {
      this.#server.addService(accessLogService, {
        StreamAccessLogs: (call: ServerReadableStream<StreamAccessLogsMessage, object>, done: sendUnaryData<object>) =>
          handleAccessLogStream(call, done, onActivity, options.logger),
      });
    }
    this.#health.addToServer(this.#server);
  }

  /** The trust each listener was given, in the order they were opened (for tests and logs). */
  get trusts(): readonly PeerTrust[] {
    return this.#listeners.map((l) => l.trust);
  }

  async listen(options: GrpcListenOptions): Promise<void> {
    const untrusted: StreamResetLimits = { burst: options.untrustedResetLimit, perSecond: options.untrustedResetLimit };
    if (options.tcp) {
      const credentials = options.tls === undefined ? ServerCredentials.createInsecure() : await tlsCredentials(options.tls);
      const trust: PeerTrust =
        options.tls !== undefined && options.tls.clientCa !== '' ? 'mtls' : isLoopbackHost(options.host) ? 'local' : 'untrusted';
      const listener = this.#open(credentials, trust === 'untrusted' ? untrusted : TRUSTED_PEER_LIMITS, trust);
      this.tcpPort = await listenOn(listener.server, { host: options.host, port: options.port }, `${options.host}:${options.port}`);
    }
    if (options.socket !== '') {
      await rm(options.socket, { force: true });
      // The socket's file mode is its access control, so it stays plaintext.
      const listener = this.#open(ServerCredentials.createInsecure(), TRUSTED_PEER_LIMITS, 'local');
      await listenOn(listener.server, { path: options.socket }, options.socket);
      await chmod(options.socket, options.socketMode);
    }
  }

  setServing(serving: boolean): void {
    const state = serving ? 'SERVING' : 'NOT_SERVING';
    this.#health.setStatus('', state);
    this.#health.setStatus(EXT_PROC_SERVICE, state);
  }

  /**
   * Stops taking new connections and streams and lets open streams finish for at most graceMs. Then
   * `answerHeld` answers requests still held (so their clients get a response, not a reset), and after
   * half a second to flush those answers the remaining streams are cut (the command exits at grace plus
   * one second whatever happens, src/cli.ts). Waits follow the stream count,
   * not grpc-js's tryShutdown callback, which fires as soon as its sessions are asked to close.
   */
  async shutdown(graceMs: number, answerHeld: () => void = () => undefined): Promise<void> {
    this.setServing(false);
    for (const listener of this.#listeners) listener.server.close();
    // Sends GOAWAY on every session: Envoy opens no new stream here, open ones go on.
    this.#server.tryShutdown(() => undefined);
    if (!(await within(this.#load.idle(), graceMs))) {
      answerHeld();
      await within(this.#load.idle(), 500);
    }
    this.#server.forceShutdown();
    for (const listener of this.#listeners) for (const socket of listener.sockets) socket.destroy();
  }

  /** A listening socket whose connections go to grpc-js through an injector made with `limits`. */
  #open(credentials: ServerCredentials, limits: StreamResetLimits, trust: PeerTrust): Listener {
    const injector = withStreamResetLimits(limits, () => this.#server.createConnectionInjector(credentials));
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      injector.injectConnection(socket);
    });
    const listener = { server, trust, sockets };
    this.#listeners.push(listener);
    return listener;
  }
}

/** Whether `promise` settled within `ms`. */
function within(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function listenOn(server: NetServer, where: { host: string; port: number } | { path: string }, label: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(new Error(`cannot listen on ${label}: ${error.message}`));
    server.once('error', onError);
    server.listen(where, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
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
