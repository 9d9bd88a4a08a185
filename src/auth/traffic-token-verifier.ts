// Checks OpenKruise's traffic access tokens, as its gateway does (pkg/identity/oidc Verify, then the
// filter's binding check): a compact JWS of at most 64 KiB, signed with an asymmetric algorithm by a key
// of the set named by its kid (a key's own alg, when declared, must be the token's); exp, iat, nbf, iss
// and a non-empty sub present; exp not passed, nbf and iat not in the future, each within the allowed
// clock skew; iss exactly the expected issuer (and aud naming the audience, when one is configured,
// which the gateway does not check); and the claims sandbox.sandboxId / sandbox.sandboxUid exactly the
// route's ID and UID, so a token for one Sandbox opens no other, nor a recreated one of the same name.
// Signatures are checked by jose; nothing here parses or verifies a JWS by hand.
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
    const skew = this.#options.clockSkewSeconds;
    let payload: JWTPayload & SandboxClaims;
    try {
      ({ payload } = await jwtVerify<SandboxClaims>(token, (header) => this.#keyFor(header, published), {
        algorithms: TRAFFIC_TOKEN_ALGORITHMS,
        issuer: published.issuer,
        ...(this.#options.audience === '' ? {} : { audience: this.#options.audience }),
        requiredClaims: ['exp', 'iat', 'nbf', 'iss', 'sub'],
        clockTolerance: skew,
        currentDate: new Date(now),
      }));
    } catch (error) {
      return refused(error instanceof errors.JOSEError ? `${error.code}: ${error.message}` : String((error as Error).message));
    }
    // jose checks iat's future only with maxTokenAge; the gateway refuses a token issued in the future.
    if (typeof payload.iat === 'number' && payload.iat > now / 1000 + skew) return refused('iat is in the future');
    if (typeof payload.sub !== 'string' || payload.sub === '') return refused('sub is empty');
    const claims = payload.sandbox;
    if (claims?.sandboxId !== route.id || claims.sandboxUid !== route.uid) return refused('the sandbox claims name another sandbox', true);
    return { ok: true };
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
