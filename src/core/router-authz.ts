// The port between the request path and agent-sandbox's router authorization (its --authz-mode, here
// --agent-sandbox-authz-mode): whoever names an agent-sandbox Sandbox presents `Authorization: Bearer
// <token>`, checked before anything is looked up or woken (auth/ holds the checkers). A request refused
// here never reaches decide(), so it never wakes a sandbox nor learns whether one exists.

export type RouterAuthzVerdict =
  | { readonly ok: true }
  /** `reason` is for the log only; answers say no more than the router's words. */
  | { readonly ok: false; readonly code: 'unauthenticated' | 'token_scope_mismatch' | 'authz_unavailable'; readonly reason: string };

export interface RouterAuthorizer {
  /** The longest a pending verdict may take (the review call's bound); absent: always at once. */
  readonly maxWaitMs?: number;
  /**
   * The verdict for a request naming `<namespace>/<name>` with this Authorization header: at once when it
   * is known (a scoped token; a review remembered), a Promise when the Kubernetes API must be asked.
   */
  authorize(authorization: string | undefined, namespace: string, name: string): RouterAuthzVerdict | Promise<RouterAuthzVerdict>;
}

export const ALLOWED: RouterAuthzVerdict = Object.freeze({ ok: true });

const BEARER = 'bearer ';

/**
 * The token of `Authorization: Bearer <token>`, as the router reads it (authz.BearerTokenFromRequest):
 * the scheme case-insensitive, the token trimmed and verbatim; undefined when there is none.
 */
export function bearerToken(header: string | undefined): string | undefined {
  // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent; a fast path, a shorter header's prefix is not 'bearer ', and 'Bearer ' alone has an empty token
  if (header === undefined || header.length < BEARER.length) return undefined;
  if (header.slice(0, BEARER.length).toLowerCase() !== BEARER) return undefined;
  const token = header.slice(BEARER.length).trim();
  return token === '' ? undefined : token;
}
