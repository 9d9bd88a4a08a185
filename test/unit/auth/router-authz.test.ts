// agent-sandbox's router authorization: its scoped tokens and the TokenReview cache. The review itself
// runs against the real API server in test/integration/agent-sandbox-router.test.ts; here a reviewer
// function stands in only to count calls and fail on demand.
import { describe, expect, it } from 'vitest';
import { mintScopedToken, ScopedTokenAuthorizer } from '../../../src/auth/scoped-token.ts';
import { TokenReviewAuthorizer, type Reviewer } from '../../../src/auth/token-review.ts';
import { bearerToken } from '../../../src/core/router-authz.ts';

const SECRET = Buffer.from('0123456789abcdef0123456789abcdef');

describe('bearerToken', () => {
  it('reads the Bearer scheme case-insensitively and keeps the token verbatim', () => {
    expect(bearerToken('Bearer AbC')).toBe('AbC');
    expect(bearerToken('bEaReR  AbC  ')).toBe('AbC');
    expect(bearerToken('Basic AbC')).toBeUndefined();
    expect(bearerToken('Bearer ')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
  });
});

describe('scoped tokens', () => {
  const now = 1_800_000_000_000;
  const authz = new ScopedTokenAuthorizer(Buffer.from(`  ${SECRET.toString()}\n`), () => now);

  it('opens the sandbox the token names, until its exp second (exclusive)', () => {
    const token = mintScopedToken(SECRET, 'team', 'box', 60, now);
    expect(authz.authorize(`Bearer ${token}`, 'team', 'box')).toEqual({ ok: true });
    expect(authz.authorize(`Bearer ${token}`, 'team', 'other')).toMatchObject({ ok: false, code: 'token_scope_mismatch' });
    expect(authz.authorize(`Bearer ${token}`, 'other', 'box')).toMatchObject({ ok: false, code: 'token_scope_mismatch' });
    const atExp = new ScopedTokenAuthorizer(SECRET, () => now + 60_000);
    expect(atExp.authorize(`Bearer ${token}`, 'team', 'box')).toMatchObject({
      ok: false,
      code: 'unauthenticated',
      reason: 'token expired',
    });
  });

  it.each([
    ['no token', undefined],
    ['another scheme', 'Basic x'],
    ['another version', 'v2.e30.AAAA'],
    ['two parts', 'Bearer v1.e30'],
    ['four parts', 'Bearer v1.e30.AAAA.AAAA'],
    ['not base64url', 'Bearer v1.e3+0.AAAA'],
    ['a forged signature', `Bearer ${mintScopedToken(Buffer.from('x'.repeat(40)), 'team', 'box', 60)}`],
  ])('refuses %s as unauthenticated', (_what, header) => {
    expect(authz.authorize(header, 'team', 'box')).toMatchObject({ ok: false, code: 'unauthenticated' });
  });

  it('refuses a secret shorter than 32 bytes after trimming, at start', () => {
    expect(() => new ScopedTokenAuthorizer(Buffer.from(` ${'x'.repeat(31)} \n`))).toThrow(/at least 32 bytes/);
  });
});

describe('TokenReview verdicts', () => {
  const options = { ttlMs: 30_000, cacheSize: 2, requireToken: true, audiences: [] };

  function counting(answer: (token: string) => boolean | Error): { review: Reviewer; calls: string[] } {
    const calls: string[] = [];
    return {
      calls,
      review: async (token) => {
        calls.push(token);
        await Promise.resolve();
        const result = answer(token);
        if (result instanceof Error) throw result;
        return result;
      },
    };
  }

  it('asks once for a burst with one new token, then answers from memory at once', async () => {
    const { review, calls } = counting((t) => t === 'good');
    const authz = new TokenReviewAuthorizer(options, review);
    const verdicts = await Promise.all(Array.from({ length: 50 }, () => authz.authorize('Bearer good', 'ns', 'box')));
    expect(verdicts.every((v) => v.ok)).toBe(true);
    expect(authz.authorize('Bearer good', 'ns', 'box')).toEqual({ ok: true });
    expect(await authz.authorize('Bearer bad', 'ns', 'box')).toMatchObject({ ok: false, code: 'unauthenticated' });
    expect(authz.authorize('Bearer bad', 'ns', 'box')).toMatchObject({ ok: false, code: 'unauthenticated' });
    expect(calls).toEqual(['good', 'bad']);
  });

  it('is bounded: the least recently used verdict is forgotten past cacheSize', async () => {
    const { review, calls } = counting(() => true);
    const authz = new TokenReviewAuthorizer(options, review);
    for (const t of ['a', 'b', 'c']) await authz.authorize(`Bearer ${t}`, 'ns', 'box');
    await authz.authorize('Bearer a', 'ns', 'box');
    expect(calls).toEqual(['a', 'b', 'c', 'a']);
  });

  it('refuses while the API cannot answer, and remembers that only briefly', async () => {
    const { review, calls } = counting(() => new Error('connection refused'));
    const authz = new TokenReviewAuthorizer(options, review);
    expect(await authz.authorize('Bearer t', 'ns', 'box')).toMatchObject({ ok: false, code: 'authz_unavailable' });
    expect(authz.authorize('Bearer t', 'ns', 'box')).toMatchObject({ ok: false, code: 'authz_unavailable' });
    expect(calls).toHaveLength(1);
  });

  it('without a token: refused when a token is required, let through in the transitional mode; never asked', () => {
    const { review, calls } = counting(() => true);
    expect(new TokenReviewAuthorizer(options, review).authorize(undefined, 'ns', 'box')).toMatchObject({
      ok: false,
      code: 'unauthenticated',
    });
    expect(new TokenReviewAuthorizer({ ...options, requireToken: false }, review).authorize(undefined, 'ns', 'box')).toEqual({ ok: true });
    expect(calls).toEqual([]);
  });
});
