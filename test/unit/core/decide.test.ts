import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, tokenMatches, type DecideOptions } from '../../../src/core/decide.ts';
import type { Identification } from '../../../src/identification/identify.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { makeRoute } from '../../support/routes.ts';

const options: DecideOptions = { wakeEnabled: true, unnamed: 'reject' };
const now = Date.parse('2026-11-21T00:00:00Z');
const named: Identification = { kind: 'named', sandboxId: 'sbx', port: 8080 };
const sha = (s: string) => createHash('sha256').update(s).digest();

function table(...routes: Route[]): RouteRegistry {
  const registry = new RouteRegistry();
  for (const r of routes) registry.upsert(r);
  registry.markReady();
  return registry;
}
const ask = (routes: RouteRegistry, opts: DecideOptions = options, accessToken?: string, identity: Identification = named) =>
  decide(identity, routes, { now, accessToken }, opts);

describe('decide', () => {
  it('forwards a running sandbox to its pod IP and the requested port', () => {
    const route = makeRoute();
    expect(ask(table(route))).toEqual({ kind: 'forward', route, port: 8080 });
  });

  it('answers an unknown sandbox as not found, or as not ready before the first list', () => {
    expect(ask(table())).toMatchObject({ kind: 'reject', code: 'sandbox_not_found', sandboxId: 'sbx' });
    expect(ask(new RouteRegistry())).toMatchObject({ kind: 'reject', code: 'routes_not_ready' });
  });

  it('answers dead, creating and pool sandboxes with their codes', () => {
    expect(ask(table(makeRoute({ state: 'dead' })))).toMatchObject({ code: 'sandbox_not_running' });
    expect(ask(table(makeRoute({ state: 'creating' })))).toMatchObject({ code: 'sandbox_not_ready' });
    expect(ask(table(makeRoute({ state: 'available' })))).toMatchObject({ code: 'sandbox_not_running' });
  });

  it('treats a sandbox past its shutdownTime or being deleted as not running', () => {
    expect(ask(table(makeRoute({ shutdownAt: now - 1 })))).toMatchObject({ code: 'sandbox_not_running' });
    expect(ask(table(makeRoute({ shutdownAt: now + 60_000 })))).toMatchObject({ kind: 'forward' });
    expect(ask(table(makeRoute({ state: 'paused', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 }, deleting: true })))).toMatchObject({
      code: 'sandbox_not_running',
    });
  });

  it('wakes a paused sandbox that opted in', () => {
    const route = makeRoute({ state: 'paused', podIP: '', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 } });
    expect(ask(table(route))).toEqual({ kind: 'wake', route, port: 8080 });
  });

  it('does not wake a paused sandbox that did not opt in, or when waking is off', () => {
    expect(ask(table(makeRoute({ state: 'paused' })))).toMatchObject({ code: 'sandbox_not_running' });
    const optedIn = makeRoute({ state: 'paused', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 } });
    expect(ask(table(optedIn), { ...options, wakeEnabled: false })).toMatchObject({ code: 'sandbox_not_running' });
  });

  it('demands the access token before waking, and answers 401 without it', () => {
    const route = makeRoute({ state: 'paused', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 }, accessTokenDigest: sha('tok') });
    expect(ask(table(route), options, 'tok')).toMatchObject({ kind: 'wake' });
    expect(ask(table(route), options, 'wrong')).toMatchObject({ kind: 'reject', code: 'unauthorized' });
    expect(ask(table(route), options, undefined)).toMatchObject({ kind: 'reject', code: 'unauthorized' });
    expect(ask(table(route), options, '')).toMatchObject({ kind: 'reject', code: 'unauthorized' });
  });

  it('passes or rejects a request that names no sandbox, as configured', () => {
    expect(ask(table(), { ...options, unnamed: 'pass' }, undefined, { kind: 'none' })).toEqual({ kind: 'pass' });
    expect(ask(table(), options, undefined, { kind: 'none' })).toMatchObject({ kind: 'reject', code: 'missing_sandbox' });
  });

  it('says why a pool member or a paused sandbox that may not be woken is not running (the client reads the reason)', () => {
    expect(ask(table(makeRoute({ state: 'available' })))).toStrictEqual({
      kind: 'reject',
      code: 'sandbox_not_running',
      sandboxId: 'sbx',
      reason: 'the sandbox is an unclaimed pool member',
    });
    expect(ask(table(makeRoute({ state: 'paused' })))).toStrictEqual({
      kind: 'reject',
      code: 'sandbox_not_running',
      sandboxId: 'sbx',
      reason: 'the sandbox is paused and not opted in to wake on traffic',
    });
  });

  it('names no sandbox in the rejection of a malformed request that named none', () => {
    const malformed: Identification = { kind: 'malformed', code: 'invalid_host', reason: 'bad host' };
    expect(ask(table(), options, undefined, malformed)).toStrictEqual({ kind: 'reject', code: 'invalid_host', reason: 'bad host' });
  });

  it('carries a malformed identification through as its 400 code and reason', () => {
    const malformed: Identification = { kind: 'malformed', code: 'invalid_sandbox_port', reason: 'bad port', sandboxId: 'x' };
    expect(ask(table(), options, undefined, malformed)).toEqual({
      kind: 'reject',
      code: 'invalid_sandbox_port',
      reason: 'bad port',
      sandboxId: 'x',
    });
  });
});

describe('tokenMatches', () => {
  it('accepts any request when the sandbox has no token', () => {
    expect(tokenMatches(undefined, undefined)).toBe(true);
  });

  it('compares digests of the presented token', () => {
    expect(tokenMatches(sha('a'), 'a')).toBe(true);
    expect(tokenMatches(sha('a'), 'a '.trim() + 'b')).toBe(false);
    expect(tokenMatches(sha(''), undefined)).toBe(false);
  });
});

describe('hostile input (property-based)', () => {
  it('always returns one of the four decisions, and only forwards running routes', () => {
    const state = fc.constantFrom('running', 'paused', 'creating', 'available', 'dead' as const);
    fc.assert(
      fc.property(
        state,
        fc.boolean(),
        fc.option(fc.string()),
        fc.option(fc.string()),
        fc.integer({ min: 1, max: 65535 }),
        (s, wake, token, presented, port) => {
          const route = makeRoute({
            state: s,
            wake: wake ? { pauseAfterSeconds: 0, timeoutSeconds: 0 } : undefined,
            accessTokenDigest: token === null ? undefined : sha(token),
          });
          const d = ask(table(route), options, presented ?? undefined, { kind: 'named', sandboxId: 'sbx', port });
          expect(['forward', 'wake', 'reject']).toContain(d.kind);
          if (d.kind === 'forward') expect(s).toBe('running');
          if (d.kind === 'wake') {
            expect(s).toBe('paused');
            expect(wake).toBe(true);
            if (token !== null) expect(presented).toBe(token);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('a sandbox being woken that passes through "creating"', () => {
  // agent-sandbox reports Ready=False DependenciesNotReady while the resumed pod starts.
  const wake = { pauseAfterSeconds: 0, timeoutSeconds: 0 };
  const starting = makeRoute({ state: 'creating', podIP: '', wake, accessTokenDigest: sha('tok') });
  const wakes = (uid: string | undefined) => ({ waking: (r: Route) => r.uid === uid });

  it('joins the wake this replica has in progress for that very object, token first', () => {
    const routes = table(starting);
    expect(decide(named, routes, { now, accessToken: 'tok' }, options, wakes('uid-1'))).toEqual({
      kind: 'wake',
      route: starting,
      port: 8080,
    });
    expect(decide(named, routes, { now, accessToken: 'bad' }, options, wakes('uid-1'))).toMatchObject({ code: 'unauthorized' });
  });

  it('is answered "not ready" when no wake for it is in progress here (or for another object)', () => {
    const routes = table(starting);
    expect(decide(named, routes, { now, accessToken: 'tok' }, options, wakes(undefined))).toMatchObject({ code: 'sandbox_not_ready' });
    expect(decide(named, routes, { now, accessToken: 'tok' }, options, wakes('another-uid'))).toMatchObject({ code: 'sandbox_not_ready' });
    expect(decide(named, routes, { now, accessToken: 'tok' }, options)).toMatchObject({ code: 'sandbox_not_ready' });
  });

  it('joins a resume another replica (or a person) started, only when it may be woken here: opted in, waking on', () => {
    const resuming = makeRoute({ state: 'creating', podIP: '', wake, resuming: true });
    expect(decide(named, table(resuming), { now, accessToken: undefined }, options, wakes(undefined))).toEqual({
      kind: 'wake',
      route: resuming,
      port: 8080,
    });
    expect(decide(named, table(resuming), { now, accessToken: undefined }, options)).toEqual({ kind: 'wake', route: resuming, port: 8080 });
    const notOptedIn = makeRoute({ state: 'creating', podIP: '', resuming: true });
    expect(decide(named, table(notOptedIn), { now, accessToken: undefined }, options)).toMatchObject({ code: 'sandbox_not_ready' });
    expect(decide(named, table(resuming), { now, accessToken: undefined }, { ...options, wakeEnabled: false })).toMatchObject({
      code: 'sandbox_not_ready',
    });
  });
});

describe('access rules of a running sandbox (OpenKruise gateway with auth on)', () => {
  const guarded = makeRoute({ accessTokenDigest: sha('tok') });
  const jwt = makeRoute({ trafficAuth: true, accessTokenDigest: sha('tok') });
  const pausedJwt = makeRoute({ state: 'paused', podIP: '', trafficAuth: true, wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 } });
  const ctx = (over: { accessToken?: string; trafficTokensReady?: boolean } = {}) => ({ now, accessToken: over.accessToken, ...over });

  it('checks x-access-token on every request to a running sandbox by default', () => {
    expect(ask(table(guarded), options, 'tok')).toEqual({ kind: 'forward', route: guarded, port: 8080 });
    expect(ask(table(guarded), options, 'wrong')).toMatchObject({ kind: 'reject', code: 'unauthorized', sandboxId: 'sbx' });
    expect(ask(table(guarded), options, undefined)).toMatchObject({ kind: 'reject', code: 'unauthorized' });
    expect(ask(table(guarded), { ...options, accessTokenCheck: 'every-request' }, undefined)).toMatchObject({ code: 'unauthorized' });
  });

  it('forwards a running sandbox unchecked with wake-only checks, and still checks a wake', () => {
    const wakeOnly: DecideOptions = { ...options, accessTokenCheck: 'wake-only' };
    expect(ask(table(guarded), wakeOnly, undefined)).toMatchObject({ kind: 'forward' });
    expect(decide(named, table(jwt), ctx(), wakeOnly)).toMatchObject({ kind: 'forward' });
    const pausedGuarded = makeRoute({ state: 'paused', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 }, accessTokenDigest: sha('tok') });
    expect(ask(table(pausedGuarded), wakeOnly, undefined)).toMatchObject({ code: 'unauthorized' });
    expect(decide(named, table(pausedJwt), ctx({ trafficTokensReady: true }), wakeOnly)).toMatchObject({ kind: 'verify', then: 'wake' });
  });

  it('asks for the traffic access token of a sandbox that requires one, in place of x-access-token', () => {
    expect(decide(named, table(jwt), ctx({ trafficTokensReady: true }), options)).toEqual({
      kind: 'verify',
      route: jwt,
      port: 8080,
      then: 'forward',
    });
    // The access token neither opens nor closes it: the JWT alone decides (the gateway does not fall back).
    expect(decide(named, table(jwt), ctx({ accessToken: 'tok', trafficTokensReady: true }), options)).toMatchObject({ kind: 'verify' });
  });

  it('refuses a sandbox that requires a traffic access token with 503 while none can be checked, and never wakes it', () => {
    expect(decide(named, table(jwt), ctx({ accessToken: 'tok' }), options)).toMatchObject({
      kind: 'reject',
      code: 'jwt_verifier_not_ready',
    });
    expect(decide(named, table(pausedJwt), ctx({ trafficTokensReady: false }), options)).toMatchObject({ code: 'jwt_verifier_not_ready' });
    expect(decide(named, table(pausedJwt), ctx({ trafficTokensReady: true }), options)).toEqual({
      kind: 'verify',
      route: pausedJwt,
      port: 8080,
      then: 'wake',
    });
  });

  it('answers not-running states before any credential, as the gateway does', () => {
    expect(decide(named, table(makeRoute({ state: 'dead', trafficAuth: true })), ctx(), options)).toMatchObject({
      code: 'sandbox_not_running',
    });
    expect(ask(table(makeRoute({ state: 'creating', accessTokenDigest: sha('tok') })))).toMatchObject({ code: 'sandbox_not_ready' });
  });

  it('applies the same rule to an agent-sandbox route with a token digest', () => {
    const agent = makeRoute({ id: 'team/box', accessTokenDigest: sha('tok') });
    const id: Identification = { kind: 'named', sandboxId: 'team/box', port: 8888 };
    expect(decide(id, table(agent), ctx(), options)).toMatchObject({ code: 'unauthorized' });
    expect(decide(id, table(agent), ctx({ accessToken: 'tok' }), options)).toMatchObject({ kind: 'forward' });
  });
});
