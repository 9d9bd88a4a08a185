// Reads a JSON Web Key Set of traffic-access-token verification keys, refusing what OpenKruise's
// gateway refuses (its pkg/identity/oidc validateKeys and decodeJWKs): an empty set, a key without a
// kid or with one seen before, symmetric and private keys, keys not for signing ("use", "key_ops"), and
// a declared "alg" the key cannot make. Key material is checked by node:crypto, signatures by jose.
import { createPublicKey } from 'node:crypto';
import type { JWK } from 'jose';

/** The asymmetric JWS algorithms the gateway accepts (go-jose's RS*, PS*, ES*, EdDSA); never none or HS*. */
export const TRAFFIC_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

const EC_ALGORITHM: Readonly<Record<string, string>> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };

/** Whether `alg` can be made with this (public) key, as the gateway's algorithmSupportsKey decides. */
export function algorithmFits(alg: string, jwk: JWK): boolean {
  switch (jwk.kty) {
    case 'RSA':
      return /^(RS|PS)(256|384|512)$/.test(alg);
    case 'EC':
      return jwk.crv !== undefined && EC_ALGORITHM[jwk.crv] === alg;
    case 'OKP':
      return jwk.crv === 'Ed25519' && alg === 'EdDSA';
    default:
      return false;
  }
}

/** The keys of a JWKS document by kid; throws an Error saying what is wrong with it. */
export function parseJwks(text: string): ReadonlyMap<string, JWK> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    throw new Error('the key set is not JSON');
  }
  const list = (document as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list) || list.length === 0) throw new Error('the key set has no keys');
  const keys = new Map<string, JWK>();
  list.forEach((item: unknown, index) => {
    const jwk = item as JWK;
    if (typeof item !== 'object' || item === null) throw new Error(`key ${index} is not an object`);
    const kid = jwk.kid;
    if (typeof kid !== 'string' || kid === '') throw new Error(`key ${index} has no kid`);
    if (keys.has(kid)) throw new Error(`kid ${JSON.stringify(kid)} is used twice`);
    if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error(`key ${JSON.stringify(kid)} has use ${JSON.stringify(jwk.use)}`);
    if (Array.isArray(jwk.key_ops) && jwk.key_ops.length > 0 && !jwk.key_ops.includes('verify')) {
      throw new Error(`key ${JSON.stringify(kid)} does not permit verify (key_ops)`);
    }
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP') {
      throw new Error(`key ${JSON.stringify(kid)} must be an asymmetric public key (kty ${JSON.stringify(jwk.kty)})`);
    }
    if (jwk.d !== undefined) throw new Error(`key ${JSON.stringify(kid)} is a private key`);
    try {
      createPublicKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' });
    } catch {
      throw new Error(`key ${JSON.stringify(kid)} is not a valid key`);
    }
    if (jwk.kty === 'OKP' && jwk.crv !== 'Ed25519') throw new Error(`key ${JSON.stringify(kid)} has unsupported curve ${jwk.crv}`);
    if (jwk.alg !== undefined && (!TRAFFIC_TOKEN_ALGORITHMS.includes(jwk.alg) || !algorithmFits(jwk.alg, jwk))) {
      throw new Error(`key ${JSON.stringify(kid)} has incompatible algorithm ${JSON.stringify(jwk.alg)}`);
    }
    keys.set(kid, Object.freeze({ ...jwk }));
  });
  return keys;
}
