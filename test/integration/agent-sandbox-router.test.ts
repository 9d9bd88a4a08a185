// sandbox-extproc in place of agent-sandbox's router (issue 25): its request contract, checked on the
// real stack (Envoy, kube-apiserver + etcd, agent-sandbox's own controller v1.0.1 driving the Sandboxes,
// kwok's pods) and, where the two can be asked the same thing, against agent-sandbox's own router binary
// run beside it (test/support/sandbox-router.ts): same status, same `detail`. Also the scenarios of
// its router smoke test (sandbox-router/dev/smoke-test): DNS-form and UID routing, an upstream that goes
// away, TokenReview authorization on every request. Each README row of "Replacing agent-sandbox's
// router" names its test here.
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createTcpServer, isIP, type AddressInfo } from 'node:net';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { mintScopedToken } from '../../src/auth/scoped-token.ts';
import { podIPOf, type AgentSandboxes } from '../support/agent-sandbox.ts';
import { startTheirRouter, type RunningRouter as TheirRouter } from '../support/sandbox-router.ts';
import type { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet, type HttpResult } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const DEFAULT_NS = 'default';
const TEAM = 'team-a';
const PREFIX = '/router';
const SECRET = 'a-shared-secret-of-at-least-32-bytes-0123456789';

let stack: Stack;
let plane: ControlPlane;
let agents: AgentSandboxes;
let envoy: RunningEnvoy;
let theirs: TheirRouter;
/** Extra service + Envoy pairs on the same control plane, each with its own authorization mode. */
const extra: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  stack = await startStack({
    kinds: ['agent-sandbox'],
    namespaces: [DEFAULT_NS, TEAM],
    agentSandboxes: [
      { namespace: DEFAULT_NS, name: 'web' },
      { namespace: TEAM, name: 'web' },
      { namespace: TEAM, name: 'api' },
    ],
    serviceArgs: ['--agent-sandbox-namespaces', `${DEFAULT_NS},${TEAM}`, '--agent-sandbox-path-prefix', PREFIX],
  });
  ({ plane, envoy } = stack);
  agents = stack.agent as AgentSandboxes;
  theirs = await startTheirRouter([`--path-routing-prefix=${PREFIX}`, '--upstream-max-retries=0']);
  await waitForRoute(stack.service.app.registry, `${TEAM}/api`, (r) => r?.state === 'running');
});

afterAll(async () => {
  for (const part of extra.reverse()) await part.stop();
  await theirs?.stop();
  await stack?.stop();
});

const port = () => String(stack.pool.port);
const agentHeaders = (name: string, namespace = TEAM, extraHeaders: Record<string, string> = {}) => ({
  'x-sandbox-id': name,
  'x-sandbox-namespace': namespace,
  'x-sandbox-port': port(),
  ...extraHeaders,
});
/** What the upstream (the sandbox) received: it echoes its path and headers. */
const echoed = (result: HttpResult) => result.json<{ upstream: string; path: string; headers: IncomingHttpHeaders }>();

describe("errors in agent-sandbox's router shape", () => {
  // The rows of its README's "Error responses" table, and its path form's: asked of both routers.
  const cases: [string, string, Record<string, string>, number, string][] = [
    ['missing X-Sandbox-ID', '/', { 'x-sandbox-namespace': TEAM }, 400, 'missing_sandbox'],
    ['empty X-Sandbox-ID', '/', { 'x-sandbox-id': '' }, 400, 'missing_sandbox'],
    ['invalid X-Sandbox-ID', '/', { 'x-sandbox-id': 'web.evil.com' }, 400, 'invalid_sandbox_id'],
    ['invalid X-Sandbox-Namespace', '/', { 'x-sandbox-id': 'web', 'x-sandbox-namespace': 'Team_A' }, 400, 'invalid_sandbox_namespace'],
    ['non-numeric X-Sandbox-Port', '/', { 'x-sandbox-id': 'web', 'x-sandbox-port': 'http' }, 400, 'invalid_sandbox_port'],
    ['X-Sandbox-Port out of range', '/', { 'x-sandbox-id': 'web', 'x-sandbox-port': '70000' }, 400, 'invalid_sandbox_port'],
    ['X-Sandbox-Pod-IP link-local', '/', { 'x-sandbox-id': 'web', 'x-sandbox-pod-ip': '169.254.169.254' }, 400, 'invalid_pod_ip'],
    // (Loopback too, where --upstream-cidrs does not opt it in; here it does, as pods live on 127.1.0.0/24.)
    ['X-Sandbox-Pod-IP multicast', '/', { 'x-sandbox-id': 'web', 'x-sandbox-pod-ip': '224.0.0.1' }, 400, 'invalid_pod_ip'],
    ['X-Sandbox-Pod-IP unspecified', '/', { 'x-sandbox-id': 'web', 'x-sandbox-pod-ip': '0.0.0.0' }, 400, 'invalid_pod_ip'],
    ['X-Sandbox-Pod-IP not an address', '/', { 'x-sandbox-id': 'web', 'x-sandbox-pod-ip': 'metadata' }, 400, 'invalid_pod_ip'],
    ['path form without a port', `${PREFIX}/${TEAM}/web`, {}, 400, 'invalid_path'],
    ['path form, bad namespace', `${PREFIX}/Team/web/8080/`, {}, 400, 'invalid_sandbox_namespace'],
    ['path form, bad name', `${PREFIX}/${TEAM}/Web/8080/`, {}, 400, 'invalid_sandbox_id'],
    ['path form, bad port', `${PREFIX}/${TEAM}/web/0/`, {}, 400, 'invalid_sandbox_port'],
    ['path form wins over headers', `${PREFIX}/${TEAM}/web`, { 'x-sandbox-id': 'web' }, 400, 'invalid_path'],
  ];

  it.each(cases)('%s: its status and detail, our code beside it', async (_what, path, headers, status, code) => {
    const [ours, reference] = await Promise.all([httpGet(`${envoy.url}${path}`, headers), httpGet(`${theirs.url}${path}`, headers)]);
    expect(reference.status).toBe(status);
    expect(ours.status).toBe(status);
    expect(ours.headers['content-type']).toBe('application/json');
    const body = ours.json<{ detail: string; error: string; message: string }>();
    expect(body.detail).toBe(reference.json<{ detail: string }>().detail);
    expect(body.error).toBe(code);
    expect(body.message).toEqual(expect.any(String));
  });

  it("refuses what Go's HTTP server answers before their router sees it (an empty segment, a bad escape): 400 in its shape", async () => {
    // Theirs: ServeMux redirects a path with // to its cleaned form (307), and net/http refuses a bad
    // escape with a plain-text 400; here both are the path form's 400 with its detail.
    const emptySegment = await httpGet(`${envoy.url}${PREFIX}//web/8080/`);
    expect((await httpGet(`${theirs.url}${PREFIX}//web/8080/`)).status).toBe(307);
    expect(emptySegment.status).toBe(400);
    expect(emptySegment.json()).toMatchObject({
      error: 'invalid_path',
      detail: expect.stringContaining('Path-routed request must have the form'),
    });
    const badEscape = await httpGet(`${envoy.url}${PREFIX}/${TEAM}/we%zz/8080/`);
    expect((await httpGet(`${theirs.url}${PREFIX}/${TEAM}/we%zz/8080/`)).status).toBe(400);
    expect(badEscape.status).toBe(400);
    expect(badEscape.json()).toMatchObject({ error: 'invalid_path', detail: 'Invalid percent-encoding in path.' });
  });

  it('a sandbox it cannot reach: 502 Could not connect to the backend sandbox: <name>, as theirs', async () => {
    const headers = { 'x-sandbox-id': 'ghost', 'x-sandbox-namespace': TEAM };
    const [ours, reference] = await Promise.all([httpGet(`${envoy.url}/`, headers), httpGet(`${theirs.url}/`, headers)]);
    expect([ours.status, reference.status]).toEqual([502, 502]);
    expect(ours.json()).toMatchObject({ detail: reference.json<{ detail: string }>().detail, error: 'sandbox_not_found' });
    expect(reference.json()).toEqual({ detail: 'Could not connect to the backend sandbox: ghost' });
  });

  it('a sandbox that does not accept the connection (after the dial retries): the same 502, from Envoy', async () => {
    const closed = await unusedPort(await ipOf('web'));
    const result = await httpGet(`${envoy.url}/`, agentHeaders('web', TEAM, { 'x-sandbox-port': String(closed) }));
    expect(result.status).toBe(502);
    expect(result.json()).toMatchObject({ detail: 'Could not connect to the backend sandbox: web', error: 'upstream_unreachable' });
    // Three retries were made before giving up.
    expect(await envoy.stat('cluster.sandboxes.upstream_rq_retry')).toBeGreaterThanOrEqual(3);
  });

  it('our own refusals carry a detail too (a namespace requests may not name)', async () => {
    const namespaceRefused = await httpGet(`${envoy.url}/`, { 'x-sandbox-id': 'web', 'x-sandbox-namespace': 'kube-system' });
    expect(namespaceRefused.status).toBe(403);
    expect(namespaceRefused.json()).toMatchObject({ error: 'namespace_not_allowed', detail: expect.stringContaining('namespace') });
  });
});

describe('path routing for browsers (<prefix>/<namespace>/<name>/<port>/<rest>)', () => {
  it('routes by the path and hands the sandbox the rest byte for byte, %2F and query included', async () => {
    const result = await httpGet(`${envoy.url}${PREFIX}/${TEAM}/web/${port()}/files/a%2Fb/c%20d?x=%2F&y`);
    expect(result.status).toBe(200);
    expect(echoed(result)).toMatchObject({ upstream: await ipOf('web'), path: '/files/a%2Fb/c%20d?x=%2F&y' });
    const root = await httpGet(`${envoy.url}${PREFIX}/${TEAM}/web/${port()}`);
    expect(echoed(root).path).toBe('/');
  });

  it('routes a WebSocket handshake by the path (a browser cannot set headers on one)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${envoy.port}${PREFIX}/${TEAM}/api/${port()}/term`);
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('hello'));
      ws.once('message', (data) => resolve(data.toString()));
      ws.once('error', reject);
    });
    ws.close();
    expect(reply).toBe(`${await ipOf('api')}:hello`);
  });

  it('leaves paths outside the prefix to the headers (/routerish is not /router)', async () => {
    const result = await httpGet(`${envoy.url}/routerish/${TEAM}/web/1/`, agentHeaders('api'));
    expect(echoed(result)).toMatchObject({ upstream: await ipOf('api'), path: `/routerish/${TEAM}/web/1/` });
  });
});

describe('forwarding', () => {
  it('sets X-Forwarded-Host/Proto/For, consumes Authorization, drops the pod-choosing headers, keeps Origin on plain requests', async () => {
    const result = await httpGet(
      `${envoy.url}/x`,
      agentHeaders('web', TEAM, {
        host: 'sandboxes.example.com:8080',
        authorization: 'Bearer caller-credential',
        'x-sandbox-pod-ip': '10.9.9.9',
        'x-sandbox-uid': 'someone-elses-uid',
        'x-forwarded-host': 'forged.example.com',
        'x-forwarded-for': '203.0.113.9',
        origin: 'https://ide.example.com',
      }),
    );
    expect(result.status).toBe(200);
    const { headers, upstream } = echoed(result);
    expect(upstream).toBe(await ipOf('web'));
    expect(headers['x-forwarded-host']).toBe('sandboxes.example.com:8080');
    expect(headers['x-forwarded-proto']).toBe('http');
    // Envoy appends the peer it saw (for a loopback peer, as here, its own address) to what came: the
    // last entry is never the client's claim.
    const forwardedFor = String(headers['x-forwarded-for'])
      .split(',')
      .map((a) => a.trim());
    expect(forwardedFor[0]).toBe('203.0.113.9');
    expect(isIP(forwardedFor.at(-1) as string)).not.toBe(0);
    expect(forwardedFor.at(-1)).not.toBe('203.0.113.9');
    expect(headers.authorization).toBeUndefined();
    expect(headers['x-sandbox-pod-ip']).toBeUndefined();
    expect(headers['x-sandbox-uid']).toBeUndefined();
    expect(headers.origin).toBe('https://ide.example.com');
  });

  it('strips Origin from an upgrade (vscode-server and Jupyter refuse a mismatched one), and Authorization too', async () => {
    const ip = await ipOf('api');
    const before = stack.pool.upstream(ip).received.length;
    const ws = new WebSocket(`ws://127.0.0.1:${envoy.port}/ws`, {
      headers: { ...agentHeaders('api'), origin: 'https://ide.example.com', authorization: 'Bearer caller-credential' },
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.close();
    const handshake = stack.pool
      .upstream(ip)
      .received.slice(before)
      .find((r) => r.path === '/ws');
    expect(handshake?.headers.upgrade).toBe('websocket');
    expect(handshake?.headers.origin).toBeUndefined();
    expect(handshake?.headers.authorization).toBeUndefined();
  });

  it('never cuts an upgrade by a request timeout: a silent websocket outlives the stream idle timeout a plain request meets', async () => {
    // A second Envoy whose plain streams time out after 1 s of silence; websockets keep their own (1 h).
    const short = await startEnvoy({
      extprocPort: stack.service.listening.grpcPort as number,
      transform: (yaml) => yaml.replace(/stream_idle_timeout: \S+/, 'stream_idle_timeout: 1s'),
    });
    const silent = await silentServer(await ipOf('web'));
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${short.port}/quiet`, { headers: agentHeaders('web') });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      let closed = false;
      ws.once('close', () => (closed = true));
      // The control: a plain request to a sandbox port that never answers is cut at 1 s of silence.
      const control = await httpGet(`${short.url}/`, agentHeaders('web', TEAM, { 'x-sandbox-port': String(silent.port) }));
      expect(control.status).toBe(504);
      // The websocket, silent all that time, is still open and still works.
      expect(closed).toBe(false);
      const reply = new Promise<string>((resolve) => ws.once('message', (data) => resolve(data.toString())));
      ws.send('still-there');
      expect(await reply).toBe(`${await ipOf('web')}:still-there`);
      ws.close();
    } finally {
      await new Promise<void>((resolve) => silent.server.close(() => resolve()));
      silent.server.closeAllConnections();
      await short.stop();
    }
  });

  it('retries a refused dial with backoff: a sandbox whose server starts listening a moment late is still reached', async () => {
    const logged = await startEnvoy({ extprocPort: stack.service.listening.grpcPort as number, componentLogLevels: 'router:debug' });
    const ip = await ipOf('api');
    const late = await unusedPort(ip);
    let server: Server | undefined;
    try {
      const answer = httpGet(`${logged.url}/late`, agentHeaders('api', TEAM, { 'x-sandbox-port': String(late) }));
      // Envoy's first dial was refused (its own log line): only now does the sandbox's server listen.
      await logged.process.waitForLine(/upstream reset: reset reason: (remote )?connection failure/, 10_000);
      server = createServer((_req, res) => res.end('late but there')).listen(late, ip);
      const result = await answer;
      expect(result.status).toBe(200);
      expect(result.body).toBe('late but there');
      expect(await logged.stat('cluster.sandboxes.upstream_rq_retry')).toBeGreaterThanOrEqual(1);
    } finally {
      server?.close();
      await logged.stop();
    }
  });

  it('carries a large upload to a sandbox whole, retry policy or not (no 413)', async () => {
    const body = Buffer.alloc(1 << 20, 0x61);
    const result = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        `${envoy.url}/upload`,
        { method: 'POST', headers: { ...agentHeaders('web'), 'content-length': body.length } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(result.status).toBe(200);
  });
});

describe('health, as its Gateway health checks expect it', () => {
  it('answers GET /healthz naming no sandbox with 200 {"status":"ok"} on the proxy port, query or not', async () => {
    for (const path of ['/healthz', '/healthz?probe=1']) {
      const [ours, reference] = await Promise.all([httpGet(`${envoy.url}${path}`), httpGet(`${theirs.url}${path}`)]);
      expect([ours.status, reference.status]).toEqual([200, 200]);
      expect(ours.headers['content-type']).toBe('application/json');
      expect(ours.json()).toEqual(reference.json());
      expect(ours.json()).toEqual({ status: 'ok' });
    }
  });

  it('forwards /healthz of a request that names a sandbox to it (theirs never does: a documented difference)', async () => {
    const result = await httpGet(`${envoy.url}/healthz`, agentHeaders('web'));
    expect(echoed(result)).toMatchObject({ upstream: await ipOf('web'), path: '/healthz' });
  });
});

describe("its router smoke test's scenarios", () => {
  it('DNS-form routing: X-Sandbox-ID alone (the default namespace) reaches the sandbox', async () => {
    const result = await httpGet(`${envoy.url}/`, { 'x-sandbox-id': 'web', 'x-sandbox-port': port() });
    expect(echoed(result).upstream).toBe(await ipOf('web', DEFAULT_NS));
  });

  it('UID routing: X-Sandbox-UID is never a way to another sandbox (routing stays by name)', async () => {
    const other = await agents.get(TEAM, 'api');
    const result = await httpGet(`${envoy.url}/`, agentHeaders('web', TEAM, { 'x-sandbox-uid': other.metadata.uid as string }));
    expect(echoed(result).upstream).toBe(await ipOf('web'));
  });

  it('an upstream that goes away: once its Sandbox is deleted, requests get the router 502 at once', async () => {
    await agents.create({ namespace: TEAM, name: 'brief' });
    await waitForRoute(stack.service.app.registry, `${TEAM}/brief`, (r) => r?.state === 'running');
    expect((await httpGet(`${envoy.url}/`, agentHeaders('brief'))).status).toBe(200);
    await agents.delete(TEAM, 'brief');
    await waitForRoute(stack.service.app.registry, `${TEAM}/brief`, (r) => r === undefined || r.state === 'dead');
    const gone = await httpGet(`${envoy.url}/`, agentHeaders('brief'));
    expect(gone.status).toBe(502);
    expect(gone.json<{ detail: string }>().detail).toBe('Could not connect to the backend sandbox: brief');
  });
});

describe('authorization (--agent-sandbox-authz-mode)', () => {
  /** A service + Envoy pair on the stack's control plane, with its own identity and flags. */
  async function pair(
    name: string,
    args: readonly string[],
    tokenReview: boolean,
  ): Promise<{ service: RunningService; envoy: RunningEnvoy }> {
    const kubeconfig = await plane.serviceIdentity(name, [DEFAULT_NS, TEAM], ['agent-sandbox'], { tokenReview });
    const service = await startService([
      '--kubeconfig',
      kubeconfig,
      '--namespaces',
      `${DEFAULT_NS},${TEAM}`,
      '--sandbox-kind',
      'agent-sandbox',
      '--agent-sandbox-namespaces',
      `${DEFAULT_NS},${TEAM}`,
      ...args,
    ]);
    const pairEnvoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
    extra.push(pairEnvoy, service);
    await waitForRoute(service.app.registry, `${TEAM}/api`, (r) => r?.state === 'running');
    return { service, envoy: pairEnvoy };
  }

  /** A real ServiceAccount token the API server authenticates (kubectl create token). */
  async function accountToken(name: string): Promise<string> {
    const core = plane.admin.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace: TEAM, body: { metadata: { name } } });
    const request = await core.createNamespacedServiceAccountToken({
      name,
      namespace: TEAM,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600, audiences: [] } },
    });
    return request.status?.token as string;
  }

  const reviews = () => plane.auditEvents((e) => (e.requestURI ?? '').includes('/tokenreviews')).length;

  it('tokenreview: a token the API server authenticates is let in, on every request; none or a bad one gets 401 as theirs', async () => {
    const { envoy: edge, service } = await pair('extproc-tokenreview', ['--agent-sandbox-authz-mode', 'tokenreview'], true);
    const token = await accountToken('caller');
    const reference = await startTheirRouter([
      '--authz-mode=tokenreview',
      '--authz-tokenreview-require-token=true',
      `--kubeconfig=${plane.adminKubeconfig}`,
      '--upstream-max-retries=0',
    ]);
    extra.push(reference);
    for (const authorization of [undefined, 'Bearer not-a-token', `Basic ${token}`]) {
      const headers = agentHeaders('web', TEAM, authorization === undefined ? {} : { authorization });
      const [ours, theirsResult] = await Promise.all([httpGet(`${edge.url}/`, headers), httpGet(`${reference.url}/`, headers)]);
      expect([ours.status, theirsResult.status]).toEqual([401, 401]);
      expect(ours.json()).toMatchObject({ detail: theirsResult.json<{ detail: string }>().detail, error: 'unauthenticated' });
    }
    // A valid token passes: the sandbox answers, and never sees the credential.
    const allowed = await httpGet(`${edge.url}/`, agentHeaders('web', TEAM, { authorization: `Bearer ${token}` }));
    expect(allowed.status).toBe(200);
    expect(echoed(allowed).headers.authorization).toBeUndefined();
    // Theirs lets it through to its dial (which fails here: 502), not 401.
    expect((await httpGet(`${reference.url}/`, agentHeaders('web', TEAM, { authorization: `Bearer ${token}` }))).status).toBe(502);
    // Every request is checked: the next one without the token is refused again.
    expect((await httpGet(`${edge.url}/`, agentHeaders('web'))).status).toBe(401);
    expect(await metric(service, 'sandbox_extproc_authz_decisions_total{decision="allow"}')).toBeGreaterThanOrEqual(1);
  });

  it('tokenreview: a verdict is remembered, not asked per request; a burst with one new token makes one review', async () => {
    const { envoy: edge } = await pair('extproc-tokenreview-cache', ['--agent-sandbox-authz-mode', 'tokenreview'], true);
    const token = await accountToken('burst');
    const before = reviews();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => httpGet(`${edge.url}/`, agentHeaders('api', TEAM, { authorization: `Bearer ${token}` }))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    for (let i = 0; i < 10; i += 1) {
      expect((await httpGet(`${edge.url}/`, agentHeaders('web', TEAM, { authorization: `Bearer ${token}` }))).status).toBe(200);
    }
    // The audit log is written before the API server answers (blocking mode): every review is in it.
    expect(reviews() - before).toBe(1);
  });

  it('tokenreview: unauthorized traffic never wakes a sandbox', async () => {
    const { envoy: edge, service } = await pair('extproc-tokenreview-wake', ['--agent-sandbox-authz-mode', 'tokenreview'], true);
    await agents.create({ namespace: TEAM, name: 'sleeper', wake: true, suspended: true });
    await waitForRoute(service.app.registry, `${TEAM}/sleeper`, (r) => r?.state === 'paused');
    // The service's own patches (its ServiceAccount), not the controller's status writes.
    const patchesOf = () =>
      plane.auditEvents(
        (e) =>
          e.verb === 'patch' &&
          e.user.username === 'system:serviceaccount:sandbox-extproc-system:extproc-tokenreview-wake' &&
          e.objectRef?.name === 'sleeper',
      ).length;
    const before = patchesOf();
    for (const authorization of [undefined, 'Bearer forged']) {
      const result = await httpGet(`${edge.url}/`, agentHeaders('sleeper', TEAM, authorization === undefined ? {} : { authorization }));
      expect(result.status).toBe(401);
    }
    // A barrier: a request with a valid token wakes it; the refused ones before it patched nothing.
    const token = await accountToken('waker');
    const woken = await httpGet(`${edge.url}/`, agentHeaders('sleeper', TEAM, { authorization: `Bearer ${token}` }));
    expect(woken.status).toBe(200);
    expect(patchesOf() - before).toBe(1);
  });

  it('tokenreview without the RBAC to create TokenReviews: 503 authz_unavailable, never let through', async () => {
    const { envoy: edge } = await pair('extproc-no-review-rights', ['--agent-sandbox-authz-mode', 'tokenreview'], false);
    const token = await accountToken('unreviewed');
    const result = await httpGet(`${edge.url}/`, agentHeaders('web', TEAM, { authorization: `Bearer ${token}` }));
    expect(result.status).toBe(503);
    expect(result.json()).toMatchObject({ error: 'authz_unavailable' });
    expect(result.headers['retry-after']).toBe('1');
  });

  it('scoped-token: a token opens the sandbox it names and no other, as theirs verifies it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbx-scoped-'));
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, `${SECRET}\n`);
    const { envoy: edge } = await pair(
      'extproc-scoped',
      ['--agent-sandbox-authz-mode', 'scoped-token', '--agent-sandbox-authz-scoped-token-secret-file', secretFile],
      false,
    );
    const reference = await startTheirRouter([
      '--authz-mode=scoped-token',
      `--authz-scoped-token-secret-file=${secretFile}`,
      '--upstream-max-retries=0',
    ]);
    extra.push(reference);
    const secret = Buffer.from(SECRET);
    const forWeb = mintScopedToken(secret, TEAM, 'web', 600);
    const expired = mintScopedToken(secret, TEAM, 'web', 1, Date.now() - 10_000);
    const forged = mintScopedToken(Buffer.from('another-secret-of-at-least-32-bytes-xxxxxxxx'), TEAM, 'web', 600);
    const ask = (name: string, token: string | undefined) => {
      const headers = agentHeaders(name, TEAM, token === undefined ? {} : { authorization: `Bearer ${token}` });
      return Promise.all([httpGet(`${edge.url}/`, headers), httpGet(`${reference.url}/`, headers)]);
    };
    // Their router accepts our token for its sandbox (and then fails its DNS dial here: 502); ours forwards.
    const [ours, theirsAllowed] = await ask('web', forWeb);
    expect(ours.status).toBe(200);
    expect(echoed(ours).upstream).toBe(await ipOf('web'));
    expect(theirsAllowed.status).toBe(502);
    for (const [name, token, status, code] of [
      ['api', forWeb, 403, 'token_scope_mismatch'],
      ['web', expired, 401, 'unauthenticated'],
      ['web', forged, 401, 'unauthenticated'],
      ['web', undefined, 401, 'unauthenticated'],
    ] as const) {
      const [refused, reference401] = await ask(name, token);
      expect([refused.status, reference401.status]).toEqual([status, status]);
      expect(refused.json()).toMatchObject({ error: code, detail: reference401.json<{ detail: string }>().detail });
    }
  });
});

async function ipOf(name: string, namespace = TEAM): Promise<string> {
  return podIPOf(await agents.get(namespace, name));
}

async function metric(service: RunningService, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${service.listening.httpPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** A port on `ip` where nothing listens (bound, then released). */
async function unusedPort(ip: string): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, ip, resolve));
  const { port: free } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return free;
}

/** A sandbox port that accepts requests and never answers them. */
async function silentServer(ip: string): Promise<{ server: Server; port: number }> {
  const server = createServer(() => undefined);
  await new Promise<void>((resolve) => server.listen(0, ip, resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
