// The edge listener's limits (envoy/envoy.yaml, set from the chart's envoy.* values), on the README's
// sidecar install with tight values: slow request headers, silent streams, silent websockets, too
// many connections, and a client claiming another address in X-Forwarded-For.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { applyInstall, renderInstall, startChartPod } from '../../support/chart-install.ts';
import { ContainerSandboxes } from '../../support/container-sandboxes.ts';
import { ControlPlane } from '../../support/controlplane.ts';
import { createNetwork, docker, runLabels, type DockerNetwork } from '../../support/docker.ts';
import { httpGet } from '../../support/http.ts';
import type { Pod } from '../../support/pod.ts';
import { helmInstallCommands } from '../../support/readme.ts';

const skip = inject('containerSkip');

const LIMITS = {
  'envoy.requestHeadersTimeout': '1s',
  'envoy.maxMessageTimeout': '2s',
  'config.wakeTimeout': '1s',
  'envoy.streamIdleTimeout': '3s',
  'envoy.websocketIdleTimeout': '8s',
  'envoy.maxConnections': '6',
  replicaCount: '1',
};

describe.skipIf(skip !== '')('the edge listener', () => {
  const labels = runLabels(inject('runId'));
  let network: DockerNetwork;
  let plane: ControlPlane;
  let sandboxes: ContainerSandboxes;
  let pod: Pod;

  beforeAll(async () => {
    network = await createNetwork(`${labels['sandbox-extproc.test-run']}-edge`, labels);
    plane = await ControlPlane.start({ bindAddress: network.gateway });
    const command = helmInstallCommands().find((c) => !c.includes('mode=standalone')) as string[];
    const install = renderInstall(
      command,
      inject('registry'),
      Object.entries(LIMITS).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
    );
    await applyInstall(plane, install);
    sandboxes = new ContainerSandboxes(plane, network, labels);
    // The chart's pod starts while the sandbox comes up: the service follows it on its watch.
    [pod] = await Promise.all([
      startChartPod(plane, install, { name: `${labels['sandbox-extproc.test-run']}-limits`, network, labels }),
      (async () => {
        await sandboxes.start();
        await sandboxes.create({ namespace: 'team-a', name: 'alpha' });
      })(),
    ]);
  });

  afterAll(async () => {
    await sandboxes?.stop();
    await pod?.remove();
    await plane?.stop();
    if (network) await docker(['network', 'rm', network.name]).catch(() => undefined);
  });

  const stat = async (name: string) => Number(/: (\d+)/.exec(await pod.localGet(9901, `/stats?filter=^${name}$`))?.[1] ?? -1);

  /** A raw connection to the edge; `closed` resolves with everything the edge sent before closing. */
  function open(): { socket: Socket; connected: Promise<void>; closed: Promise<string>; received: (pattern: RegExp) => Promise<string> } {
    const socket = connect(8080, pod.ip);
    let data = '';
    const watchers = new Set<() => void>();
    socket.on('data', (d: Buffer) => {
      data += d.toString('latin1');
      for (const w of watchers) w();
    });
    const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(data)));
    socket.on('error', () => undefined);
    return {
      socket,
      connected: new Promise((resolve) => socket.once('connect', () => resolve())),
      closed,
      received: (pattern) =>
        new Promise((resolve, reject) => {
          const check = () => {
            if (pattern.test(data)) {
              watchers.delete(check);
              resolve(data);
            }
          };
          watchers.add(check);
          void closed.then(() => (pattern.test(data) ? resolve(data) : reject(new Error(`closed before ${pattern}: ${data}`))));
          check();
        }),
    };
  }

  const request = (id: string, path = '/', extra = '') => `GET ${path} HTTP/1.1\r\nhost: edge\r\ne2b-sandbox-id: ${id}\r\n${extra}\r\n`;

  it('answers 408 and closes a connection whose request headers do not arrive in time', async () => {
    const slow = open();
    await slow.connected;
    slow.socket.write('GET / HTTP/1.1\r\nhost: edge\r\n');
    expect(await slow.closed).toMatch(/^HTTP\/1\.1 408 /);
    expect(await stat('http.edge.downstream_rq_header_timeout')).toBe(1);
  });

  it('resets a stream silent both ways past streamIdleTimeout, but lets a websocket sit silent until its own timeout', async () => {
    // The request went upstream and nothing came back for 3 s: Envoy gives up on it (504, counted as an
    // idle timeout), long before the sandbox's 6 s answer.
    const res = await httpGet(`http://${pod.ip}:8080/slow?ms=6000`, { 'e2b-sandbox-id': 'team-a--alpha' }, 20_000);
    expect(res.status).toBe(504);
    expect(res.body).toContain('stream timeout');
    expect(await stat('http.edge.downstream_rq_idle_timeout')).toBe(1);
    const ws = open();
    ws.socket.write(
      request(
        'team-a--alpha',
        '/ws',
        'connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n',
      ),
    );
    await ws.received(/^HTTP\/1\.1 101 /);
    // Silent for longer than streamIdleTimeout (3 s): still open, and it still echoes.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    ws.socket.write('still here');
    await ws.received(/still here/);
    // Silent past websocketIdleTimeout (8 s): Envoy closes it.
    const silentFrom = Date.now();
    await ws.closed;
    expect(Date.now() - silentFrom).toBeGreaterThan(6000);
    expect(await stat('http.edge.downstream_rq_idle_timeout')).toBe(2);
  });

  it('closes connections past maxConnections at once, and serves again when some close', async () => {
    const held = Array.from({ length: 6 }, () => open());
    for (const c of held) {
      c.socket.write(request('team-a--alpha'));
      await c.received(/^HTTP\/1\.1 200 /);
    }
    const extra = open();
    expect(await extra.closed).toBe('');
    for (const c of held) c.socket.destroy();
    await Promise.all(held.map((c) => c.closed));
    expect(await stat('listener.0.0.0.0_8080.downstream_global_cx_overflow')).toBeGreaterThanOrEqual(1);
    expect((await httpGet(`http://${pod.ip}:8080/`, { 'e2b-sandbox-id': 'team-a--alpha' })).status).toBe(200);
  });

  it('takes the client address from the connection, not from a client-sent X-Forwarded-For', async () => {
    const res = await httpGet(`http://${pod.ip}:8080/whoami`, { 'e2b-sandbox-id': 'team-a--alpha', 'x-forwarded-for': '203.0.113.7' });
    const seen = res.json<{ headers: Record<string, string> }>().headers;
    // Envoy appends the real peer; the sandbox (and anything trusting the last hop) sees who connected.
    expect(seen['x-forwarded-for']).toBe(`203.0.113.7,${network.gateway}`);
    const line = await pod.waitForLog('envoy', /"path":"\/whoami"/, 20_000);
    expect(JSON.parse(line)['client']).toBe(network.gateway);
  });
});
