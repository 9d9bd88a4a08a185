// Start-up refuses a Kubernetes configuration that could never connect, naming the setting (issue 28):
// before, client-node's fallback to http://localhost:8080 made every list fail ("HTTP protocol is not
// allowed when skipTLSVerify is not set or false"), retried forever.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadKubeConfig } from '../../../src/config/kubeconfig.ts';

const empty = () => mkdtempSync(join(tmpdir(), 'sbx-kubeconfig-'));

function kubeconfig(server: string, extra = ''): string {
  const path = join(empty(), 'config');
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${server}"${extra} } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`,
  );
  return path;
}

describe('loadKubeConfig', () => {
  it('refuses when nothing is configured, naming --kubeconfig', () => {
    const home = empty();
    expect(() => loadKubeConfig('', { env: {}, home, serviceAccountToken: join(home, 'no-token') })).toThrow(
      'no Kubernetes configuration found: set --kubeconfig (SANDBOX_EXTPROC_KUBECONFIG) or $KUBECONFIG',
    );
  });

  it('refuses a plain-http server without insecure-skip-tls-verify, as the client would on every request', () => {
    expect(() => loadKubeConfig(kubeconfig('http://127.0.0.1:8080'), { env: {} })).toThrow(
      /cluster c is served over plain http \(http:\/\/127.0.0.1:8080\).*check --kubeconfig \(SANDBOX_EXTPROC_KUBECONFIG\)/,
    );
    expect(
      loadKubeConfig(kubeconfig('http://127.0.0.1:8080', ', insecure-skip-tls-verify: true'), { env: {} }).getCurrentCluster()?.server,
    ).toBe('http://127.0.0.1:8080');
  });

  it('refuses a file it cannot read, and a context with no cluster', () => {
    expect(() => loadKubeConfig('/nonexistent/kubeconfig', { env: {} })).toThrow(/cannot load .* from \/nonexistent\/kubeconfig/);
    const path = join(empty(), 'config');
    writeFileSync(path, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
    expect(() => loadKubeConfig(path, { env: {} })).toThrow('its current context names no cluster');
  });

  it('refuses an in-cluster token without the service address', () => {
    const home = empty();
    const token = join(home, 'token');
    writeFileSync(token, 't');
    expect(() => loadKubeConfig('', { env: {}, home, serviceAccountToken: token })).toThrow(/KUBERNETES_SERVICE_HOST/);
  });

  it('loads a working https configuration', () => {
    expect(loadKubeConfig(kubeconfig('https://127.0.0.1:6443'), { env: {} }).getCurrentCluster()?.server).toBe('https://127.0.0.1:6443');
  });
});
