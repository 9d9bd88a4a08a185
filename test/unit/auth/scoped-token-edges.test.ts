// agent-sandbox's scoped tokens at their edges (src/auth/scoped-token.ts): the token format computed here
// from its definition (so minter and verifier cannot drift together), and the reason for each refusal.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mintScopedToken, ScopedTokenAuthorizer } from '../../../src/auth/scoped-token.ts';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');
const now = 1_800_000_000_000;
const authz = new ScopedTokenAuthorizer(SECRET, () => now);
const b64 = (text: string) => Buffer.from(text).toString('base64url');
const sign = (payload: string) => createHmac('sha256', SECRET).update(`agent-sandbox/scoped-token/v1.${payload}`).digest('base64url');
const signed = (claims: string) => `v1.${b64(claims)}.${sign(b64(claims))}`;
const verdict = (token: string, namespace = 'team', name = 'box') => authz.authorize(`Bearer ${token}`, namespace, name);
const refused = (reason: string) => ({ ok: false, code: 'unauthenticated', reason });
const exp = now / 1000 + 60;

describe('the scoped token format', () => {
  it('is v1.<base64url claims>.<HMAC-SHA256 over the context string and the claims>', () => {
    expect(mintScopedToken(SECRET, 'team', 'box', 60, now)).toBe(signed(JSON.stringify({ ns: 'team', name: 'box', exp })));
    expect(verdict(signed(JSON.stringify({ ns: 'team', name: 'box', exp })))).toEqual({ ok: true });
  });
});

describe('the reasons a scoped token is refused', () => {
  const good = signed(JSON.stringify({ ns: 'team', name: 'box', exp }));
  const [, payload, signature] = good.split('.') as [string, string, string];

  it('no token, or one too long to read', () => {
    expect(authz.authorize(undefined, 'team', 'box')).toEqual(refused('no bearer token'));
    expect(verdict('x'.repeat(4097))).toEqual(refused('token too long'));
    expect(verdict('x'.repeat(4096))).toEqual(refused('malformed token'));
  });

  it('another version, a missing or an extra part, or characters outside base64url', () => {
    for (const token of [
      `v2.${payload}.${signature}`,
      'v1',
      `v1.${payload}`,
      `${good}.x`,
      `v1.${payload}+.${signature}`,
      `v1.${payload}.${signature}=`,
    ]) {
      expect(verdict(token)).toEqual(refused('malformed token'));
    }
  });

  it('a signature of another length or another value, without throwing', () => {
    expect(verdict(`v1.${payload}.${signature.slice(0, 10)}`)).toEqual(refused('signature mismatch'));
    expect(verdict(`v1.${payload}.${sign(b64('other'))}`)).toEqual(refused('signature mismatch'));
  });

  it('signed claims that are not JSON, null, or have no numeric exp', () => {
    for (const claims of [
      'not json',
      'null',
      '5',
      JSON.stringify({ ns: 'team', name: 'box' }),
      JSON.stringify({ ns: 'team', name: 'box', exp: String(exp) }),
    ]) {
      expect(verdict(signed(claims))).toEqual(refused('malformed claims'));
    }
  });

  it('another sandbox', () => {
    expect(verdict(good, 'team', 'other')).toEqual({
      ok: false,
      code: 'token_scope_mismatch',
      reason: 'the token is scoped to another sandbox',
    });
  });
});
