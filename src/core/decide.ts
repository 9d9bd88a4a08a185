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
  | { readonly kind: 'pass' }
  | { readonly kind: 'reject'; readonly code: ErrorCode; readonly sandboxId?: string; readonly reason?: string };

export interface DecideOptions {
  readonly wakeEnabled: boolean;
  /** What a request that names no sandbox gets: passed through untouched, or rejected with 400. */
  readonly unnamed: 'pass' | 'reject';
}

export interface RequestContext {
  readonly now: number;
  /** The x-access-token the request carried, if any. */
  readonly accessToken: string | undefined;
}

const PASS: Decision = { kind: 'pass' };
const MISSING: Decision = { kind: 'reject', code: 'missing_sandbox' };

export function decide(
  identity: Identification,
  routes: RouteLookup,
  request: RequestContext,
  options: DecideOptions,
  wakes?: WakesInProgress,
): Decision {
  if (identity.kind === 'none') return options.unnamed === 'pass' ? PASS : MISSING;
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
      return { kind: 'forward', route, port };
    case 'creating':
      // A sandbox being woken may pass through "creating" (agent-sandbox reports DependenciesNotReady
      // while the new pod starts): a request for it joins the wake, on the same terms as the first.
      if (wakes?.waking(route) === true) return decidePaused(route, port, request, options);
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
  if (!tokenMatches(route.accessTokenDigest, request.accessToken)) {
    return { kind: 'reject', code: 'unauthorized', sandboxId: route.id };
  }
  return { kind: 'wake', route, port };
}

/**
 * Constant-time token check. Both sides are SHA-256 digests, so the comparison takes the same time
 * whatever the presented token's length or content.
 */
export function tokenMatches(expected: Buffer | undefined, presented: string | undefined): boolean {
  if (expected === undefined) return true;
  const digest = createHash('sha256')
    // Stryker disable next-line StringLiteral: equivalent; an absent token never matches (the check below), whatever is hashed for it
    .update(presented ?? '')
    .digest();
  return timingSafeEqual(digest, expected) && presented !== undefined;
}
