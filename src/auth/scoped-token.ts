// agent-sandbox's scoped tokens (sandbox-router/authz/scopedtoken.go), verified as its router does: a
// token `v1.<payload>.<signature>` (base64url without padding), the signature an HMAC-SHA256 under the
// shared secret over a fixed context string and the encoded payload, the payload `{"ns","name","exp"}`.
// A token opens exactly the sandbox it names, until its exp second (exclusive). Whoever creates the
// Sandbox mints it with the same secret (their authz.MintScopedToken); this service only verifies.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ALLOWED, bearerToken, type RouterAuthorizer, type RouterAuthzVerdict } from '../core/router-authz.ts';

const VERSION = 'v1';
/** Domain separation: a signature made here verifies nothing else that HMACs with the same secret. */
const MAC_CONTEXT = `agent-sandbox/scoped-token/${VERSION}.`;
/** The router's MinScopedTokenSecretLen: every token is an offline oracle for the secret. */
export const MIN_SCOPED_TOKEN_SECRET_BYTES = 32;
/** Longer tokens are refused unread (a real one is ~120 bytes). */
const MAX_TOKEN_LENGTH = 4096;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

const refused = (reason: string): RouterAuthzVerdict => ({ ok: false, code: 'unauthenticated', reason });

/** The secret as minter and verifier both take it: surrounding whitespace trimmed (a mounted file's newline). */
export function normalizeScopedSecret(raw: Buffer): Buffer {
  const secret = Buffer.from(raw.toString('latin1').trim(), 'latin1');
  if (secret.length < MIN_SCOPED_TOKEN_SECRET_BYTES) {
    throw new Error(
      `the scoped-token secret must be at least ${MIN_SCOPED_TOKEN_SECRET_BYTES} bytes after trimming whitespace, got ${secret.length}`,
    );
  }
  return secret;
}

export class ScopedTokenAuthorizer implements RouterAuthorizer {
  readonly #secret: Buffer;
  readonly #now: () => number;

  constructor(secret: Buffer, now: () => number = Date.now) {
    this.#secret = normalizeScopedSecret(secret);
    this.#now = now;
  }

  static fromFile(path: string): ScopedTokenAuthorizer {
    return new ScopedTokenAuthorizer(readFileSync(path));
  }

  authorize(authorization: string | undefined, namespace: string, name: string): RouterAuthzVerdict {
    const token = bearerToken(authorization);
    if (token === undefined) return refused('no bearer token');
    if (token.length > MAX_TOKEN_LENGTH) return refused('token too long');
    const [version, payload, signature, extra] = token.split('.');
    if (version !== VERSION || payload === undefined || signature === undefined || extra !== undefined) return refused('malformed token');
    if (!BASE64URL.test(payload) || !BASE64URL.test(signature)) return refused('malformed token');
    const expected = createHmac('sha256', this.#secret).update(MAC_CONTEXT).update(payload).digest();
    const given = Buffer.from(signature, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return refused('signature mismatch');
    let claims: { ns?: unknown; name?: unknown; exp?: unknown };
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      return refused('malformed claims');
    }
    if (typeof claims !== 'object' || claims === null || typeof claims.exp !== 'number') return refused('malformed claims');
    // exp is exclusive: the token is invalid from its exp second on.
    if (Math.floor(this.#now() / 1000) >= claims.exp) return refused('token expired');
    if (claims.ns !== namespace || claims.name !== name) {
      return { ok: false, code: 'token_scope_mismatch', reason: 'the token is scoped to another sandbox' };
    }
    return ALLOWED;
  }
}

/** Mints a token as their authz.MintScopedToken does (tests, and whoever creates Sandboxes). */
export function mintScopedToken(secret: Buffer, namespace: string, name: string, ttlSeconds: number, now = Date.now()): string {
  const key = normalizeScopedSecret(secret);
  const payload = Buffer.from(JSON.stringify({ ns: namespace, name, exp: Math.floor(now / 1000) + Math.floor(ttlSeconds) })).toString(
    'base64url',
  );
  const signature = createHmac('sha256', key).update(MAC_CONTEXT).update(payload).digest('base64url');
  return `${VERSION}.${payload}.${signature}`;
}
