// sandbox-extproc in place of OpenKruise's sandbox-gateway (pkg/sandbox-gateway at 0b72c83, auth on):
// each item of the contract an E2B client or an operator relies on, through the real Envoy, against
// Sandbox objects in a real kube-apiserver. Per-request access tokens (x-access-token, the legacy
// annotation too), the JWT rule of sandboxes annotated security.agents.kruise.io/enable-jwt-auth (keys
// from a JWKS file, from OIDC discovery over https, or none: 503), the /kruise/<id>/<port>/<rest> path
// form with Envoy applying the service's :path, the gateway's status codes and messages, and the access
// log. Unauthorized traffic never wakes a sandbox: patches are counted in the API server's audit log.
// The Sandboxes are run by OpenKruise's own controller (pods from kwok, at the addresses they report),
// created with their annotations as E2B's sandbox-manager writes them; wakes go through that controller.
import { createServer, type Server } from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Route } from '../../src/routes/route.ts';
import { makeCerts } from '../support/certs.ts';
import { isActivityRecord, SERVICE_USER, type AuditEvent } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet, type HttpResult } from '../support/http.ts';
import { isRunning, podIP, type NewSandbox } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'gateway';
const ISSUER = 'https://identity.test';
const LEGACY_TOKEN = 'e2b.agents.kruise.io/envd-access-token';
const JWT_AUTH = 'security.agents.kruise.io/enable-jwt-auth';
const dir = mkdtempSync(join(tmpdir(), 'sbx-gw-'));
const signing = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = { keys: [{ ...(await exportJWK(signing.publicKey)), kid: 'k1', use: 'sig', alg: 'RS256' }] };
writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));

let stack: Stack;
/** The same control plane, seen by a second service with no JWT keys. */
let plain: RunningService;
let plainEnvoy: RunningEnvoy;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    serviceArgs: ['--traffic-token-jwks-file', join(dir, 'jwks.json'), '--traffic-token-issuer', ISSUER, '--wake-timeout', '20s'],
  });
  plain = await startService(['--kubeconfig', stack.kubeconfig, '--namespaces', NS]);
  plainEnvoy = await startEnvoy({ extprocPort: plain.listening.grpcPort as number });
});

afterAll(async () => {
  await plainEnvoy?.stop();
  await plain?.stop();
  await stack?.stop();
});

/** Creates a Sandbox with these annotations, and waits until both services hold it as `ready` says. */
async function sandbox(
  spec: Omit<NewSandbox, 'namespace' | 'annotations'>,
  annotations: Record<string, string> = {},
  ready: (route: Route | undefined) => boolean = (r) => r !== undefined,
): Promise<string> {
  await stack.openkruise.create({ namespace: NS, ...spec, annotations });
  const id = `${NS}--${spec.name}`;
  const settled = (r: Route | undefined) => ready(r) && (r?.trafficAuth ?? false) === (annotations[JWT_AUTH] === 'true');
  await waitForRoute(stack.service.app.registry, id, settled);
  await waitForRoute(plain.app.registry, id, settled);
  return id;
}
const running = (r: Route | undefined) => r?.state === 'running';
const pausedReady = (r: Route | undefined) => r?.state === 'paused' && !r.pausing;

const get = (id: string, headers: Record<string, string> = {}) => stack.get(id, headers);
const getPath = (envoyUrl: string, path: string, headers: Record<string, string> = {}) => httpGet(`${envoyUrl}${path}`, headers, 30_000);
const seen = (res: HttpResult) => res.json<{ path: string; headers: Record<string, string> }>();

/** Resume patches the API server applied for one sandbox. */
const patches = (name: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.user.username === SERVICE_USER &&
      e.objectRef.subresource === undefined &&
      !isActivityRecord(e) &&
      (e.responseStatus?.code ?? 0) < 300,
  );
async function nothingPatched(name: string): Promise<void> {
  await stack.plane.auditBarrier();
  expect(patches(name)).toHaveLength(0);
  expect(stack.service.app.wakes?.inFlight).toBe(0);
}

async function trafficToken(claims: { sandboxId: string; sandboxUid: string }, over: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, sub: 'e2b:controlplane:client', iat: now, nbf: now, exp: now + 600, sandbox: claims, ...over })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .sign(signing.privateKey);
}
const claimsOf = (id: string) => {
  const route = stack.service.app.registry.get(id) as Route;
  return { sandboxId: route.id, sandboxUid: route.uid };
};

describe('access tokens on every request (the gateway with enable-auth)', () => {
  it('answers a running sandbox with an access token 401 without it, in the gateway words, and forwards x-access-token with it', async () => {
    const id = await sandbox({ name: 'guarded', accessToken: 'rt-secret' }, {}, running);
    for (const headers of [{}, { 'x-access-token': 'wrong' }, { 'x-access-token': '' }] as Record<string, string>[]) {
      const res = await get(id, headers);
      expect(res.status).toBe(401);
      expect(res.json()).toMatchObject({ error: 'unauthorized', message: 'unauthorized: invalid or missing access token' });
    }
    const ok = await get(id, { 'x-access-token': 'rt-secret' });
    expect(ok.status).toBe(200);
    // envd checks the same header itself: the gateway forwards it, and so does the service.
    expect(seen(ok).headers['x-access-token']).toBe('rt-secret');
    const entry = await stack.envoy.waitForAccessLog((e) => e['sandbox_id'] === id && Number(e['status']) === 401);
    expect(entry['details']).toBe('sandbox_extproc_unauthorized');
  });

  it('reads the token from the legacy e2b.agents.kruise.io/envd-access-token when the newer annotation is absent', async () => {
    const id = await sandbox(
      { name: 'legacy' },
      { [LEGACY_TOKEN]: 'legacy-secret' },
      (r) => running(r) && r?.accessTokenDigest !== undefined,
    );
    expect((await get(id)).status).toBe(401);
    expect((await get(id, { 'x-access-token': 'legacy-secret' })).status).toBe(200);
  });

  it('never wakes a paused sandbox that has only the legacy token for a request without it', async () => {
    const id = await sandbox(
      { name: 'legacy-sleeper', paused: true, wake: { by: 'policy' } },
      { [LEGACY_TOKEN]: 'legacy-secret' },
      (r) => pausedReady(r) && r?.accessTokenDigest !== undefined,
    );
    expect((await get(id)).status).toBe(401);
    expect((await get(id, { 'x-access-token': 'nope' })).status).toBe(401);
    await nothingPatched('legacy-sleeper');
  });

  it('keeps the wake-only rule available: --access-token-check wake-only forwards a running sandbox unchecked', async () => {
    const id = `${NS}--guarded`;
    const wakeOnly = await startService(['--kubeconfig', stack.kubeconfig, '--namespaces', NS, '--access-token-check', 'wake-only']);
    const envoy = await startEnvoy({ extprocPort: wakeOnly.listening.grpcPort as number }).catch(async (error: unknown) => {
      await wakeOnly.stop();
      throw error;
    });
    try {
      await waitForRoute(wakeOnly.app.registry, id, running);
      const res = await getPath(envoy.url, '/', { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(stack.pool.port) });
      expect(res.status).toBe(200);
      // A wake is still checked.
      const sleeper = `${NS}--legacy-sleeper`;
      await waitForRoute(wakeOnly.app.registry, sleeper, pausedReady);
      expect((await getPath(envoy.url, '/', { 'e2b-sandbox-id': sleeper, 'e2b-sandbox-port': String(stack.pool.port) })).status).toBe(401);
    } finally {
      await envoy.stop();
      await wakeOnly.stop();
    }
    await nothingPatched('legacy-sleeper');
  });
});

describe('the JWT rule (security.agents.kruise.io/enable-jwt-auth: "true")', () => {
  it('forwards a request with a traffic access token for this sandbox, and removes the header before the sandbox', async () => {
    const id = await sandbox({ name: 'jwt-box', accessToken: 'rt-secret' }, { [JWT_AUTH]: 'true' }, running);
    const res = await get(id, { 'e2b-traffic-access-token': await trafficToken(claimsOf(id)), 'x-access-token': 'rt-secret' });
    expect(res.status).toBe(200);
    expect(seen(res).headers['e2b-traffic-access-token']).toBeUndefined();
    // The runtime token is not the gateway's business here: it travels on to envd, as in the gateway.
    expect(seen(res).headers['x-access-token']).toBe('rt-secret');
  });

  it('answers 403 forbidden for a missing, invalid, expired or foreign token, and the access token is no way in', async () => {
    const id = `${NS}--jwt-box`;
    const claims = claimsOf(id);
    const cases: [Record<string, string>, string][] = [
      [{}, 'forbidden: invalid or missing traffic access token'],
      [{ 'x-access-token': 'rt-secret' }, 'forbidden: invalid or missing traffic access token'],
      [{ 'e2b-traffic-access-token': 'not-a-jwt' }, 'forbidden: invalid or missing traffic access token'],
      [
        { 'e2b-traffic-access-token': await trafficToken(claims, { exp: Math.floor(Date.now() / 1000) - 3600 }) },
        'forbidden: invalid or missing traffic access token',
      ],
      [
        { 'e2b-traffic-access-token': await trafficToken({ ...claims, sandboxUid: 'a-recreated-object' }) },
        'forbidden: invalid or missing traffic access token (the traffic access token does not match the sandbox)',
      ],
    ];
    for (const [headers, message] of cases) {
      const res = await get(id, headers);
      expect(res.status, JSON.stringify(headers)).toBe(403);
      expect(res.json()).toMatchObject({ error: 'forbidden', message, sandboxId: id });
    }
    const entry = await stack.envoy.waitForAccessLog((e) => e['sandbox_id'] === id && Number(e['status']) === 403);
    expect(entry['details']).toBe('sandbox_extproc_forbidden');
  });

  it('never wakes a paused JWT sandbox for a bad token; a good one wakes it', async () => {
    const id = await sandbox({ name: 'jwt-sleeper', paused: true, wake: { by: 'policy' } }, { [JWT_AUTH]: 'true' }, pausedReady);
    const other = await trafficToken({ sandboxId: `${NS}--jwt-box`, sandboxUid: claimsOf(`${NS}--jwt-box`).sandboxUid });
    expect((await get(id)).status).toBe(403);
    expect((await get(id, { 'e2b-traffic-access-token': other })).status).toBe(403);
    await nothingPatched('jwt-sleeper');
    // Through the path form too: the woken request reaches the sandbox on the rewritten path.
    const res = await getPath(stack.envoy.url, `/kruise/${id}/${stack.pool.port}/after/wake?x=1`, {
      'e2b-traffic-access-token': await trafficToken(claimsOf(id)),
    });
    expect(res.status).toBe(200);
    expect(seen(res).path).toBe('/after/wake?x=1');
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(0);
    expect(patches('jwt-sleeper')).toHaveLength(1);
  });

  it('refuses JWT sandboxes with 503 jwt_verifier_not_ready when no key is configured, and wakes none of them', async () => {
    const id = `${NS}--jwt-box`;
    const res = await getPath(plainEnvoy.url, '/', {
      'e2b-sandbox-id': id,
      'e2b-sandbox-port': String(stack.pool.port),
      'e2b-traffic-access-token': await trafficToken(claimsOf(id)),
      'x-access-token': 'rt-secret',
    });
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({
      error: 'jwt_verifier_not_ready',
      message: 'service unavailable: traffic access token verifier is not ready',
    });
    const sleeper = await sandbox({ name: 'jwt-sleeper-2', paused: true, wake: { by: 'policy' } }, { [JWT_AUTH]: 'true' }, pausedReady);
    const refused = await getPath(plainEnvoy.url, '/', { 'e2b-sandbox-id': sleeper, 'e2b-sandbox-port': String(stack.pool.port) });
    expect(refused.status).toBe(503);
    await nothingPatched('jwt-sleeper-2');
  });

  it('removes the traffic access token header on its way to any sandbox, JWT-protected or not', async () => {
    const res = await get(`${NS}--guarded`, { 'x-access-token': 'rt-secret', 'e2b-traffic-access-token': 'whatever' });
    expect(res.status).toBe(200);
    expect(seen(res).headers['e2b-traffic-access-token']).toBeUndefined();
  });
});

describe('the path form /kruise/<id>/<port>/<rest>', () => {
  it('routes by the path and gives the sandbox /<rest> byte for byte: Envoy applies the :path the service sets', async () => {
    const id = await sandbox({ name: 'pathy' }, {}, running);
    const res = await getPath(stack.envoy.url, `/kruise/${id}/${stack.pool.port}/files/a%2Fb/%C3%A9?q=1&r=%2F`);
    expect(res.status).toBe(200);
    expect(seen(res).path).toBe('/files/a%2Fb/%C3%A9?q=1&r=%2F');
    const bare = await getPath(stack.envoy.url, `/kruise/${id}/${stack.pool.port}`);
    expect(seen(bare).path).toBe('/');
    const query = await getPath(stack.envoy.url, `/kruise/${id}/${stack.pool.port}?only=query`);
    expect(seen(query).path).toBe('/?only=query');
  });

  it('wins over the e2b-sandbox-id header and the host, as in the gateway', async () => {
    const id = `${NS}--pathy`;
    const res = await getPath(stack.envoy.url, `/kruise/${id}/${stack.pool.port}/x`, {
      'e2b-sandbox-id': 'someone-else',
      host: `${stack.pool.port}-someone-else.example.com`,
    });
    expect(res.status).toBe(200);
    expect(seen(res).path).toBe('/x');
  });

  it.each([
    ['/kruise', 'invalid_path'],
    ['/kruise/', 'invalid_path'],
    ['/kruise/only-an-id', 'invalid_path'],
    ['/kruise/gateway--pathy/0080/x', 'invalid_sandbox_port'],
    ['/kruise/bad..id/80/x', 'invalid_sandbox_id'],
  ])('answers the malformed %s with 400 %s', async (path, code) => {
    const res = await getPath(stack.envoy.url, path, { 'e2b-sandbox-id': `${NS}--pathy` });
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe(code);
  });

  it('applies the access rules to the path form too', async () => {
    const res = await getPath(stack.envoy.url, `/kruise/${NS}--guarded/${stack.pool.port}/x`);
    expect(res.status).toBe(401);
  });
});

describe('answers as the E2B SDK sees them', () => {
  it('names the sandbox in the 502s, in the gateway words, with its details in the access log', async () => {
    const missing = await get('no-such-sandbox');
    expect(missing.status).toBe(502);
    expect(missing.json()).toMatchObject({ error: 'sandbox_not_found', message: 'sandbox not found: no-such-sandbox' });
    const hermit = await sandbox({ name: 'hermit', paused: true }, {}, (r) => r?.state === 'paused');
    const notRunning = await get(hermit);
    expect(notRunning.status).toBe(502);
    expect(notRunning.json()['message']).toMatch(new RegExp(`^healthy sandbox not found: ${hermit}`));
    const entry = await stack.envoy.waitForAccessLog((e) => e['sandbox_id'] === 'no-such-sandbox');
    expect(entry).toMatchObject({ status: 502, details: 'sandbox_extproc_sandbox_not_found', decision: 'sandbox_not_found' });
  });

  it("logs the gateway's access-log fields that operators read (path as forwarded, without its query)", async () => {
    await getPath(stack.envoy.url, `/kruise/${NS}--pathy/${stack.pool.port}/logged/path?secret=1`, { 'user-agent': 'e2b-js-sdk/2.3' });
    const entry = await stack.envoy.waitForAccessLog((e) => e['path'] === '/logged/path');
    expect(entry).toMatchObject({
      status: 200,
      method: 'GET',
      user_agent: 'e2b-js-sdk/2.3',
      protocol: 'HTTP/1.1',
      sandbox_id: `${NS}--pathy`,
    });
    expect(Number(entry['bytes_sent'])).toBeGreaterThan(0);
    const serving = podIP(await stack.openkruise.waitFor(NS, 'pathy', isRunning, 30_000, 'running'));
    expect(entry['upstream']).toBe(`${serving}:${stack.pool.port}`);
  });
});

describe('traffic access token keys from OIDC discovery (the gateway operators’ OIDC_DISCOVERY_URL and CA)', () => {
  let https: Server;
  let app: RunningService;
  let serving = false;
  const lines: string[] = [];
  const logged = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`no log line ${pattern} within ${timeoutMs} ms`)), timeoutMs);
      const check = () => lines.some((l) => pattern.test(l)) && (clearTimeout(deadline), resolve(), true);
      if (!check()) waiters.push(check);
    });
  const waiters: (() => boolean | undefined)[] = [];

  beforeAll(async () => {
    const certs = makeCerts(mkdtempSync(join(tmpdir(), 'sbx-oidc-')));
    https = createServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, (req, res) => {
      // Until told to serve, the provider is down (the gateway retries, not ready meanwhile).
      if (!serving) return void res.writeHead(503).end();
      const base = `https://127.0.0.1:${(https.address() as { port: number }).port}`;
      if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer: ISSUER, jwks_uri: `${base}/jwks` }));
      else if (req.url === '/jwks') res.end(JSON.stringify(jwks));
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
    const port = (https.address() as { port: number }).port;
    app = await startService(
      [
        ...['--kubeconfig', stack.kubeconfig, '--namespaces', NS, '--log-level', 'info'],
        ...['--traffic-token-discovery-url', `https://127.0.0.1:${port}/.well-known/openid-configuration`],
        ...['--traffic-token-ca-file', certs.caCert],
      ],
      {},
      {
        logs: (line) => {
          lines.push(line);
          for (let i = waiters.length - 1; i >= 0; i -= 1) if (waiters[i]?.() === true) waiters.splice(i, 1);
        },
      },
    );
  });

  afterAll(async () => {
    await app?.stop();
    await new Promise<void>((resolve) => (https ? https.close(() => resolve()) : resolve()));
  });

  it('stays not ready and refuses JWT sandboxes with 503 until the provider answers, then verifies its tokens', async () => {
    await logged(/loading traffic access token keys failed/);
    // The routes loaded (the other reason not to be ready), the keys alone keep it not ready.
    await logged(/routes synced from Kubernetes/);
    const readyz = await fetch(`http://127.0.0.1:${app.listening.httpPort}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toContain('traffic access token keys not loaded yet');
    serving = true;
    await logged(/traffic access token keys loaded/);
    expect((await fetch(`http://127.0.0.1:${app.listening.httpPort}/readyz`)).status).toBe(200);
    const id = `${NS}--jwt-box`;
    await waitForRoute(app.app.registry, id, running);
    const service = await startEnvoy({ extprocPort: app.listening.grpcPort as number });
    try {
      const headers = { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(stack.pool.port) };
      const ok = await getPath(service.url, '/', { ...headers, 'e2b-traffic-access-token': await trafficToken(claimsOf(id)) });
      expect(ok.status).toBe(200);
      const foreign = await trafficToken(claimsOf(id), { iss: 'https://someone-else.test' });
      expect((await getPath(service.url, '/', { ...headers, 'e2b-traffic-access-token': foreign })).status).toBe(403);
    } finally {
      await service.stop();
    }
  });
});
