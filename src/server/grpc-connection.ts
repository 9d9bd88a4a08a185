// What the gRPC transport keeps per HTTP/2 connection to hold it against a hostile peer: the bytes it
// may hold for it (partial messages, answers it does not read), the streams still waiting for their
// first message, the rapid-reset guard over streams that end empty, and the keepalive PING that
// notices a peer which went silent (a dead host sends no FIN; a frozen process still ACKs TCP).
import http2, { type ServerHttp2Session } from 'node:http2';
import { ByteBudget } from './byte-budget.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** Why the transport cut a connection or a stream short (a closed set: metric labels). */
export type Limit = 'connections' | 'empty_streams' | 'idle_streams' | 'buffers' | 'keepalive';

export interface ConnectionLimits {
  /** Bytes held for one connection (partial messages, queued answers). */
  readonly bufferBytes: number;
  /** Streams one connection may leave empty (reset by either side, or timed out, before their first message) per second, and at once. */
  readonly emptyStreamsPerSecond: number;
  /** Streams one connection may have open that have not sent their first message yet; more are refused. */
  readonly maxIdleStreams: number;
  /** PING the peer this often; 0: never. */
  readonly keepaliveIntervalMs: number;
  /** Close the connection when a PING is not answered within this. */
  readonly keepaliveTimeoutMs: number;
}

export class Connection {
  readonly session: ServerHttp2Session;
  readonly budget: ByteBudget;
  /** Streams open that have not delivered their first message. */
  idleStreams = 0;
  readonly #limits: ConnectionLimits;
  readonly #onLimit: (limit: Limit) => void;
  #emptyTokens: number;
  #refilledAt = 0;
  #keepalive: NodeJS.Timeout | undefined;
  #pingDeadline: NodeJS.Timeout | undefined;

  constructor(session: ServerHttp2Session, limits: ConnectionLimits, serverBudget: ByteBudget, onLimit: (limit: Limit) => void) {
    this.session = session;
    this.#limits = limits;
    this.#onLimit = onLimit;
    this.budget = new ByteBudget(limits.bufferBytes, serverBudget);
    this.#emptyTokens = limits.emptyStreamsPerSecond;
    if (limits.keepaliveIntervalMs > 0) {
      this.#keepalive = setInterval(() => this.#ping(), limits.keepaliveIntervalMs).unref();
    }
  }

  /** Whether a new stream may wait for its first message (else it is refused). */
  get mayOpenIdleStream(): boolean {
    return this.idleStreams < this.#limits.maxIdleStreams;
  }

  /**
   * A stream ended before its first message. Envoy never does this (HEADERS and its first message
   * leave together), so a token bucket small enough to stop a rapid-reset flood costs it nothing; past
   * it the connection is closed (GOAWAY ENHANCE_YOUR_CALM). Counted whoever reset the stream, so a
   * peer cannot dodge the guard by provoking the server into the reset (CVE-2025-8671, "MadeYouReset").
   */
  emptyStream(): void {
    const rate = this.#limits.emptyStreamsPerSecond;
    const now = performance.now();
    this.#emptyTokens = Math.min(rate, this.#emptyTokens + ((now - this.#refilledAt) / 1000) * rate);
    this.#refilledAt = now;
    this.#emptyTokens -= 1;
    if (this.#emptyTokens < 0) this.cut('empty_streams');
  }

  /** Closes the connection at once, telling the peer why (GOAWAY ENHANCE_YOUR_CALM). */
  cut(limit: Limit): void {
    if (this.session.destroyed) return;
    this.#onLimit(limit);
    this.session.destroy(new Error(`gRPC connection cut: ${limit}`), NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /** The stream-level counterpart: a limit was hit on one stream (counted; the caller resets it). */
  limited(limit: Limit): void {
    this.#onLimit(limit);
  }

  dispose(): void {
    clearInterval(this.#keepalive);
    clearTimeout(this.#pingDeadline);
  }

  #ping(): void {
    if (this.#pingDeadline !== undefined || this.session.destroyed) return;
    const sent = this.session.ping(() => {
      clearTimeout(this.#pingDeadline);
      this.#pingDeadline = undefined;
    });
    if (!sent) return;
    this.#pingDeadline = setTimeout(() => {
      this.#pingDeadline = undefined;
      this.cut('keepalive');
    }, this.#limits.keepaliveTimeoutMs).unref();
  }
}
