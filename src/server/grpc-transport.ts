// A small gRPC server on Node's own HTTP/2: the service's few methods (ext_proc, health, the access log
// service) served straight from HTTP/2 streams, without a gRPC library's per-call objects, Duplex
// streams and channelz bookkeeping (on 2 cores they cost half the throughput and most of the tail:
// docs/benchmarks.md). It owns exactly what the methods need: routing by path, UNIMPLEMENTED for the
// rest, message framing (grpc-wire.ts), grpc-timeout, statuses in trailers or trailers-only answers,
// RST_STREAM and disconnects from either side, GOAWAY on shutdown, and per-listener rapid-reset limits.
import http2, {
  type Http2SecureServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import { encodeGrpcMessage, frame, isGrpcContentType, MessageReader, parseGrpcTimeout, Status } from './grpc-wire.ts';

/** One call, as the method sees it. */
export interface GrpcCall {
  /** Sends one serialized message (headers first, on the first send). */
  send(message: Buffer): void;
  /** Ends the call with OK. */
  finish(): void;
  /** Ends the call with a status (trailers-only when nothing was sent yet). */
  fail(code: number, details: string): void;
  /** Ended by us or the peer. */
  readonly ended: boolean;
}

/** What a method does with a call's input. Every call gets exactly one of halfClose or cancel last. */
export interface CallHandlers {
  message(bytes: Buffer): void;
  /** The peer sent all its messages (END_STREAM). */
  halfClose(): void;
  /** The call ended before we finished it: reset, timed out, or the connection went away. */
  cancel(): void;
}

export type Method = (call: GrpcCall) => CallHandlers;

export interface StreamResetLimits {
  /** Resets accepted at once before the rate applies. */
  readonly burst: number;
  /** Resets per second accepted after the burst. */
  readonly perSecond: number;
}

export interface TransportServerOptions {
  readonly limits: StreamResetLimits;
  /** TLS, with client certificates required when `requestCert`. */
  readonly tls?: SecureContextOptions & { readonly requestCert: boolean };
  readonly maxConcurrentStreams: number;
}

const RESPONSE_HEADERS = { ':status': 200, 'content-type': 'application/grpc' } as const;
const OK_TRAILERS = { 'grpc-status': '0' } as const;

class Http2Call implements GrpcCall {
  readonly #stream: ServerHttp2Stream;
  #headersSent = false;
  #ended = false;
  #trailers: Record<string, string> = OK_TRAILERS;
  #timer: NodeJS.Timeout | undefined;
  handlers: CallHandlers | undefined;

  constructor(stream: ServerHttp2Stream) {
    this.#stream = stream;
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(message: Buffer): void {
    if (this.#ended || this.#stream.destroyed) return;
    if (!this.#headersSent) this.#respond();
    this.#stream.write(frame(message));
  }

  finish(): void {
    this.#end(Status.OK, '');
  }

  fail(code: number, details: string): void {
    this.#end(code, details);
  }

  /** Ends the call at the deadline the client set (grpc-timeout). */
  expireAfter(ms: number): void {
    this.#timer = setTimeout(() => {
      if (this.#ended) return;
      this.#end(Status.DEADLINE_EXCEEDED, 'deadline exceeded');
      this.handlers?.cancel();
    }, ms);
  }

  /** The peer or the connection ended the call first. */
  aborted(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    this.handlers?.cancel();
  }

  #respond(): void {
    this.#headersSent = true;
    this.#stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    this.#stream.once('wantTrailers', () => this.#stream.sendTrailers(this.#trailers));
  }

  #end(code: number, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    if (this.#stream.destroyed || this.#stream.closed) return;
    const status: Record<string, string> =
      code === Status.OK ? OK_TRAILERS : { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(details) };
    if (this.#headersSent) {
      this.#trailers = status;
      this.#stream.end();
    } else {
      // Trailers-only: the status rides on the response headers, and the stream ends with them.
      this.#stream.respond({ ...RESPONSE_HEADERS, ...status }, { endStream: true });
    }
  }
}

export class GrpcTransport {
  readonly #methods = new Map<string, Method>();
  readonly #servers: (Http2Server | Http2SecureServer)[] = [];
  readonly #sessions = new Set<ServerHttp2Session>();

  /** Serves `path` ("/package.Service/Method") with `method`. */
  handle(path: string, method: Method): void {
    this.#methods.set(path, method);
  }

  /** An HTTP/2 server for one listener (not yet listening), whose streams go to the methods. */
  createServer(options: TransportServerOptions): Http2Server | Http2SecureServer {
    const common = {
      // Envoy keeps one long-lived connection and runs every request's stream on it.
      settings: { maxConcurrentStreams: options.maxConcurrentStreams },
      // Node's default session memory cap (10 MB) would reset streams of a busy connection.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      streamResetBurst: options.limits.burst,
      streamResetRate: options.limits.perSecond,
    };
    const server =
      options.tls === undefined
        ? http2.createServer(common)
        : http2.createSecureServer({ ...common, ...options.tls, rejectUnauthorized: options.tls.requestCert, ALPNProtocols: ['h2'] });
    server.on('session', (session: ServerHttp2Session) => {
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      // Session errors (a peer breaking HTTP/2) end that session; its streams see 'close'.
      session.on('error', () => undefined);
    });
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
    // TLS handshakes that fail (no client certificate under mTLS) close that socket and nothing else.
    server.on('tlsClientError', () => undefined);
    this.#servers.push(server);
    return server;
  }

  /** Sends GOAWAY on every session: the peer opens no new stream here, open ones go on. */
  drain(): void {
    for (const server of this.#servers) server.close();
    for (const session of this.#sessions) if (!session.closed) session.close();
  }

  /** Resolves once every session has closed (after drain(), each closes when its last stream is done). */
  closed(): Promise<void> {
    if (this.#sessions.size === 0) return Promise.resolve();
    // `closed` turns true as soon as close() is asked for; 'close' comes once the session is gone.
    return Promise.all(
      [...this.#sessions].map((s) => new Promise((resolve) => (s.destroyed ? resolve(undefined) : s.once('close', resolve)))),
    ).then(() => undefined);
  }

  /** Cuts every session (at the end of the shutdown grace). */
  destroy(): void {
    for (const session of this.#sessions) session.destroy();
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'POST' || !isGrpcContentType(headers['content-type'])) {
      // Not gRPC at all: HTTP's own answer, as the gRPC spec asks.
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const call = new Http2Call(stream);
    const method = this.#methods.get(headers[':path'] ?? '');
    if (method === undefined) {
      call.fail(Status.UNIMPLEMENTED, `unknown method ${headers[':path'] ?? ''}`);
      stream.resume();
      return;
    }
    const handlers = method(call);
    call.handlers = handlers;
    const timeout = parseGrpcTimeout(headers['grpc-timeout'] as string | undefined);
    if (timeout !== undefined) call.expireAfter(timeout);
    const reader = new MessageReader();
    stream.on('data', (chunk: Buffer) => {
      const error = reader.push(chunk, (message) => {
        if (!call.ended) handlers.message(message);
      });
      if (error !== undefined) {
        call.fail(error.code, error.details);
        handlers.cancel();
      }
    });
    stream.on('end', () => {
      if (call.ended) return;
      if (reader.incomplete) {
        call.fail(Status.INTERNAL, 'the stream ended in the middle of a message');
        handlers.cancel();
        return;
      }
      handlers.halfClose();
    });
    // RST_STREAM from the peer, a connection lost, or our own end: whichever comes first wins.
    stream.on('close', () => call.aborted());
  }
}
