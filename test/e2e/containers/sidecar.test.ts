// The README's sidecar install, run as a cluster would run it: its `helm install` rendered with the same
// flags, every object applied to a real kube-apiserver, the Deployment's two pods on the Docker engine
// (Envoy with the chart's own rendered envoy.yaml as a native sidecar, the service from the image built
// from the Dockerfile, authenticated as the chart's ServiceAccount), and sandboxes as real containers on
// the Docker network, paused and resumed by OpenKruise's own controller (a paused sandbox has no pod and
// no container; a wake brings a new pod and a new container). Requests go to the pods' Envoy.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { applyInstall, renderInstall, startChartPod, type ChartInstall } from '../../support/chart-install.ts';
import { ContainerSandboxes, SANDBOX_PORT, type ContainerSandbox } from '../../support/container-sandboxes.ts';
import { podIP } from '../../support/openkruise.ts';
import { ControlPlane } from '../../support/controlplane.ts';
import { createNetwork, docker, inspect, runLabels, type DockerNetwork } from '../../support/docker.ts';
import { EdgeLoad } from '../../support/edge-load.ts';
import { httpGet } from '../../support/http.ts';
import type { Pod } from '../../support/pod.ts';
import { helmInstallCommands } from '../../support/readme.ts';

const skip = inject('containerSkip');

describe.skipIf(skip !== '')('sidecar mode, installed as the README says', () => {
  const labels = runLabels(inject('runId'));
  let network: DockerNetwork;
  let plane: ControlPlane;
  let install: ChartInstall;
  let sandboxes: ContainerSandboxes;
  let beta: ContainerSandbox;
  const pods: Pod[] = [];
  let edge: string;

  beforeAll(async () => {
    network = await createNetwork(`${labels['sandbox-extproc.test-run']}-sidecar`, labels);
    plane = await ControlPlane.start({ bindAddress: network.gateway });
    const command = helmInstallCommands().find((c) => !c.includes('mode=standalone'));
    if (command === undefined) throw new Error('README: no sidecar-mode helm install command');
    install = renderInstall(command, inject('registry'));
    expect(install.deployment.spec?.template.spec?.containers[0]?.image).toBe(inject('image'));
    await applyInstall(plane, install);
    sandboxes = new ContainerSandboxes(plane, network, labels);
    // The chart's pods start while the sandboxes come up: the service follows them on its watch.
    const [started] = await Promise.all([
      Promise.all(
        Array.from({ length: install.deployment.spec?.replicas ?? 1 }, (_, i) =>
          startChartPod(plane, install, { name: `${labels['sandbox-extproc.test-run']}-edge-${i}`, network, labels }),
        ),
      ),
      (async () => {
        await sandboxes.start();
        [, beta] = await Promise.all([
          sandboxes.create({ namespace: 'team-a', name: 'alpha' }),
          sandboxes.create({ namespace: 'team-b', name: 'beta' }),
          sandboxes.create({ namespace: 'team-a', name: 'sleepy', paused: true, wake: { by: 'policy' } }),
          // Each of its pods takes 8 s to start: longer than a pod's drain (rollout test).
          sandboxes.create({ namespace: 'team-a', name: 'late', paused: true, wake: { by: 'policy' }, readyDelay: '8s' }),
        ]);
      })(),
    ]);
    pods.push(...started);
    edge = `http://${pods[0]?.ip}:8080`;
  });

  afterAll(async () => {
    await sandboxes?.stop();
    for (const pod of pods) await pod.remove();
    await plane?.stop();
    if (network) await docker(['network', 'rm', network.name]).catch(() => undefined);
  });

  const byId = (id: string, headers: Record<string, string> = {}, base = edge) =>
    httpGet(`${base}/`, { 'e2b-sandbox-id': id, ...headers }, 30_000);
  const count = async (sandbox: ContainerSandbox) =>
    (await httpGet(`http://${sandbox.ip}:${SANDBOX_PORT}/count`)).json<{ count: number }>().count;

  it('routes by header and by host to the right sandbox container, in both pods', async () => {
    for (const pod of pods) {
      const base = `http://${pod.ip}:8080`;
      expect((await byId('team-a--alpha', {}, base)).json()['sandbox']).toBe('alpha');
      expect((await byId('team-b--beta', {}, base)).json()['sandbox']).toBe('beta');
      const byHost = await httpGet(`${base}/`, { host: `${SANDBOX_PORT}-team-b--beta.sandbox.example.com` });
      expect(byHost.json()['sandbox']).toBe('beta');
    }
    // A host outside config.domains is refused, by the service's own answer.
    const outside = await httpGet(`${edge}/`, { host: `${SANDBOX_PORT}-team-b--beta.elsewhere.example.com` });
    expect(outside.status).toBe(400);
  });

  it('wakes a paused sandbox on a request and serves it: the controller makes a new pod, and the request reaches its container', async () => {
    const paused = await sandboxes.openkruise.get('team-a', 'sleepy');
    const before = paused.status?.podInfo?.podUID as string;
    // Paused: its pod is gone, and its container with it.
    expect(await sandboxes.podsWithContainers('team-a', 'sleepy')).toEqual([]);
    const res = await byId('team-a--sleepy');
    expect(res.status, res.body).toBe(200);
    expect(res.json()['sandbox']).toBe('sleepy');
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(0);
    const woken = await sandboxes.openkruise.get('team-a', 'sleepy');
    expect(woken.spec?.paused).toBe(false);
    // A new pod, whose container answered at the address the controller reports.
    const pod = woken.status?.podInfo?.podUID as string;
    expect(pod).not.toBe(before);
    expect(await sandboxes.podsWithContainers('team-a', 'sleepy')).toEqual([pod]);
    expect(res.json()['ip']).toBe(podIP(woken));
  });

  it('never honours a client-sent x-envoy-original-dst-host', async () => {
    const spoof = { 'x-envoy-original-dst-host': `${beta.ip}:${SANDBOX_PORT}` };
    const before = await count(beta);
    const named = await byId('team-a--alpha', spoof);
    expect(named.json()['sandbox']).toBe('alpha');
    expect(named.json<{ headers: Record<string, string> }>().headers['x-envoy-original-dst-host']).toBeUndefined();
    expect((await byId('team-a--nobody', spoof)).status).toBe(502);
    expect((await httpGet(`${edge}/`, spoof)).status).toBe(400);
    expect(await count(beta)).toBe(before);
  });

  // Issue 28: operators get the edge's own status codes and latency from Envoy, whose admin interface
  // stays on localhost (it can drain and stop Envoy): the stats listener serves /stats/prometheus alone.
  it('serves Envoy’s own statistics on the stats port, and nothing else of its admin interface', async () => {
    for (const pod of pods) {
      const stats = await httpGet(`http://${pod.ip}:9102/stats/prometheus`);
      expect(stats.status).toBe(200);
      expect(stats.body).toMatch(/^envoy_http_downstream_rq_xx\{[^}]*envoy_http_conn_manager_prefix="edge"/m);
      for (const path of ['/quitquitquit', '/config_dump', '/stats', '/drain_listeners', '/stats/prometheus/../../config_dump']) {
        expect((await httpGet(`http://${pod.ip}:9102${path}`)).status, path).toBe(404);
      }
    }
  });

  it('logs requests without their query strings', async () => {
    const secret = `sig-${Date.now()}`;
    const res = await httpGet(`${edge}/files/report.txt?X-Amz-Signature=${secret}&token=${secret}`, { 'e2b-sandbox-id': 'team-a--alpha' });
    expect(res.json()['path']).toContain(secret);
    const pod = pods[0] as Pod;
    const line = await pod.waitForLog('envoy', /"path":"\/files\/report\.txt"/);
    expect(JSON.parse(line)).toMatchObject({ path: '/files/report.txt', status: 200, sandbox_id: 'team-a--alpha' });
    for (const container of ['envoy', 'sandbox-extproc']) expect(pod.logs(container).join('\n')).not.toContain(secret);
  });

  it('mounts the ServiceAccount token into sandbox-extproc only, never into Envoy', async () => {
    const pod = pods[0] as Pod;
    const tokenDir = '/var/run/secrets/kubernetes.io/serviceaccount';
    const mounts = async (container: string) => (await inspect(pod.containerId(container))).mounts.map((m) => m.Destination);
    expect(await mounts('sandbox-extproc')).toContain(tokenDir);
    expect(await mounts('envoy')).not.toContain(tokenDir);
    await expect(docker(['exec', pod.containerId('envoy'), 'ls', tokenDir])).rejects.toThrow(/No such file/);
  });

  it('rolls a pod with zero failed requests: Envoy is drained before anything is signalled, held requests finish', async () => {
    const [old, next] = pods as [Pod, Pod];
    // kube-proxy's part: new connections go to the old pod until its deletion, then to the new one.
    let target = `http://${old.ip}:8080`;
    const load = new EdgeLoad(() => target, { 'e2b-sandbox-id': 'team-b--beta' }).start(8);
    await load.flowing();
    // In flight when the pod is deleted: a held wake (8 s) and a slow download (8 s), longer than the drain.
    const held = byId('team-a--late', {}, target);
    const slow = httpGet(`${target}/slow?ms=8000`, { 'e2b-sandbox-id': 'team-a--alpha' }, 30_000);
    await sandboxes.openkruise.waitFor('team-a', 'late', (o) => o.spec?.paused === false, 30_000, 'asked to resume');
    const terminating = old.terminate();
    target = `http://${next.ip}:8080`;
    const codes = await terminating;
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.ok).toBeGreaterThan(50);
    expect((await held).status).toBe(200);
    expect((await slow).status).toBe(200);
    expect(old.hooks.map((h) => h.output).join('\n')).toContain('"msg":"envoy drained"');
    expect(codes).toEqual({ 'sandbox-extproc': 0, envoy: 0 });
  });
});
