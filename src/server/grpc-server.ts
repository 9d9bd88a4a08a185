// The gRPC server: ext_proc, grpc.health.v1 and (with activity on) Envoy's access log service, on TCP
// and/or a Unix domain socket, served by the service's own gRPC transport on node:http2
// (grpc-transport.ts). Each listener's HTTP/2 server gets the stream-reset limits its peers deserve:
// - trusted: clients proved who they are (mTLS), or can only be local (a loopback-only TCP address,
//   a Unix socket guarded by its file mode): no practical limit, Envoy's per-stream resets are normal;
// - anything else (plaintext or server-only TLS on a reachable address): Node's rapid-reset guard
//   stays on, at --grpc-stream-reset-limit, high enough for an Envoy, as a backstop.
// Every listener also gets the transport's own bounds (grpc-transport.ts), whoever its peers are: the
// guard against empty streams (what a rapid-reset flood is made of, and Envoy never sends) costs Envoy
// nothing, so it needs no exemption.
import { chmod, readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { Http2SecureServer, Http2Server } from 'node:http2';
import type { Metrics } from '../observability/metrics.ts';
import { ACCESS_LOG_PATH, type ActivityFact } from '../protocol/access-log.ts';
import { EXT_PROC_PATH } from '../protocol/proto.ts';
import { handleAccessLogStream } from './access-log-stream.ts';
import { GrpcTransport, type StreamResetLimits, type TransportLimits } from './grpc-transport.ts';
import { HealthService } from './health.ts';
import { RequestReader } from '../protocol/request-reader.ts';
import { handleProcessStream, StreamLoad, type StreamDeps } from './process-stream.ts';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** For peers that authenticated (mTLS) or can only be local (loopback, a Unix socket): no practical limit. */
export const TRUSTED_PEER_LIMITS: StreamResetLimits = { burst: 1_000_000_000, perSecond: 1_000_000_000 };

/** Streams one connection may carry at once (Envoy runs every request's stream on one connection). */
const MAX_CONCURRENT_STREAMS = 10_000;
/**
 * Streams one connection may hold open before their first message; more are refused (REFUSED_STREAM).
 * Envoy sends each stream's first message with its HEADERS, so it has next to none waiting.
 */
const MAX_IDLE_STREAMS = 1000;
/** A health check carries one service name. */
const MAX_HEALTH_MESSAGE_BYTES = 16 * 1024;

/** The transport's bounds and the per-method message sizes, from the settings. */
export interface GrpcLimits extends Omit<TransportLimits, 'maxIdleStreams'> {
  readonly maxExtProcMessageBytes: number;
  readonly maxAccessLogMessageBytes: number;
}

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

export class GrpcServer {
  readonly #transport: GrpcTransport;
  readonly #health = new HealthService([EXT_PROC_SERVICE]);
  readonly #load = new StreamLoad();
  readonly #trusts: PeerTrust[] = [];
  /** The TCP port bound, once listening on TCP. */
  tcpPort: number | undefined;

  /** `onActivity` set: also serve Envoy's access log service, whose entries are sandbox activity. */
  constructor(
    options: Omit<StreamDeps, 'load' | 'metrics' | 'requests'> & {
      readonly metrics: Pick<Metrics, 'streamsActive' | 'grpcHandlerErrors' | 'grpcLimited'>;
      readonly limits: GrpcLimits;
      readonly onActivity?: (fact: ActivityFact) => void;
    },
  ) {
    const { onActivity, limits, ...streamOptions } = options;
    const { logger, metrics } = options;
    this.#transport = new GrpcTransport(
      { ...limits, maxIdleStreams: MAX_IDLE_STREAMS },
      {
        handlerFailed: (method, error) => {
          metrics.grpcHandlerErrors.inc({ method });
          logger.error({ err: error, method }, 'a gRPC handler failed; the call ended INTERNAL');
        },
        limited: (limit) => {
          metrics.grpcLimited.inc({ limit });
          logger.debug({ limit }, 'a gRPC connection or stream was cut short by a transport bound');
        },
      },
    );
    // Only the headers the processor reads are decoded (a stand-in processor in tests names none).
    const requests = new RequestReader(streamOptions.processor.headerNames ?? []);
    const deps: StreamDeps = { ...streamOptions, load: this.#load, requests };
    this.#transport.handle(EXT_PROC_PATH, (call) => handleProcessStream(call, deps), { maxMessageBytes: limits.maxExtProcMessageBytes });
    if (onActivity !== undefined) {
      this.#transport.handle(ACCESS_LOG_PATH, (call) => handleAccessLogStream(call, onActivity, options.logger), {
        maxMessageBytes: limits.maxAccessLogMessageBytes,
      });
    }
    this.#health.register(this.#transport, { maxMessageBytes: MAX_HEALTH_MESSAGE_BYTES });
  }

  /** The trust each listener was given, in the order they were opened (for tests and logs). */
  get trusts(): readonly PeerTrust[] {
    return this.#trusts;
  }

  async listen(options: GrpcListenOptions): Promise<void> {
    const untrusted: StreamResetLimits = { burst: options.untrustedResetLimit, perSecond: options.untrustedResetLimit };
    if (options.tcp) {
      const tls = options.tls === undefined ? undefined : await tlsOptions(options.tls);
      const trust: PeerTrust = tls?.requestCert === true ? 'mtls' : isLoopbackHost(options.host) ? 'local' : 'untrusted';
      const server = this.#transport.createServer({
        limits: trust === 'untrusted' ? untrusted : TRUSTED_PEER_LIMITS,
        maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
        ...(tls === undefined ? {} : { tls }),
      });
      this.#trusts.push(trust);
      this.tcpPort = await listenOn(server, { host: options.host, port: options.port }, `${options.host}:${options.port}`);
    }
    if (options.socket !== '') {
      await rm(options.socket, { force: true });
      // The socket's file mode is its access control, so it stays plaintext.
      const server = this.#transport.createServer({ limits: TRUSTED_PEER_LIMITS, maxConcurrentStreams: MAX_CONCURRENT_STREAMS });
      this.#trusts.push('local');
      await listenOn(server, { path: options.socket }, options.socket);
      await chmod(options.socket, options.socketMode);
    }
  }

  setServing(serving: boolean): void {
    this.#health.setServing(serving);
  }

  /**
   * Stops taking new connections and streams (GOAWAY) and lets open streams finish for at most
   * graceMs. Then `answerHeld` answers requests still held (so their clients get a response, not a
   * reset), and after half a second to flush those answers the remaining sessions are cut: all within
   * grace + 1 s, when the command exits whatever happens (src/cli.ts).
   */
  async shutdown(graceMs: number, answerHeld: () => void = () => undefined): Promise<void> {
    this.setServing(false);
    this.#transport.drain();
    if (!(await within(this.#load.idle(), graceMs))) {
      answerHeld();
      await within(this.#load.idle(), 500);
    }
    // Streams are done; their last frames (trailers) still have to leave: sessions close by themselves
    // once flushed. Whatever is still open after 400 ms is cut (inside the command's grace + 1 s).
    await within(this.#transport.closed(), 400);
    this.#transport.destroy();
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

function listenOn(
  server: Http2Server | Http2SecureServer,
  where: { host: string; port: number } | { path: string },
  label: string,
): Promise<number> {
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

async function tlsOptions(tls: GrpcTls): Promise<{ cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean }> {
  const read = (path: string, setting: string) =>
    readFile(path).catch((error: unknown) => {
      throw new Error(`cannot read ${setting} ${path}: ${(error as Error).message}`, { cause: error });
    });
  const [cert, key] = [await read(tls.cert, '--grpc-tls-cert'), await read(tls.key, '--grpc-tls-key')];
  if (tls.clientCa === '') return { cert, key, requestCert: false };
  return { cert, key, ca: await read(tls.clientCa, '--grpc-tls-client-ca'), requestCert: true };
}
