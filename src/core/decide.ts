// The pure decision core: what one identified request gets. No I/O, no protocol or Kubernetes types;
// the stream loop turns a Decision into a wire answer and the wake coordinator acts on 'wake'.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Identification } from '../identification/identify.ts';
import { isResumable, type Route } from '../routes/route.ts';
import type { RouteLookup } from '../routes/registry.ts';
import type { ErrorCode } from './errors.ts';
import type { WakesInProgress } from './waker.ts';

export type Decision =
  | { readonly kind: 'forward'; readonly route: Route; readonly port: number }
  | { readonly kind: 'wake'; readonly route: Route; readonly port: number }
  /**
   * The route needs a traffic access token (JWT) checked first: the caller verifies it (an async
   * signature check, see core/traffic-tokens.ts) against this route's ID and UID, then forwards or wakes.
   */
  | { readonly kind: 'verify'; readonly route: Route; readonly port: number; readonly then: 'forward' | 'wake' }
  | { readonly kind: 'pass' }
  /** The router's health answer, `200 {"status":"ok"}`, to a request naming no sandbox. */
  | { readonly kind: 'health' }
  | { readonly kind: 'reject'; readonly code: ErrorCode; readonly sandboxId?: string; readonly reason?: string };

export interface DecideOptions {
  readonly wakeEnabled: boolean;
  /** What a request that names no sandbox gets: passed through untouched, or rejected with 400. */
  readonly unnamed: 'pass' | 'reject';
  /**
   * When credentials are checked: on every request (OpenKruise's gateway with auth on), or only on a
   * request that would wake the sandbox. Default every-request.
   */
  readonly accessTokenCheck?: 'every-request' | 'wake-only';
  /**
   * A request naming no sandbox on this path (query aside) gets the health answer: agent-sandbox's
   * router answers GET /healthz on its proxy port so, where Gateway health checks look. Absent: none.
   */
  readonly healthPath?: string;
}

export interface RequestContext {
  readonly now: number;
  /** The x-access-token the request carried, if any. */
  readonly accessToken: string | undefined;
  /** Whether traffic access tokens can be verified now (keys configured and loaded). */
  readonly trafficTokensReady?: boolean;
  /** :path, read only for the health answer. */
  readonly path?: string | undefined;
}

const PASS: Decision = { kind: 'pass' };
const HEALTH: Decision = { kind: 'health' };
const MISSING: Decision = { kind: 'reject', code: 'missing_sandbox' };

export function decide(
  identity: Identification,
  routes: RouteLookup,
  request: RequestContext,
  options: DecideOptions,
  wakes?: WakesInProgress,
): Decision {
  if (identity.kind === 'none') {
    if (options.healthPath !== undefined && isPath(request.path, options.healthPath)) return HEALTH;
    return options.unnamed === 'pass' ? PASS : MISSING;
  }
  if (identity.kind === 'malformed') {
    return {
      kind: 'reject',
      code: identity.code,
      reason: identity.reason,
      ...(identity.sandboxId === undefined ? {} : { sandboxId: identity.sandboxId }),
    };
  }
  const { sandboxId, port } = identity;
  const route = routes.get(sandboxId);
  if (route === undefined) {
    if (!routes.ready) return { kind: 'reject', code: 'routes_not_ready', sandboxId };
    // Two objects claiming one ID: fail closed, never pick one (that would hand one tenant's traffic,
    // access token included, to whoever labelled the other).
    return { kind: 'reject', code: routes.conflicted(sandboxId) ? 'sandbox_id_conflict' : 'sandbox_not_found', sandboxId };
  }
  if (route.state === 'dead' || !isResumable(route, request.now)) return { kind: 'reject', code: 'sandbox_not_running', sandboxId };
  switch (route.state) {
    case 'running':
      return authorize(route, port, request, options, 'forward');
    case 'creating':
      // A sandbox being woken passes through "creating" (the new pod starts, then the runtime is
      // initialised): a request for it joins the wake, on the same terms as the first. So does one for
      // a sandbox whose resume another replica (or a person) started, when it may be woken.
      if (wakes?.waking(route) === true || (route.resuming && route.wake !== undefined && options.wakeEnabled)) {
        return decidePaused(route, port, request, options);
      }
      return { kind: 'reject', code: 'sandbox_not_ready', sandboxId };
    case 'available':
      return { kind: 'reject', code: 'sandbox_not_running', sandboxId, reason: 'the sandbox is an unclaimed pool member' };
    case 'paused':
      return decidePaused(route, port, request, options);
  }
}

function decidePaused(route: Route, port: number, request: RequestContext, options: DecideOptions): Decision {
  if (!options.wakeEnabled || route.wake === undefined) {
    return {
      kind: 'reject',
      code: 'sandbox_not_running',
      sandboxId: route.id,
      reason: 'the sandbox is paused and not opted in to wake on traffic',
    };
  }
  // Authorization comes before anything that has an effect: an unauthorized request never wakes.
  return authorize(route, port, request, options, 'wake');
}

/**
 * The gateway's rule, in its order: a sandbox that requires a traffic access token (JWT) needs that and
 * only that (refused with 503 while no verifier can check it, never let through); any other sandbox
 * with an access token needs it in x-access-token. With wake-only checks, a running sandbox is
 * forwarded unchecked.
 */
function authorize(route: Route, port: number, request: RequestContext, options: DecideOptions, then: 'forward' | 'wake'): Decision {
  if (then === 'forward' && options.accessTokenCheck === 'wake-only') return { kind: 'forward', route, port };
  if (route.trafficAuth === true) {
    if (request.trafficTokensReady !== true) return { kind: 'reject', code: 'jwt_verifier_not_ready', sandboxId: route.id };
    return { kind: 'verify', route, port, then };
  }
  if (!tokenMatches(route.accessTokenDigest, request.accessToken)) {
    return { kind: 'reject', code: 'unauthorized', sandboxId: route.id };
  }
  return { kind: then, route, port };
}

/** Whether :path is `wanted`, with or without a query string. */
function isPath(path: string | undefined, wanted: string): boolean {
  if (path === undefined || !path.startsWith(wanted)) return false;
  return path.length === wanted.length || path.charCodeAt(wanted.length) === 0x3f; /* ? */
}

/**
 * Constant-time token check. Both sides are SHA-256 digests, so the comparison takes the same time
 * whatever the presented token's length or content.
 */
export function tokenMatches(expected: Buffer | undefined, presented: string | undefined): boolean {
  if (expected === undefined) return true;
  // Stryker disable next-line StringLiteral: equivalent; an absent token never matches (the check below), whatever is hashed for it
  const text = presented ?? '';
  const digest = createHash('sha256').update(text).digest();
  return timingSafeEqual(digest, expected) && presented !== undefined;
}
