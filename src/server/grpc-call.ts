// One gRPC call on one HTTP/2 stream, as the transport drives it: answers framed and written with
// their bytes charged to the connection's budget, reading paused while the peer does not take our
// answers, the status in trailers (or trailers-only), and the call's end, once, however it comes.
import http2, { type ServerHttp2Stream } from 'node:http2';
import type { Connection } from './grpc-connection.ts';
import { encodeGrpcMessage, frame, MessageReader, Status } from './grpc-wire.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;

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

/**
 * What one write holds besides its bytes (Node's write request and queue entry, measured at a few
 * hundred bytes): a peer sending tiny messages must not hold 30 times the memory it is charged for.
 */
const WRITE_OVERHEAD = 256;
/** Charged bytes one stream may have queued before its input is paused, and resumed below half of it. */
const STREAM_HIGH_WATER = 64 * 1024;

const RESPONSE_HEADERS = { ':status': 200, 'content-type': 'application/grpc' } as const;
const OK_TRAILERS = { 'grpc-status': '0' } as const;

/** Whether the peer's END_STREAM has arrived (Node sets this when it does, before 'end' is emitted). */
const peerEnded = (stream: ServerHttp2Stream): boolean =>
  stream.readableEnded || (stream as unknown as { _readableState: { ended: boolean } })._readableState.ended;

/** Ends a stream with a status alone (trailers-only), then stops a peer still sending (RFC 9113 §8.1). */
export function answerTrailersOnly(stream: ServerHttp2Stream, headers: http2.OutgoingHttpHeaders): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond(headers, { endStream: true });
  if (!peerEnded(stream)) stopPeer(stream);
}

const NOT_GRPC = Buffer.from('gRPC only: POST with content-type application/grpc\n');

/** The answer to a request that is not gRPC: 415, with a line saying what is served here. */
export function answerNotGrpc(stream: ServerHttp2Stream): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': 415, 'content-type': 'text/plain' });
  stream.end(NOT_GRPC);
  stream.resume();
  if (!peerEnded(stream)) stopPeer(stream);
}

/**
 * RST_STREAM NO_ERROR once our last frame has left, for a peer that has not ended its side. Asked
 * for at once, Node would send the reset in place of the trailers still queued.
 */
function stopPeer(stream: ServerHttp2Stream): void {
  setImmediate(() => {
    if (!stream.closed && !stream.destroyed && !peerEnded(stream)) stream.close(NGHTTP2_NO_ERROR);
  });
}

export class Http2Call implements GrpcCall {
  readonly stream: ServerHttp2Stream;
  readonly connection: Connection;
  /** The method's path, for logs and metrics. */
  readonly path: string;
  readonly reader: MessageReader;
  handlers: CallHandlers | undefined;
  /** Whether the method was told the call is over (halfClose or cancel): it is told once. */
  settled = false;
  /** Whether a complete first message arrived (until then the stream is idle, and may time out). */
  started = false;
  /** The transport's sweep tick when the call began waiting for its first message. */
  idleSince = 0;
  /** Neighbours in the transport's list of idle calls, oldest first. */
  prevIdle: Http2Call | undefined;
  nextIdle: Http2Call | undefined;
  #headersSent = false;
  #ended = false;
  #trailers: Record<string, string> = OK_TRAILERS;
  #timer: NodeJS.Timeout | undefined;
  /** The first answer's charge, held until the stream closes (no callback: most calls write once). */
  #first = 0;
  /** Charges of later writes the peer has not taken yet, and how many writes those are. */
  #queued = 0;
  #writes = 0;
  #paused = false;
  #closed = false;
  #written: (() => void) | undefined;

  constructor(stream: ServerHttp2Stream, connection: Connection, path: string, maxMessageBytes: number) {
    this.stream = stream;
    this.connection = connection;
    this.path = path;
    this.reader = new MessageReader(maxMessageBytes, connection.budget);
  }

  get ended(): boolean {
    return this.#ended;
  }

  send(message: Buffer): void {
    if (this.#ended || this.stream.destroyed) return;
    if (!this.#headersSent) this.#respond();
    const framed = frame(message);
    const charge = framed.length + WRITE_OVERHEAD;
    // Past the connection's (or the server's) budget the peer is not reading what it asked for:
    // RESOURCE_EXHAUSTED, told as RST_STREAM ENHANCE_YOUR_CALM (trailers would queue behind the data).
    if (!this.connection.budget.reserve(charge)) return this.#overflow();
    if (this.#first === 0) {
      // Envoy's calls write one answer: charged until the stream closes, with no write callback.
      this.#first = charge;
      this.stream.write(framed);
      return;
    }
    this.#queued += charge;
    this.#writes += 1;
    this.stream.write(framed, (this.#written ??= () => this.#onWritten()));
    // Past the stream's high-water mark, stop reading its input until the peer takes our answers:
    // HTTP/2 flow control then stops the peer, so it cannot make us queue more.
    if (this.#queued > STREAM_HIGH_WATER && !this.#paused) {
      this.#paused = true;
      this.stream.pause();
    }
  }

  finish(): void {
    this.#end(Status.OK, '');
  }

  fail(code: number, details: string): void {
    this.#end(code, details);
  }

  /** Ends the call at the deadline the client set (grpc-timeout). */
  expireAfter(ms: number, onExpiry: () => void): void {
    this.#timer = setTimeout(() => {
      if (this.#ended) return;
      this.#end(Status.DEADLINE_EXCEEDED, 'deadline exceeded');
      onExpiry();
    }, ms);
  }

  /** The stream closed (by us, the peer, or the connection): frees what the call holds. */
  closed(): void {
    this.#ended = true;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.reader.dispose();
    if (this.#first + this.#queued > 0) {
      this.connection.budget.release(this.#first + this.#queued);
      this.#first = this.#queued = 0;
    }
  }

  /** A write left for the peer (Node calls back once per write, in order). */
  #onWritten(): void {
    if (this.#closed) return;
    this.#writes -= 1;
    // Writes complete in order, so the first (uncounted here) has left before any later one calls back.
    const left = this.stream.writableLength + this.#writes * WRITE_OVERHEAD;
    if (left < this.#queued) {
      this.connection.budget.release(this.#queued - left);
      this.#queued = left;
    }
    if (this.#paused && this.#queued < STREAM_HIGH_WATER / 2) {
      this.#paused = false;
      if (!this.#ended) this.stream.resume();
    }
  }

  #overflow(): void {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.connection.limited('buffers');
    // The method hears of it from the stream's 'close', as for any reset.
    this.stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
  }

  #respond(): void {
    this.#headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    this.stream.once('wantTrailers', () => {
      this.stream.sendTrailers(this.#trailers);
      // A peer still sending is told to stop (RST_STREAM NO_ERROR, after the trailers, as RFC 9113
      // §8.1 allows); one that already ended its side needs nothing more.
      if (!peerEnded(this.stream)) stopPeer(this.stream);
    });
  }

  #end(code: number, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#timer);
    if (this.stream.destroyed || this.stream.closed) return;
    const status: Record<string, string> =
      code === Status.OK ? OK_TRAILERS : { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(details) };
    if (this.#headersSent) {
      this.#trailers = status;
      this.stream.end();
    } else {
      // Trailers-only: the status rides on the response headers, and the stream ends with them.
      answerTrailersOnly(this.stream, { ...RESPONSE_HEADERS, ...status });
    }
  }
}
