// Requests through the real Envoy to the service with file routes: routing by header and host, error
// answers, spoofed routing headers, websockets, and failing closed when the service is gone.
import { mkdtempSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let dir: string;
let routesFile: string;
let upstreamA: Upstream;
let upstreamB: Upstream;
let service: RunningService;
let envoy: RunningEnvoy;

function writeRoutes(routes: object[]): void {
  // Written beside the target and renamed over it, as editors and ConfigMap updates do.
  const next = join(dir, 'routes.next.yaml');
  writeFileSync(next, JSON.stringify({ routes }));
  renameSync(next, routesFile);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-file-'));
  routesFile = join(dir, 'routes.yaml');
  // Two sandboxes on the same port, told apart only by their (loopback) pod IPs.
  upstreamA = await startUpstream('sandbox-a', '127.0.0.2');
  upstreamB = await startUpstream('sandbox-b', '127.0.0.3', upstreamA.port);
  writeRoutes([
    { id: 'sbx-a', podIP: '127.0.0.2' },
    { id: 'sbx-b', podIP: '127.0.0.3' },
    { id: 'sbx-paused', podIP: '', state: 'paused' },
    { id: 'sbx-creating', state: 'creating' },
  ]);
  service = await startService(['--route-source', 'file', '--routes-file', routesFile, '--domains', 'sandbox.test']);
  envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
});

afterAll(async () => {
  await envoy?.stop();
  await service?.stop();
  await upstreamA?.close();
  await upstreamB?.close();
});

const byHeader = (id: string, port: number, extra: Record<string, string> = {}) => ({
  'e2b-sandbox-id': id,
  'e2b-sandbox-port': String(port),
  ...extra,
});

describe('routing through Envoy', () => {
  it('routes by the e2b-sandbox-id and e2b-sandbox-port headers', async () => {
    const res = await httpGet(`${envoy.url}/hello`, byHeader('sbx-a', upstreamA.port));
    expect(res.status).toBe(200);
    expect(res.json()['upstream']).toBe('sandbox-a');
    const res2 = await httpGet(`${envoy.url}/hello`, byHeader('sbx-b', upstreamA.port));
    expect(res2.json()['upstream']).toBe('sandbox-b');
  });

  it('routes by the <port>-<id>.<domain> host', async () => {
    const res = await httpGet(`${envoy.url}/by-host`, { host: `${upstreamB.port}-sbx-b.sandbox.test` });
    expect(res.status).toBe(200);
    expect(res.json()['upstream']).toBe('sandbox-b');
    expect(res.json()['path']).toBe('/by-host');
  });

  it('answers an unknown sandbox with 502 and the JSON error body', async () => {
    const res = await httpGet(`${envoy.url}/`, byHeader('nobody-here', upstreamA.port));
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.json()).toEqual({ error: 'sandbox_not_found', message: 'sandbox not found: nobody-here', sandboxId: 'nobody-here' });
    const entry = await envoy.waitForAccessLog((e) => e['sandbox_id'] === 'nobody-here');
    expect(entry['details']).toBe('sandbox_extproc_sandbox_not_found');
    expect(entry['status']).toBe(502);
  });

  it('answers a malformed sandbox ID with 400 and the reason', async () => {
    const res = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'bad/../id' });
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe('invalid_sandbox_id');
    expect(String(res.json()['message'])).toContain('bad/../id');
  });

  it('answers a malformed port with 400', async () => {
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-a', 70000));
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe('invalid_sandbox_port');
  });

  it('answers a paused sandbox that may not wake with 502 sandbox_not_running', async () => {
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-paused', upstreamA.port));
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_running');
  });

  it('answers a sandbox still being created with 503 and Retry-After', async () => {
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-creating', upstreamA.port));
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json()['error']).toBe('sandbox_not_ready');
  });

  it('rejects a request that names no sandbox with 400', async () => {
    const res = await httpGet(`${envoy.url}/`, { host: 'example.org' });
    expect(res.status).toBe(400);
    expect(res.json()['error']).toBe('missing_sandbox');
  });

  it('adds no wake header to a request that did not wake anything', async () => {
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-a', upstreamA.port));
    expect(res.headers['x-sandbox-wake-ms']).toBeUndefined();
  });
});

describe('spoofed routing headers', () => {
  it('a client-sent x-envoy-original-dst-host cannot redirect a request, and never reaches the sandbox', async () => {
    const before = upstreamB.received.length;
    const res = await httpGet(
      `${envoy.url}/spoof`,
      byHeader('sbx-a', upstreamA.port, { 'x-envoy-original-dst-host': `127.0.0.3:${upstreamB.port}` }),
    );
    expect(res.json()['upstream']).toBe('sandbox-a');
    expect((res.json()['headers'] as Record<string, string>)['x-envoy-original-dst-host']).toBeUndefined();
    expect(upstreamB.received.length).toBe(before);
  });

  it('a spoofed header on a request naming no sandbox goes nowhere', async () => {
    const before = upstreamB.received.length;
    const res = await httpGet(`${envoy.url}/spoof`, { host: 'example.org', 'x-envoy-original-dst-host': `127.0.0.3:${upstreamB.port}` });
    expect(res.status).toBe(400);
    expect(upstreamB.received.length).toBe(before);
  });
});

describe('limits', () => {
  it("answers headers over Envoy's size limit with 431 before anything is routed", async () => {
    const before = upstreamA.received.length;
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-a', upstreamA.port, { 'x-padding': 'a'.repeat(70 * 1024) }));
    expect(res.status).toBe(431);
    expect(upstreamA.received.length).toBe(before);
  });

  it('answers an over-long sandbox ID with 400, quoting at most 64 characters of it', async () => {
    const res = await httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': 'x'.repeat(4000) });
    expect(res.status).toBe(400);
    expect(res.body.length).toBeLessThan(300);
  });
});

describe('websockets', () => {
  it('upgrades and carries messages both ways', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${envoy.port}/ws`, { headers: byHeader('sbx-b', upstreamB.port) });
    const reply = await new Promise<string>((resolve, reject) => {
      socket.once('open', () => socket.send('ping'));
      socket.once('message', (data) => resolve(data.toString()));
      socket.once('error', reject);
    });
    socket.close();
    expect(reply).toBe('sandbox-b:ping');
  });
});

describe('file route source', () => {
  it('serves a route added to the file without a restart', async () => {
    writeRoutes([
      { id: 'sbx-a', podIP: '127.0.0.2' },
      { id: 'sbx-b', podIP: '127.0.0.3' },
      { id: 'sbx-new', podIP: '127.0.0.3' },
    ]);
    await waitForRoute(service.app.registry, 'sbx-new', (r) => r?.state === 'running');
    const res = await httpGet(`${envoy.url}/`, byHeader('sbx-new', upstreamB.port));
    expect(res.json()['upstream']).toBe('sandbox-b');
  });

  it('keeps the routes in force when the file turns invalid', async () => {
    const next = join(dir, 'routes.next.yaml');
    writeFileSync(next, 'routes: [{ id: "bad/id" }]');
    renameSync(next, routesFile);
    // A valid write after the bad one proves the bad one was processed (reloads are serialised).
    writeRoutes([
      { id: 'sbx-a', podIP: '127.0.0.2' },
      { id: 'sbx-b', podIP: '127.0.0.3' },
      { id: 'sbx-marker', podIP: '127.0.0.3' },
    ]);
    await waitForRoute(service.app.registry, 'sbx-marker', (r) => r !== undefined);
    expect(service.app.registry.get('sbx-a')?.podIP).toBe('127.0.0.2');
  });
});

describe('failing closed', () => {
  it('answers 5xx itself and forwards nothing when the service is stopped', async () => {
    await service.stop();
    const beforeA = upstreamA.received.length;
    const res = await httpGet(
      `${envoy.url}/`,
      byHeader('sbx-a', upstreamA.port, { 'x-envoy-original-dst-host': `127.0.0.2:${upstreamA.port}` }),
    );
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(upstreamA.received.length).toBe(beforeA);
  });
});
