// "500 internal_error: a bug; the service logs it and keeps running" (README), through the real Envoy.
// A bug is injected into the running service's own objects: its route table throws for one sandbox
// ID (a bug while deciding). The client gets the catalogue's 500 (never a forward, never a crash), the
// error is logged, and the next request is served as usual.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.ts';
import type { Route } from '../../src/routes/route.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { startService } from '../support/service.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

let app: App;
let envoy: RunningEnvoy;
let upstream: Upstream;
const lines: string[] = [];

beforeAll(async () => {
  upstream = await startUpstream('sandbox', '127.0.0.75');
  const dir = mkdtempSync(join(tmpdir(), 'sbx-bug-'));
  const routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 127.0.0.75 }, { id: buggy, podIP: 127.0.0.75 }]\n');
  const service = await startService(
    ['--route-source', 'file', '--routes-file', routes, '--log-level', 'info'],
    {},
    { logs: (l) => lines.push(l) },
  );
  app = service.app;
  envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
});

afterAll(async () => {
  await envoy?.stop();
  await app?.stop();
  await upstream?.close();
});

const get = (id: string) => httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(upstream.port) });

describe('a bug in the service', () => {
  it('while deciding: answers 500 internal_error, logs the error, and serves the next request', async () => {
    const registry = app.registry;
    const real = registry.get.bind(registry);
    registry.get = (id: string): Route | undefined => {
      if (id === 'buggy') throw new Error('injected bug in the route table');
      return real(id);
    };
    try {
      const res = await get('buggy');
      expect(res.status).toBe(500);
      expect(res.json()).toMatchObject({ error: 'internal_error' });
      const entry = await envoy.waitForAccessLog((e) => String(e['status']) === '500');
      expect(entry['details']).toBe('sandbox_extproc_internal_error');
      expect(lines.join('')).toContain('injected bug in the route table');
      const next = await get('sbx');
      expect(next.status).toBe(200);
      expect(next.json()['upstream']).toBe('sandbox');
    } finally {
      registry.get = real;
    }
  });
});
