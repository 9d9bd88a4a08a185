// Checks OpenKruise's traffic access tokens, as its gateway does (pkg/identity/oidc Verify, then the
// filter's binding check): a compact JWS of at most 64 KiB, signed with an asymmetric algorithm by a key
// of the set named by its kid (a key's own alg, when declared, must be the token's); exp, iat, nbf, iss
// and a non-empty sub present; exp not passed, nbf and iat not in the future, each within the allowed
// clock skew; iss exactly the expected issuer (and aud naming the audience, when one is configured,
// which the gateway does not check); and the claims sandbox.sandboxId / sandbox.sandboxUid exactly the
// route's ID and UID, so a token for one Sandbox opens no other, nor a recreated one of the same name.
// Signatures are checked by jose; nothing here parses or verifies a JWS by hand. A signature check costs
// ~0.25 ms (RS256, 2 cores) and a client sends the same token with every request, so the claims of a
// token whose signature and issuer held are remembered (by the token's SHA-256, never the token), and
// each later request re-checks only the times and the binding: keys never change once published.
import { createHash } from 'node:crypto';
import { errors, importJWK, jwtVerify, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import type { TrafficTokens, TrafficTokenVerdict } from '../core/traffic-tokens.ts';
import type { Route } from '../routes/route.ts';
import { algorithmFits, TRAFFIC_TOKEN_ALGORITHMS } from './jwks.ts';

/** The gateway's DefaultMaxTokenSize. */
export const MAX_TRAFFIC_TOKEN_BYTES = 64 << 10;

export interface TrafficTokenKeys {
  readonly keys: ReadonlyMap<string, JWK>;
  readonly issuer: string;
}

export interface VerifierOptions {
  /** aud must name it; empty: not checked. */
  readonly audience: string;
  readonly clockSkewSeconds: number;
  /** The clock, in epoch ms (tests). */
  readonly now?: () => number;
}

/** How many verified tokens are remembered; past it the oldest are forgotten (and verified again if seen). */
const REMEMBERED_TOKENS = 10_000;

/** What is kept of a verified token: the claims each request checks again. */
interface Verified {
  readonly exp: number;
  readonly nbf: number;
  readonly iat: number;
  readonly sandboxId: unknown;
  readonly sandboxUid: unknown;
}

interface SandboxClaims {
  readonly sandbox?: { readonly sandboxId?: unknown; readonly sandboxUid?: unknown };
}

/** What importJWK gives: a Web Crypto key bound to one algorithm. */
type ImportedKey = Awaited<ReturnType<typeof importJWK>>;

const refused = (reason: string, mismatch = false): TrafficTokenVerdict => ({ ok: false, mismatch, reason });

export class TrafficTokenVerifier implements TrafficTokens {
  readonly #options: VerifierOptions;
  #keys: TrafficTokenKeys | undefined;
  /** Imported keys by kid and algorithm (a CryptoKey is bound to one algorithm). */
  readonly #imported = new Map<string, Promise<ImportedKey>>();
  /** Verified tokens by SHA-256, oldest first. */
  readonly #verified = new Map<string, Verified>();

  constructor(options: VerifierOptions) {
    this.#options = options;
  }

  get ready(): boolean {
    return this.#keys !== undefined;
  }

  /** Publishes the key set; as in the gateway, once for the life of the process (rotation: a rollout). */
  publish(keys: TrafficTokenKeys): void {
    if (this.#keys !== undefined) throw new Error('traffic token keys are already published');
    this.#keys = keys;
  }

  async verify(token: string | undefined, route: Pick<Route, 'id' | 'uid'>): Promise<TrafficTokenVerdict> {
    const published = this.#keys;
    if (published === undefined) return refused('no keys are loaded');
    if (token === undefined || token === '') return refused('no token');
    if (token.length > MAX_TRAFFIC_TOKEN_BYTES) return refused(`the token is longer than ${MAX_TRAFFIC_TOKEN_BYTES} bytes`);
    const now = this.#options.now?.() ?? Date.now();
    const digest = createHash('sha256').update(token).digest('base64');
    let verified = this.#verified.get(digest);
    if (verified === undefined) {
      const checked = await this.#check(token, published, now);
      if ('reason' in checked) return refused(checked.reason);
      verified = checked;
      if (this.#verified.size >= REMEMBERED_TOKENS) this.#verified.delete(this.#verified.keys().next().value as string);
      this.#verified.set(digest, verified);
    }
    const skew = this.#options.clockSkewSeconds;
    const seconds = now / 1000;
    // jose checked these when it verified; a remembered token is checked again on every request.
    if (verified.exp <= seconds - skew) {
      this.#verified.delete(digest);
      return refused('the token has expired');
    }
    if (verified.nbf > seconds + skew) return refused('nbf is in the future');
    // jose checks iat's future only with maxTokenAge; the gateway refuses a token issued in the future.
    if (verified.iat > seconds + skew) return refused('iat is in the future');
    if (verified.sandboxId !== route.id || verified.sandboxUid !== route.uid)
      return refused('the sandbox claims name another sandbox', true);
    return { ok: true };
  }

  /** The signature, algorithm, issuer, audience and presence of claims, checked by jose. */
  async #check(token: string, published: TrafficTokenKeys, now: number): Promise<Verified | { reason: string }> {
    let payload: JWTPayload & SandboxClaims;
    try {
      ({ payload } = await jwtVerify<SandboxClaims>(token, (header) => this.#keyFor(header, published), {
        algorithms: TRAFFIC_TOKEN_ALGORITHMS,
        issuer: published.issuer,
        ...(this.#options.audience === '' ? {} : { audience: this.#options.audience }),
        requiredClaims: ['exp', 'iat', 'nbf', 'iss', 'sub'],
        clockTolerance: this.#options.clockSkewSeconds,
        currentDate: new Date(now),
      }));
    } catch (error) {
      return { reason: error instanceof errors.JOSEError ? `${error.code}: ${error.message}` : String((error as Error).message) };
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') return { reason: 'sub is empty' };
    // requiredClaims made jose check that these are numbers.
    return {
      exp: payload.exp as number,
      nbf: payload.nbf as number,
      iat: payload.iat as number,
      sandboxId: payload.sandbox?.sandboxId,
      sandboxUid: payload.sandbox?.sandboxUid,
    };
  }

  /** The key the token's kid names, imported for the token's algorithm (a kid is required, as in the gateway). */
  #keyFor(header: ProtectedHeaderParameters, published: TrafficTokenKeys): Promise<ImportedKey> {
    const { kid, alg } = header;
    if (typeof kid !== 'string' || kid === '') throw new Error('the token header has no kid');
    const jwk = published.keys.get(kid);
    if (jwk === undefined) throw new Error(`the token names an unknown kid ${JSON.stringify(kid)}`);
    if (typeof alg !== 'string') throw new Error('the token header has no alg');
    if (jwk.alg !== undefined && jwk.alg !== alg) throw new Error(`the token's alg ${alg} is not its key's ${jwk.alg}`);
    if (!algorithmFits(alg, jwk)) throw new Error(`the token's alg ${alg} does not fit key ${JSON.stringify(kid)}`);
    const cacheKey = `${alg}\u0000${kid}`;
    let key = this.#imported.get(cacheKey);
    if (key === undefined) {
      key = importJWK(jwk, alg);
      this.#imported.set(cacheKey, key);
    }
    return key;
  }
}
