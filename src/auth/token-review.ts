// agent-sandbox's TokenReview authorization (sandbox-router/authz/tokenreview.go): a request's Bearer
// token is submitted to the Kubernetes TokenReview API and the caller is let in when the API server
// authenticates it. As in the router, it authenticates only: any authenticated caller may reach any
// sandbox it may name. Not an API call per request: each verdict is remembered by the token's SHA-256
// (never the token) in a bounded LRU for the TTL (30 s by default), a failed review (API unreachable)
// for a third of it (at least 1 s), and concurrent requests with one new token share one review.
import { createHash } from 'node:crypto';
import { AuthenticationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { LRUCache } from 'lru-cache';
import { ALLOWED, bearerToken, type RouterAuthorizer, type RouterAuthzVerdict } from '../core/router-authz.ts';

export interface TokenReviewOptions {
  readonly ttlMs: number;
  readonly cacheSize: number;
  /** A request without a Bearer token is refused (401); false lets it through (the router's transitional mode). */
  readonly requireToken: boolean;
  /** Sent in the review: the API server checks the token was minted for one of them. Empty: no check. */
  readonly audiences: readonly string[];
  /** Bound on one review call (the router's 3 s). */
  readonly timeoutMs?: number;
}

/** The review itself: whether the API server authenticates the token (throws when it cannot answer). */
export type Reviewer = (token: string, audiences: readonly string[], signal: AbortSignal) => Promise<boolean>;

/** What the metrics see: a review sent and how it ended, and a verdict taken from memory. */
export type ReviewEvent = 'authenticated' | 'rejected' | 'failed' | 'cached';

/** The router's bound on one review call. */
const DEFAULT_TIMEOUT_MS = 3_000;
/** Longer Bearer tokens are refused unreviewed: Kubernetes tokens are a few KiB at most. */
const MAX_TOKEN_LENGTH = 16 * 1024;

const UNAUTHENTICATED: RouterAuthzVerdict = Object.freeze({
  ok: false,
  code: 'unauthenticated',
  reason: 'the API server did not authenticate the token',
});
const NO_TOKEN: RouterAuthzVerdict = Object.freeze({ ok: false, code: 'unauthenticated', reason: 'no bearer token' });
const TOO_LONG: RouterAuthzVerdict = Object.freeze({ ok: false, code: 'unauthenticated', reason: 'bearer token too long' });
const UNAVAILABLE: RouterAuthzVerdict = Object.freeze({ ok: false, code: 'authz_unavailable', reason: 'the token review failed' });

export class TokenReviewAuthorizer implements RouterAuthorizer {
  readonly #options: TokenReviewOptions;
  readonly #review: Reviewer;
  readonly #verdicts: LRUCache<string, RouterAuthzVerdict>;
  /** Reviews in flight by token digest: a burst with one new token makes one API call. */
  readonly #inFlight = new Map<string, Promise<RouterAuthzVerdict>>();
  readonly #onEvent: ((event: ReviewEvent) => void) | undefined;
  readonly maxWaitMs: number;

  constructor(options: TokenReviewOptions, review: Reviewer, onEvent?: (event: ReviewEvent) => void) {
    this.#options = options;
    this.maxWaitMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#review = review;
    this.#onEvent = onEvent;
    this.#verdicts = new LRUCache({ max: options.cacheSize, ttl: options.ttlMs, ttlAutopurge: false });
  }

  authorize(authorization: string | undefined, _namespace: string, _name: string): RouterAuthzVerdict | Promise<RouterAuthzVerdict> {
    const token = bearerToken(authorization);
    if (token === undefined) return this.#options.requireToken ? NO_TOKEN : ALLOWED;
    if (token.length > MAX_TOKEN_LENGTH) return TOO_LONG;
    const key = createHash('sha256').update(token).digest('base64');
    const known = this.#verdicts.get(key);
    if (known !== undefined) {
      this.#onEvent?.('cached');
      return known;
    }
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = this.#ask(key, token).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  async #ask(key: string, token: string): Promise<RouterAuthzVerdict> {
    const timeout = AbortSignal.timeout(this.maxWaitMs);
    try {
      const authenticated = await this.#review(token, this.#options.audiences, timeout);
      const verdict = authenticated ? ALLOWED : UNAUTHENTICATED;
      this.#verdicts.set(key, verdict);
      this.#onEvent?.(authenticated ? 'authenticated' : 'rejected');
      return verdict;
    } catch {
      // Remembered briefly, so a struggling API server is not asked once per request, and soon retried.
      this.#verdicts.set(key, UNAVAILABLE, { ttl: Math.max(this.#options.ttlMs / 3, 1_000) });
      this.#onEvent?.('failed');
      return UNAVAILABLE;
    }
  }
}

/** The review through the Kubernetes API (create on tokenreviews.authentication.k8s.io). */
export function kubernetesReviewer(kubeConfig: KubeConfig): Reviewer {
  const api = kubeConfig.makeApiClient(AuthenticationV1Api);
  return async (token, audiences, signal) => {
    const review = api.createTokenReview({
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, ...(audiences.length > 0 ? { audiences: [...audiences] } : {}) },
      },
    });
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    const result = await Promise.race([review, aborted]);
    return result.status?.authenticated === true;
  };
}
