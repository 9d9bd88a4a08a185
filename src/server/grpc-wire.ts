// gRPC over HTTP/2, the parts this service needs (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// length-prefixed messages in DATA frames, status in trailers (or trailers-only), percent-encoded
// grpc-message, and grpc-timeout. Pure functions and one small reader; no I/O.

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

/** Largest message accepted (grpc's default receive limit). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The 5-byte prefix (uncompressed flag, big-endian length) and the message, in one buffer. */
export function frame(message: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

/**
 * Reassembles messages from DATA frames: a frame may hold part of a message, several messages, or
 * both. Calls `onMessage` for each complete one, in order; returns an error (and stops) for a
 * compressed message (no grpc-encoding was negotiated) or one above the size limit.
 */
export class MessageReader {
  readonly #maxBytes: number;
  /** Bytes of an incomplete prefix or message carried over from earlier chunks. */
  #pending: Buffer | undefined;
  #failed = false;

  constructor(maxBytes = MAX_MESSAGE_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Feeds one chunk; returns undefined, or the error that ends the call. */
  push(chunk: Buffer, onMessage: (message: Buffer) => void): { code: number; details: string } | undefined {
    if (this.#failed) return undefined;
    let data = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#pending = undefined;
    let offset = 0;
    while (data.length - offset >= 5) {
      const compressed = data[offset];
      const length = data.readUInt32BE(offset + 1);
      if (compressed !== 0) {
        this.#failed = true;
        return { code: Status.UNIMPLEMENTED, details: 'compressed messages are not supported (no grpc-encoding was negotiated)' };
      }
      if (length > this.#maxBytes) {
        this.#failed = true;
        return { code: Status.RESOURCE_EXHAUSTED, details: `message of ${length} bytes is larger than ${this.#maxBytes}` };
      }
      if (data.length - offset - 5 < length) break;
      onMessage(data.subarray(offset + 5, offset + 5 + length));
      offset += 5 + length;
    }
    if (offset < data.length) {
      data = data.subarray(offset);
      // Keep a copy: the chunk's memory may be reused by the caller.
      this.#pending = Buffer.from(data);
    }
    return undefined;
  }

  /** Whether a partial message is still waiting for more bytes (the peer ended mid-message). */
  get incomplete(): boolean {
    return this.#pending !== undefined && this.#pending.length > 0;
  }
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** Parses grpc-timeout ("100m", "5S", at most 8 digits); undefined when absent or malformed. */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^([0-9]{1,8})([HMSmun])$/.exec(value);
  if (match === null) return undefined;
  return Number(match[1]) * (TIMEOUT_UNITS[match[2] as string] as number);
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
