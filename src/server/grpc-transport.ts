// A small gRPC server on Node's own HTTP/2: the service's few methods (ext_proc, health, the access log
// service) served straight from HTTP/2 streams, without a gRPC library's per-call objects, Duplex
// streams and channelz bookkeeping (on 2 cores they cost half the throughput and most of the tail:
// docs/benchmarks.md). It owns exactly what the methods need: routing by path, UNIMPLEMENTED for the
// rest, message framing (grpc-wire.ts), grpc-timeout, statuses in trailers or trailers-only answers,
// RST_STREAM and disconnects from either side, GOAWAY on shutdown; and, since any peer the network
// admits may speak to it, the bounds that hold against a hostile one (grpc-connection.ts): message
// sizes per method, bytes held per connection and in all, connections, idle streams, empty streams
// (rapid reset), a handler's exception contained to its call, and keepalive PINGs.
import http2, {
  type Http2SecureServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { Server as NetServer } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { ByteBudget } from './byte-budget.ts';
import { answerNotGrpc, answerTrailersOnly, Http2Call, type CallHandlers, type GrpcCall } from './grpc-call.ts';
import { Connection, type ConnectionLimits, type Limit } from './grpc-connection.ts';
import { isAcceptedEncoding, isGrpcContentType, parseGrpcTimeout, Status } from './grpc-wire.ts';

export type { CallHandlers, GrpcCall } from './grpc-call.ts';
export type { Limit } from './grpc-connection.ts';

const { NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

export type Method = (call: GrpcCall) => CallHandlers;

export interface MethodOptions {
  /** Largest message a call of this method may send. */
  readonly maxMessageBytes: number;
}

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

export interface TransportLimits extends ConnectionLimits {
  /** Bytes held for all connections together. */
  readonly serverBufferBytes: number;
  /** Connections open at once per listener; more are closed as they arrive. */
  readonly maxConnections: number;
  /** A stream that has not sent its first message within this is ended. */
  readonly firstMessageTimeoutMs: number;
}

/** What the transport reports; the server turns it into logs and metrics. */
export interface TransportEvents {
  /** A method's handler threw: the call ended INTERNAL, the process goes on. */
  handlerFailed(path: string, error: unknown): void;
  /** A bound was hit (a connection or stream cut short). */
  limited(limit: Limit): void;
}

interface Registered {
  readonly path: string;
  readonly method: Method;
  readonly maxMessageBytes: number;
}

/** RFC 9113 §6.8: the first GOAWAY of a graceful close names the highest stream ID possible. */
const GOAWAY_NOTICE_STREAM_ID = 2 ** 31 - 1;
/** How long the graceful close waits for the PING that follows the notice before the real GOAWAY. */
const GOAWAY_PING_TIMEOUT_MS = 1000;
/** Sweeps of idle streams per first-message timeout (a stream waits at most 1.25 timeouts). */
const SWEEPS_PER_TIMEOUT = 4;
const UNIMPLEMENTED_HEADERS = { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(Status.UNIMPLEMENTED) } as const;

export class GrpcTransport {
  readonly #methods = new Map<string, Registered>();
  readonly #servers: (Http2Server | Http2SecureServer)[] = [];
  readonly #connections = new Map<ServerHttp2Session, Connection>();
  readonly #limits: TransportLimits;
  readonly #events: TransportEvents;
  readonly #budget: ByteBudget;
  /** Calls still waiting for their first message, oldest first (an intrusive list: no allocation). */
  #idleHead: Http2Call | undefined;
  #idleTail: Http2Call | undefined;
  #tick = 0;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(limits: TransportLimits, events: TransportEvents) {
    this.#limits = limits;
    this.#events = events;
    this.#budget = new ByteBudget(limits.serverBufferBytes);
  }

  /** Serves `path` ("/package.Service/Method") with `method`. */
  handle(path: string, method: Method, options: MethodOptions): void {
    this.#methods.set(path, { path, method, maxMessageBytes: options.maxMessageBytes });
  }

  /** An HTTP/2 server for one listener (not yet listening), whose streams go to the methods. */
  createServer(options: TransportServerOptions): Http2Server | Http2SecureServer {
    const common = {
      // Envoy keeps one long-lived connection and runs every request's stream on it.
      settings: { maxConcurrentStreams: options.maxConcurrentStreams },
      // Node's own account of a session (nghttp2's state, header tables, frames queued): its default
      // (10 MB) would reset streams of a busy connection; ours (grpc-connection.ts) bounds the bytes
      // a peer makes us hold, and this stays a backstop above it.
      maxSessionMemory: Math.max(64, Math.ceil((4 * this.#limits.bufferBytes) / 2 ** 20)),
      streamResetBurst: options.limits.burst,
      streamResetRate: options.limits.perSecond,
    };
    const server =
      options.tls === undefined
        ? http2.createServer(common)
        : http2.createSecureServer({ ...common, ...options.tls, rejectUnauthorized: options.tls.requestCert, ALPNProtocols: ['h2'] });
    server.maxConnections = this.#limits.maxConnections;
    server.on('drop', () => this.#events.limited('connections'));
    server.on('session', (session: ServerHttp2Session) => this.#onSession(session));
    // TLS handshakes that fail (no client certificate under mTLS) close that socket and nothing else.
    server.on('tlsClientError', () => undefined);
    this.#servers.push(server);
    this.#sweeper ??= setInterval(() => this.#sweep(), this.#limits.firstMessageTimeoutMs / SWEEPS_PER_TIMEOUT).unref();
    return server;
  }

  /**
   * Graceful close (RFC 9113 §6.8): a GOAWAY naming the highest stream ID, so streams the peer is
   * opening right now are still served; a PING, whose answer proves the peer has seen it; then the
   * GOAWAY with the real last stream. Open streams go on; each session closes when they are done.
   */
  drain(): void {
    // Stop listening only: Http2Server.close() would also close every session at once, with one
    // GOAWAY naming the last stream seen, which is what the sequence below exists to avoid.
    for (const server of this.#servers) NetServer.prototype.close.call(server);
    for (const session of this.#connections.keys()) {
      if (session.closed || session.destroyed) continue;
      session.goaway(NGHTTP2_NO_ERROR, GOAWAY_NOTICE_STREAM_ID);
      let done = false;
      const close = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (!session.closed && !session.destroyed) session.close();
      };
      const timer = setTimeout(close, GOAWAY_PING_TIMEOUT_MS);
      // Once the GOAWAY has left (nghttp2 would otherwise send the PING first), so that its answer
      // proves the peer has seen it.
      setImmediate(() => {
        if (!session.closed && !session.destroyed && !session.ping(close)) close();
      });
    }
  }

  /** Resolves once every session has closed (after drain(), each closes when its last stream is done). */
  closed(): Promise<void> {
    if (this.#connections.size === 0) return Promise.resolve();
    // `closed` turns true as soon as close() is asked for; 'close' comes once the session is gone.
    return Promise.all(
      [...this.#connections.keys()].map((s) => new Promise((resolve) => (s.destroyed ? resolve(undefined) : s.once('close', resolve)))),
    ).then(() => undefined);
  }

  /** Cuts every session (at the end of the shutdown grace). */
  destroy(): void {
    for (const session of this.#connections.keys()) session.destroy();
    clearInterval(this.#sweeper);
  }

  #onSession(session: ServerHttp2Session): void {
    const connection = new Connection(session, this.#limits, this.#budget, (limit) => this.#events.limited(limit));
    this.#connections.set(session, connection);
    session.once('close', () => {
      this.#connections.delete(session);
      connection.dispose();
    });
    // Session errors (a peer breaking HTTP/2) end that session; its streams see 'close'.
    session.on('error', () => undefined);
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#onStream(stream, headers, connection));
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, connection: Connection): void {
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'POST' || !isGrpcContentType(headers['content-type'])) {
      // Not gRPC at all: HTTP's own answer, as the gRPC spec asks, saying what is served here.
      answerNotGrpc(stream);
      return;
    }
    if (!isAcceptedEncoding(headers['grpc-encoding'])) {
      answerTrailersOnly(stream, {
        ...UNIMPLEMENTED_HEADERS,
        'grpc-message': `grpc-encoding ${String(headers['grpc-encoding'])} is not supported`,
        'grpc-accept-encoding': 'identity',
      });
      stream.resume();
      return;
    }
    const registered = this.#methods.get(headers[':path'] ?? '');
    if (registered === undefined) {
      answerTrailersOnly(stream, { ...UNIMPLEMENTED_HEADERS, 'grpc-message': `unknown method ${headers[':path'] ?? ''}` });
      stream.resume();
      return;
    }
    if (!connection.mayOpenIdleStream) {
      // Streams that send nothing hold memory and prove nothing: past the bound, refuse (the peer may
      // retry it elsewhere), and count it as an empty stream.
      connection.limited('idle_streams');
      stream.close(NGHTTP2_REFUSED_STREAM);
      connection.emptyStream();
      return;
    }
    const call = new Http2Call(stream, connection, registered.path, registered.maxMessageBytes);
    this.#idle(call);
    // RST_STREAM from the peer, a connection lost, or our own end: whichever comes first wins.
    stream.on('close', () => {
      call.closed();
      if (!call.started) {
        this.#start(call);
        // An empty stream: count it against the connection, unless the whole connection went.
        if (!connection.session.destroyed && !connection.session.closed) connection.emptyStream();
      }
      this.#cancel(call);
    });
    let handlers: CallHandlers;
    try {
      handlers = registered.method(call);
    } catch (error) {
      this.#handlerFailed(call, error);
      return;
    }
    call.handlers = handlers;
    const timeout = parseGrpcTimeout(headers['grpc-timeout'] as string | undefined);
    if (timeout !== undefined) call.expireAfter(timeout, () => this.#cancel(call));
    const onMessage = (message: Buffer) => {
      if (!call.started) this.#start(call);
      if (call.ended) return;
      try {
        handlers.message(message);
      } catch (error) {
        this.#handlerFailed(call, error);
      }
    };
    stream.on('data', (chunk: Buffer) => {
      const error = call.reader.push(chunk, onMessage);
      if (error !== undefined && !call.ended) {
        call.fail(error.code, error.details);
        this.#cancel(call);
      }
    });
    stream.on('end', () => {
      // Node ends the readable side of a reset stream too: that is no half-close ('close' follows).
      if (stream.aborted) return;
      // The peer did its part (a call may carry no message at all): not an empty stream.
      if (!call.started) this.#start(call);
      if (call.ended) return;
      if (call.reader.incomplete) {
        call.fail(Status.INTERNAL, 'the stream ended in the middle of a message');
        this.#cancel(call);
        return;
      }
      call.settled = true;
      try {
        handlers.halfClose();
      } catch (error) {
        this.#handlerFailed(call, error);
      }
    });
  }

  /** Tells the method its call is over (once); an exception there is contained like any other. */
  #cancel(call: Http2Call): void {
    if (call.settled) return;
    call.settled = true;
    try {
      call.handlers?.cancel();
    } catch (error) {
      this.#events.handlerFailed(call.path, error);
    }
  }

  /** A handler threw: that call ends INTERNAL (logged and counted by the server), never the process. */
  #handlerFailed(call: Http2Call, error: unknown): void {
    this.#events.handlerFailed(call.path, error);
    if (call.ended) return;
    call.fail(Status.INTERNAL, 'internal error');
    this.#cancel(call);
  }

  #idle(call: Http2Call): void {
    call.idleSince = this.#tick;
    call.connection.idleStreams += 1;
    call.prevIdle = this.#idleTail;
    if (this.#idleTail === undefined) this.#idleHead = call;
    else this.#idleTail.nextIdle = call;
    this.#idleTail = call;
  }

  /** The call's first message arrived, or it ended: it leaves the idle list. */
  #start(call: Http2Call): void {
    call.started = true;
    call.connection.idleStreams -= 1;
    const { prevIdle, nextIdle } = call;
    if (prevIdle === undefined) this.#idleHead = nextIdle;
    else prevIdle.nextIdle = nextIdle;
    if (nextIdle === undefined) this.#idleTail = prevIdle;
    else nextIdle.prevIdle = prevIdle;
    call.prevIdle = call.nextIdle = undefined;
  }

  /** Ends calls that have waited a first-message timeout for their first message. */
  #sweep(): void {
    this.#tick += 1;
    while (this.#idleHead !== undefined && this.#tick - this.#idleHead.idleSince > SWEEPS_PER_TIMEOUT) {
      const call = this.#idleHead;
      // Its 'close' takes it off the list and counts it as an empty stream.
      this.#start(call);
      call.connection.limited('idle_streams');
      call.fail(Status.DEADLINE_EXCEEDED, `no request message within ${this.#limits.firstMessageTimeoutMs} ms`);
      this.#cancel(call);
      call.connection.emptyStream();
    }
  }
}
