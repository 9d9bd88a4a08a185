// gRPC over HTTP/2, the parts this service needs (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// length-prefixed messages in DATA frames, status in trailers (or trailers-only), percent-encoded
// grpc-message, and grpc-timeout. Pure functions and one small reader; no I/O.
import type { ByteBudget } from './byte-budget.ts';

/** gRPC status codes used here. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** The 5-byte prefix (uncompressed flag, big-endian length) and the message, in one buffer. */
export function frame(message: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

export interface WireError {
  readonly code: number;
  readonly details: string;
}

const PREFIX = 5;

/**
 * Reassembles messages from DATA frames: a frame may hold part of a message, several messages, or
 * both. Calls `onMessage` for each complete one, in order; returns an error (and stops) for a
 * compressed message (no grpc-encoding is ever accepted), one above the size limit, or one the memory
 * budget cannot hold.
 *
 * Linear in the bytes received, whatever the framing: a message wholly inside one chunk (what Envoy
 * sends) is handed on as a view of that chunk, no copy; one spread over chunks gets a buffer of its
 * announced length once, charged to the budget until it is complete, and each chunk is copied into it
 * once. A prefix split over chunks is read byte by byte into two numbers, never buffered. (Joining
 * what was held with each new chunk, as this reader once did, made a 512 KiB message in 64-byte DATA
 * frames cost 0.7 s of CPU, and 4 MiB ~45 s, with the event loop blocked.)
 */
export class MessageReader {
  readonly #maxBytes: number;
  readonly #budget: ByteBudget | undefined;
  /** Bytes of the current prefix read so far (0 while between messages, or on a whole prefix). */
  #prefixRead = 0;
  #flag = 0;
  #length = 0;
  /** The message being filled, when it spans chunks; `#filled` bytes of it are in. */
  #body: Buffer | undefined;
  #filled = 0;
  #failed = false;

  constructor(maxBytes: number, budget?: ByteBudget) {
    this.#maxBytes = maxBytes;
    this.#budget = budget;
  }

  /** Feeds one chunk; returns undefined, or the error that ends the call. */
  push(chunk: Buffer, onMessage: (message: Buffer) => void): WireError | undefined {
    if (this.#failed) return undefined;
    const end = chunk.length;
    let offset = 0;
    // Stryker disable next-line EqualityOperator: equivalent; with nothing left, a pass reads no byte and returns
    while (offset < end) {
      if (this.#body !== undefined) {
        const take = Math.min(this.#length - this.#filled, end - offset);
        chunk.copy(this.#body, this.#filled, offset, offset + take);
        this.#filled += take;
        offset += take;
        if (this.#filled < this.#length) return undefined;
        const message = this.#body;
        this.#release();
        onMessage(message);
        continue;
      }
      // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent; the byte-by-byte path below reads the same prefix, only slower
      if (this.#prefixRead === 0 && end - offset >= PREFIX) {
        this.#flag = chunk[offset] as number;
        this.#length = chunk.readUInt32BE(offset + 1);
        offset += PREFIX;
      } else {
        while (this.#prefixRead < PREFIX && offset < end) {
          const byte = chunk[offset] as number;
          offset += 1;
          if (this.#prefixRead === 0) {
            this.#flag = byte;
            this.#length = 0;
          } else this.#length = this.#length * 256 + byte;
          this.#prefixRead += 1;
        }
        if (this.#prefixRead < PREFIX) return undefined;
        this.#prefixRead = 0;
      }
      const error = this.#check();
      if (error !== undefined) return this.#fail(error);
      if (end - offset >= this.#length) {
        const message = chunk.subarray(offset, offset + this.#length);
        offset += this.#length;
        onMessage(message);
        continue;
      }
      if (this.#budget !== undefined && !this.#budget.reserve(this.#length)) {
        return this.#fail({
          code: Status.RESOURCE_EXHAUSTED,
          details: `no room for a message of ${this.#length} bytes: this connection's or the server's buffers are full`,
        });
      }
      this.#body = Buffer.allocUnsafe(this.#length);
      this.#filled = 0;
    }
    return undefined;
  }

  /** Whether a partial message is still waiting for more bytes (the peer ended mid-message). */
  get incomplete(): boolean {
    return this.#prefixRead > 0 || this.#body !== undefined;
  }

  /** Gives back what a partial message holds (the call is over). */
  dispose(): void {
    this.#failed = true;
    if (this.#body !== undefined) this.#release();
  }

  #check(): WireError | undefined {
    // Compression is never negotiated (a grpc-encoding other than identity is refused up front), so a
    // set flag breaks the protocol: INTERNAL, as the gRPC spec asks.
    if (this.#flag !== 0) {
      return { code: Status.INTERNAL, details: 'compressed-flag set but no grpc-encoding was negotiated' };
    }
    if (this.#length > this.#maxBytes) {
      return { code: Status.RESOURCE_EXHAUSTED, details: `message of ${this.#length} bytes is larger than ${this.#maxBytes}` };
    }
    return undefined;
  }

  #fail(error: WireError): WireError {
    this.#failed = true;
    return error;
  }

  #release(): void {
    this.#budget?.release(this.#length);
    this.#body = undefined;
    this.#filled = 0;
  }
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** The longest delay a Node timer takes (2^31 - 1 ms, ~24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Parses grpc-timeout ("100m", "5S", at most 8 digits); undefined when absent, malformed, or longer
 * than a timer can wait (up to 99,999,999 hours can be written: that far out is no deadline at all).
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^([0-9]{1,8})([HMSmun])$/.exec(value);
  if (match === null) return undefined;
  const ms = Number(match[1]) * (TIMEOUT_UNITS[match[2] as string] as number);
  // Stryker disable next-line EqualityOperator: equivalent; no grpc-timeout (8 digits, any unit) is exactly 2^31 - 1 ms, a prime
  return ms > MAX_TIMER_MS ? undefined : ms;
}

/** grpc-message is percent-encoded UTF-8 (anything outside printable ASCII, and '%'). */
export function encodeGrpcMessage(details: string): string {
  return /^[ -$&-~]*$/.test(details) ? details : encodeURIComponent(details);
}

/** Whether a content-type is gRPC's ("application/grpc", "application/grpc+proto", ...). */
export function isGrpcContentType(value: string | undefined): boolean {
  return (
    value !== undefined && (value === 'application/grpc' || value.startsWith('application/grpc+') || value.startsWith('application/grpc;'))
  );
}

/** Whether a request's grpc-encoding is one this server reads (none: identity only). */
export function isAcceptedEncoding(value: string | string[] | undefined): boolean {
  return value === undefined || value === 'identity';
}
