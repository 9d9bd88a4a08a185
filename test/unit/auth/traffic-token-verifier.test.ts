// Traffic access tokens, checked as OpenKruise's gateway checks them (pkg/identity/oidc and the filter's
// binding of sandbox.sandboxId / sandbox.sandboxUid to the route), with tokens signed by jose.
import { generateKeyPairSync, type KeyObject, type webcrypto } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { parseJwks } from '../../../src/auth/jwks.ts';
import { TrafficTokenVerifier } from '../../../src/auth/traffic-token-verifier.ts';

const ISSUER = 'https://identity.example';
const NOW = Date.parse('2026-12-01T00:00:00Z');
const route = { id: 'default--sample', uid: '89d24507-936c-4a04-a958-b5d6a8277ed5' };
// A KeyObject: one RSA key may sign RS256 and PS256 alike.
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = await generateKeyPair('ES256', { extractable: true });
const other = await generateKeyPair('RS256', { extractable: true });
const jwk = async (key: webcrypto.CryptoKey | KeyObject, kid: string, extra: Partial<JWK> = {}) => ({
  ...(await exportJWK(key)),
  kid,
  use: 'sig',
  ...extra,
});
const keys = parseJwks(JSON.stringify({ keys: [await jwk(rsa.publicKey, 'rsa-1', { alg: 'RS256' }), await jwk(ec.publicKey, 'ec-1')] }));

function verifier(over: { audience?: string; skew?: number } = {}): TrafficTokenVerifier {
  const v = new TrafficTokenVerifier({ audience: over.audience ?? '', clockSkewSeconds: over.skew ?? 60, now: () => NOW });
  v.publish({ keys, issuer: ISSUER });
  return v;
}

interface TokenSpec {
  claims?: Record<string, unknown>;
  alg?: string;
  kid?: string | undefined;
  key?: webcrypto.CryptoKey | KeyObject;
  drop?: string[];
}
const s = Math.floor(NOW / 1000);
async function token(spec: TokenSpec = {}): Promise<string> {
  const claims: Record<string, unknown> = {
    iss: ISSUER,
    sub: 'e2b:controlplane:client',
    iat: s - 10,
    nbf: s - 10,
    exp: s + 3600,
    sandbox: { sandboxId: route.id, sandboxUid: route.uid },
    ...spec.claims,
  };
  for (const name of spec.drop ?? []) delete claims[name];
  const header = { alg: spec.alg ?? 'RS256', ...(spec.kid === undefined && 'kid' in spec ? {} : { kid: spec.kid ?? 'rsa-1' }) };
  return new SignJWT(claims).setProtectedHeader(header).sign(spec.key ?? rsa.privateKey);
}

describe('traffic access tokens', () => {
  it('accepts a token signed by a key of the set, for this very sandbox', async () => {
    expect(await verifier().verify(await token(), route)).toEqual({ ok: true });
    expect(await verifier().verify(await token({ alg: 'ES256', kid: 'ec-1', key: ec.privateKey }), route)).toEqual({ ok: true });
  });

  it('refuses a token for another sandbox ID, or for a recreated sandbox of the same name (UID), as a mismatch', async () => {
    const forOther = await token({ claims: { sandbox: { sandboxId: 'default--other', sandboxUid: route.uid } } });
    expect(await verifier().verify(forOther, route)).toMatchObject({ ok: false, mismatch: true });
    const forOldObject = await token({ claims: { sandbox: { sandboxId: route.id, sandboxUid: 'old-uid' } } });
    expect(await verifier().verify(forOldObject, route)).toMatchObject({ ok: false, mismatch: true });
    // The claims are nested under "sandbox", as the gateway's TrafficAccessTokenClaims reads them.
    const topLevel = await token({ claims: { sandbox: undefined, sandboxId: route.id, sandboxUid: route.uid } });
    expect(await verifier().verify(topLevel, route)).toMatchObject({ ok: false, mismatch: true });
  });

  it.each([
    ['expired', { claims: { exp: s - 120 } }],
    ['not yet valid (nbf)', { claims: { nbf: s + 120 } }],
    ['issued in the future (iat)', { claims: { iat: s + 120 } }],
    ['from another issuer', { claims: { iss: 'https://evil.example' } }],
    ['without exp', { drop: ['exp'] }],
    ['without iat', { drop: ['iat'] }],
    ['without nbf', { drop: ['nbf'] }],
    ['without sub', { drop: ['sub'] }],
    ['with an empty sub', { claims: { sub: '' } }],
    ['without a kid', { kid: undefined }],
    ['naming an unknown kid', { kid: 'nobody' }],
    ['signed by a key outside the set', { key: other.privateKey }],
    ["whose alg is not its key's declared alg", { alg: 'PS256' }],
    ['whose alg does not fit its key', { alg: 'ES256', kid: 'rsa-1', key: ec.privateKey }],
  ] as [string, TokenSpec][])('refuses a token %s', async (_what, spec) => {
    expect(await verifier().verify(await token(spec), route)).toMatchObject({ ok: false, mismatch: false });
  });

  it('allows the configured clock skew on exp, nbf and iat, and no more', async () => {
    const late = await token({ claims: { exp: s - 30, nbf: s + 30, iat: s + 30 } });
    expect(await verifier({ skew: 60 }).verify(late, route)).toEqual({ ok: true });
    expect(await verifier({ skew: 0 }).verify(late, route)).toMatchObject({ ok: false });
  });

  it('checks the audience only when one is configured (the gateway never does)', async () => {
    const aud = await token({ claims: { aud: 'sandboxes' } });
    expect(await verifier().verify(aud, route)).toEqual({ ok: true });
    expect(await verifier({ audience: 'sandboxes' }).verify(aud, route)).toEqual({ ok: true });
    expect(await verifier({ audience: 'other' }).verify(aud, route)).toMatchObject({ ok: false });
    expect(await verifier({ audience: 'sandboxes' }).verify(await token(), route)).toMatchObject({ ok: false });
  });

  it('refuses unsigned and symmetric tokens, garbage, an empty header and tokens over 64 KiB', async () => {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const payload = b64({ iss: ISSUER, sub: 'x', iat: s, nbf: s, exp: s + 60, sandbox: { sandboxId: route.id, sandboxUid: route.uid } });
    expect(await verifier().verify(`${b64({ alg: 'none', kid: 'rsa-1' })}.${payload}.`, route)).toMatchObject({ ok: false });
    const hs = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(new Uint8Array(32));
    expect(await verifier().verify(hs, route)).toMatchObject({ ok: false });
    for (const bad of [undefined, '', 'not-a-jwt', 'a.b.c', `${await token()},${await token()}`]) {
      expect(await verifier().verify(bad, route)).toMatchObject({ ok: false });
    }
    const huge = await token({ claims: { pad: 'x'.repeat(70_000) } });
    expect(await verifier().verify(huge, route)).toMatchObject({ ok: false, reason: expect.stringContaining('longer') });
  });

  it('checks the times and the binding of a token it has verified before, on every request', async () => {
    let clock = NOW;
    const v = new TrafficTokenVerifier({ audience: '', clockSkewSeconds: 0, now: () => clock });
    v.publish({ keys, issuer: ISSUER });
    const t = await token({ claims: { exp: s + 60 } });
    expect(await v.verify(t, route)).toEqual({ ok: true });
    expect(await v.verify(t, route)).toEqual({ ok: true });
    expect(await v.verify(t, { id: route.id, uid: 'another-object' })).toMatchObject({ ok: false, mismatch: true });
    clock = NOW + 61_000;
    expect(await v.verify(t, route)).toMatchObject({ ok: false, reason: 'the token has expired' });
    // A forged copy is not the remembered token: its signature is checked.
    const [head, body] = t.split('.');
    expect(await v.verify(`${head}.${body}.${'A'.repeat(342)}`, route)).toMatchObject({ ok: false });
  });

  it('refuses everything until keys are published, and takes them only once', async () => {
    const v = new TrafficTokenVerifier({ audience: '', clockSkewSeconds: 60, now: () => NOW });
    expect(v.ready).toBe(false);
    expect(await v.verify(await token(), route)).toMatchObject({ ok: false });
    v.publish({ keys, issuer: ISSUER });
    expect(v.ready).toBe(true);
    expect(() => v.publish({ keys, issuer: ISSUER })).toThrow(/already/);
  });
});

const pub = await jwk(rsa.publicKey, 'k');

describe('the verification key set', () => {
  const set = (...list: unknown[]) => JSON.stringify({ keys: list });

  it.each([
    ['not JSON', '{', /not JSON/],
    ['empty', set(), /no keys/],
    ['a key without kid', set({ ...pub, kid: undefined }), /no kid/],
    ['a kid used twice', set(pub, pub), /twice/],
    ['a key not for signing', set({ ...pub, use: 'enc' }), /use/],
    ['a key whose key_ops omit verify', set({ ...pub, key_ops: ['encrypt'] }), /key_ops/],
    ['a symmetric key', set({ kty: 'oct', k: 'AAAA', kid: 'k' }), /asymmetric/],
    ['a private key', JSON.stringify({ keys: [{ ...pub, d: 'AAAA' }] }), /private/],
    ['an incompatible alg', set({ ...pub, alg: 'ES256' }), /incompatible/],
    ['an HMAC alg', set({ ...pub, alg: 'HS256' }), /incompatible/],
    ['broken key material', set({ ...pub, e: undefined }), /not a valid key/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseJwks(text)).toThrow(message);
  });

  it('reads keys by kid', async () => {
    const read = parseJwks(set(pub, await jwk(ec.publicKey, 'e', { key_ops: ['verify'] })));
    expect([...read.keys()]).toEqual(['k', 'e']);
  });
});
