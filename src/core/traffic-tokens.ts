// The port between the request path and whatever checks traffic access tokens (auth/): OpenKruise's
// JWTs whose sandbox claims bind them to one Sandbox (security.agents.kruise.io/enable-jwt-auth).
import type { Route } from '../routes/route.ts';

export type TrafficTokenVerdict =
  | { readonly ok: true }
  /** `reason` is for the log only: answers never say which check failed beyond the gateway's words. */
  | { readonly ok: false; readonly mismatch: boolean; readonly reason: string };

export interface TrafficTokens {
  /** Keys are configured and loaded: a token can be checked now. */
  readonly ready: boolean;
  /** Checks the token's signature and claims, and that its sandbox claims name this route's ID and UID. */
  verify(token: string | undefined, route: Pick<Route, 'id' | 'uid'>): Promise<TrafficTokenVerdict>;
}
