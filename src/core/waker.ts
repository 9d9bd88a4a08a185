// The port between the request path and whatever wakes sandboxes (wake/coordinator.ts). It speaks in
// domain outcomes; the processor turns them into wire answers.
import type { Route } from '../routes/route.ts';
import type { ErrorCode } from './errors.ts';

export type WakeResult =
  | { readonly kind: 'forward'; readonly route: Route; readonly port: number; readonly waitedMs: number }
  | {
      readonly kind: 'reject';
      readonly code: ErrorCode;
      readonly sandboxId: string;
      /** Seconds before a retry may succeed, when known better than the catalogue's default. */
      readonly retryAfter?: number;
    };

/** A request held while its sandbox wakes: Envoy's timer is extended by overrideMs, then the result follows. */
export interface HeldRequest {
  readonly overrideMs: number;
  readonly result: Promise<WakeResult>;
}

/** Read side: whether this very object (same UID) is being woken now. */
export interface WakesInProgress {
  waking(route: Route): boolean;
}

export interface Waker extends WakesInProgress {
  /**
   * Holds a request for a paused sandbox until it runs, or answers it at once (capacity, a recent
   * failure). `trace` is the request's trace span when tracing is on, opaque here: the wake's spans
   * join it (observability/tracing.ts).
   */
  hold(route: Route, port: number, signal: AbortSignal, trace?: unknown): WakeResult | HeldRequest;
}
