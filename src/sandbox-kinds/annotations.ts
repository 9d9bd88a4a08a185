// Annotations in sandbox-extproc's own domain. The wake deadline is read the same way for every Sandbox
// family; the wake opt-in and the access-token digest are for families with no native wake field
// (agent-sandbox).

/** Per-sandbox wake deadline in whole seconds: how long a request may wait for this sandbox to wake. */
export const WAKE_DEADLINE_ANNOTATION = 'sandbox-extproc.io/wake-deadline-seconds';

/** `"true"`: this sandbox may be woken by traffic (agent-sandbox has no field of its own for it). */
export const WAKE_ON_TRAFFIC_ANNOTATION = 'sandbox-extproc.io/wake-on-traffic';

/**
 * The SHA-256 (64 hex digits) of the token a request must carry in x-access-token to wake this sandbox.
 * A digest, never the token: whoever can read the Sandbox object learns nothing it could present.
 */
export const ACCESS_TOKEN_SHA256_ANNOTATION = 'sandbox-extproc.io/access-token-sha256';

/** Reads the wake deadline annotation; 0 (use the global --wake-timeout) when absent or malformed. */
export function wakeDeadlineSeconds(annotations: Record<string, unknown> | undefined): number {
  const text = annotations?.[WAKE_DEADLINE_ANNOTATION];
  return typeof text === 'string' && /^[1-9][0-9]{0,5}$/.test(text) ? Number(text) : 0;
}

export type TokenDigest = { readonly kind: 'none' } | { readonly kind: 'digest'; readonly digest: Buffer } | { readonly kind: 'malformed' };

/** Reads the access-token digest annotation. */
export function accessTokenDigest(annotations: Record<string, unknown> | undefined): TokenDigest {
  const text = annotations?.[ACCESS_TOKEN_SHA256_ANNOTATION];
  if (text === undefined) return { kind: 'none' };
  if (typeof text === 'string' && /^[0-9a-fA-F]{64}$/.test(text)) return { kind: 'digest', digest: Buffer.from(text, 'hex') };
  return { kind: 'malformed' };
}

/**
 * The last time sandbox-extproc saw the sandbox in use (RFC 3339, whole seconds), for families with no
 * pause timer of their own (agent-sandbox): the record the idle suspender reads, shared by replicas.
 */
export const LAST_ACTIVITY_ANNOTATION = 'sandbox-extproc.io/last-activity';

/** Opt-in to idle suspension (agent-sandbox): suspend after this long without traffic ("10m", "600s"). */
export const IDLE_TIMEOUT_ANNOTATION = 'sandbox-extproc.io/idle-timeout';

/** When sandbox-extproc last suspended the sandbox for idleness (RFC 3339): a wake soon after is a flap. */
export const IDLE_SUSPENDED_AT_ANNOTATION = 'sandbox-extproc.io/idle-suspended-at';

/** The shortest idle timeout honoured, in seconds: shorter values are read as this. */
export const MIN_IDLE_TIMEOUT_SECONDS = 2;
