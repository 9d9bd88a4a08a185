// End to end on a real cluster: kind with the project's offline node image (scripts/kind.sh), the
// project's image loaded into the node, the Sandbox CRD, stand-in sandbox pods, and the Helm chart
// installed twice: in sidecar mode (Envoy + sandbox-extproc in one pod, the chart's Envoy as the edge)
// and in standalone mode (sandbox-extproc alone, behind an Envoy the test runs in the cluster, which
// finds the service by its cluster DNS name). The test controller plays the OpenKruise controller
// against the cluster's API server. Every request goes to 127.0.0.1, where the node's NodePorts are
// published. Where no Docker engine can run, the suite skips with one line saying why.
import { request as httpsRequest } from 'node:https';
import { Writable } from 'node:stream';
import { readFileSync } from 'node:fs';
import {
  AppsV1Api,
  CoreV1Api,
  Exec,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderEnvoyConfig } from '../support/envoy-config.ts';
import { CHART, helm } from '../support/helm.ts';
import { httpGet } from '../support/http.ts';
import { KindCluster, watchUntil, whyNoEngine } from '../support/kind.ts';
import { e2eImages } from '../support/kind-images.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { SteadyLoad } from '../support/steady-load.ts';
import { REPO_ROOT } from '../support/tools.ts';

const skipReason = whyNoEngine();
if (skipReason !== undefined) console.warn(`e2e suite skipped: no Docker engine can run here (${skipReason})`);

const CLUSTER = 'sbx-e2e';
const TENANTS = 'tenants';
const SIDECAR_PORT = 30080;
const STANDALONE_PORT = 30081;
const SANDBOX_PORT = 49983;
const MINUTE = 60_000;

interface Mode {
  readonly name: 'sidecar' | 'standalone';
  readonly namespace: string;
  readonly release: string;
  readonly nodePort: number;
}
const MODES: readonly Mode[] = [
  { name: 'sidecar', namespace: 'sbx-sidecar', release: 'edge', nodePort: SIDECAR_PORT },
  { name: 'standalone', namespace: 'sbx-standalone', release: 'core', nodePort: STANDALONE_PORT },
];
const fullname = (mode: Mode) => `${mode.release}-sandbox-extproc`;
const serviceAccount = (mode: Mode) => `system:serviceaccount:${mode.namespace}:${fullname(mode)}`;

describe.skipIf(skipReason !== undefined)('kind cluster with the Helm chart', () => {
  let cluster: KindCluster;
  let admin: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let objects: KubernetesObjectApi;
  let controller: SandboxController;
  let images: Awaited<ReturnType<typeof e2eImages>>;
  /** The stand-in sandbox pods, by name, with their IPs. */
  let standIns: { name: string; ip: string }[];

  beforeAll(async () => {
    let started = Date.now();
    const lap = (what: string) => {
      console.info(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      started = Date.now();
    };
    images = await e2eImages();
    lap('project image built');
    cluster = await KindCluster.create(CLUSTER, [SIDECAR_PORT, STANDALONE_PORT]);
    lap('kind cluster created, node Ready');
    admin = cluster.admin;
    core = admin.makeApiClient(CoreV1Api);
    apps = admin.makeApiClient(AppsV1Api);
    objects = KubernetesObjectApi.makeApiClient(admin);
    for (const image of [images.service, images.envoy]) await cluster.loadImage(image.ref);
    lap('images loaded into the node');

    await objects.create(parseYaml(readFileSync(`${REPO_ROOT}test/fixtures/sandbox-crd.yaml`, 'utf8')) as KubernetesObject);
    for (const name of [TENANTS, ...MODES.map((m) => m.namespace)]) await core.createNamespace({ body: { metadata: { name } } });
    await apps.createNamespacedDeployment({ namespace: TENANTS, body: standInDeployment(images.service.ref) });
    const ready = await readyPods(TENANTS, 'app=stand-in', 2);
    standIns = ready.map((p) => ({ name: p.metadata?.name as string, ip: p.status?.podIP as string }));

    controller = new SandboxController(admin, { resumeDelayMs: 500 });
    await controller.start();
    await controller.create({ namespace: TENANTS, name: 'alpha', podIP: (standIns[0] as { ip: string }).ip });
    await controller.create({ namespace: TENANTS, name: 'beta', podIP: (standIns[1] as { ip: string }).ip });
    lap('CRD, namespaces and stand-in pods ready');
  }, 20 * MINUTE);

  afterAll(async () => {
    controller?.stop();
    // SBX_E2E_KEEP=1 leaves the cluster up to look at (scripts/kind.sh delete cluster --name sbx-e2e).
    if (process.env['SBX_E2E_KEEP'] === '1') await cluster?.audit.stop();
    else await cluster?.delete();
  }, 5 * MINUTE);

  /** Resolves with `count` Ready pods matching the selector, by watching them. */
  async function readyPods(namespace: string, labelSelector: string, count: number, timeoutMs = 5 * MINUTE): Promise<V1Pod[]> {
    const pods = new Map<string, V1Pod>();
    await watchUntil(
      admin,
      `/api/v1/namespaces/${namespace}/pods`,
      { labelSelector },
      (type, object) => {
        const pod = object as V1Pod;
        const name = pod.metadata?.name as string;
        if (type === 'DELETED' || pod.metadata?.deletionTimestamp) pods.delete(name);
        else pods.set(name, pod);
        const ready = [...pods.values()].filter(isReady);
        return ready.length === count && pods.size === count;
      },
      timeoutMs,
      `${count} Ready pods ${labelSelector} in ${namespace}`,
    );
    return [...pods.values()].sort((a, b) => String(a.metadata?.name).localeCompare(String(b.metadata?.name)));
  }

  /** Waits until the Deployment has rolled out: every replica updated and available, no old pod left. */
  async function rolledOut(namespace: string, name: string, timeoutMs = 5 * MINUTE): Promise<void> {
    await watchUntil(
      admin,
      `/apis/apps/v1/namespaces/${namespace}/deployments`,
      { fieldSelector: `metadata.name=${name}` },
      (_type, object) => {
        const d = object as V1Deployment;
        const want = d.spec?.replicas ?? 1;
        const s = d.status ?? {};
        return (
          (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1) &&
          s.updatedReplicas === want &&
          s.availableReplicas === want &&
          s.readyReplicas === want &&
          s.replicas === want
        );
      },
      timeoutMs,
      `deployment ${namespace}/${name} rolled out`,
    );
  }

  /** Runs a command in a container through the API server and the kubelet; resolves with its output. */
  async function podExec(namespace: string, pod: string, container: string, command: string[]): Promise<{ out: string; status: string }> {
    let out = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out += chunk.toString();
        callback();
      },
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`exec ${command.join(' ')} in ${pod}: no status within 60 s`)), MINUTE);
      new Exec(admin)
        .exec(namespace, pod, container, command, sink, sink, null, false, (status) => {
          clearTimeout(timer);
          // The socket's last output frames may trail the status frame by a tick.
          setImmediate(() => resolve({ out, status: status.status ?? '' }));
        })
        .catch((error: unknown) => {
          clearTimeout(timer);
          reject(error as Error);
        });
    });
  }

  async function install(mode: Mode): Promise<void> {
    helm([
      'install',
      mode.release,
      CHART,
      '--kubeconfig',
      cluster.kubeconfigPath,
      '--namespace',
      mode.namespace,
      '--set',
      `mode=${mode.name}`,
      '--set',
      `image.repository=${images.service.repository}`,
      '--set',
      `image.tag=${images.service.tag}`,
      '--set',
      'image.pullPolicy=Never',
      '--set',
      `envoy.image.repository=${images.envoy.repository}`,
      '--set',
      `envoy.image.tag=${images.envoy.tag}`,
      '--set',
      'envoy.image.pullPolicy=Never',
      '--set',
      `watchNamespaces[0]=${TENANTS}`,
      '--set',
      'replicaCount=2',
    ]);
    await rolledOut(mode.namespace, fullname(mode));
    const servicePods = await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
    if (mode.name === 'standalone') {
      await deployTestEnvoy(mode);
      await rolledOut(mode.namespace, 'test-envoy');
    }
    // The suite's way in from 127.0.0.1: a NodePort on the chart's pods (sidecar: Envoy's edge port)
    // or on the test's Envoy (standalone), used once kube-proxy has programmed it.
    const edgePods = mode.name === 'sidecar' ? servicePods : await readyPods(mode.namespace, 'app=test-envoy', 1);
    await core.createNamespacedService({
      namespace: mode.namespace,
      body: {
        metadata: { name: 'e2e-edge' },
        spec: {
          type: 'NodePort',
          selector: mode.name === 'sidecar' ? { 'app.kubernetes.io/instance': mode.release } : { app: 'test-envoy' },
          ports: [{ port: 80, targetPort: (mode.name === 'sidecar' ? 'edge' : 8080) as never, nodePort: mode.nodePort }],
        },
      },
    });
    await cluster.waitForServiceEndpoints(mode.namespace, 'e2e-edge', '', edgePods.map(ip), MINUTE);
  }

  /**
   * Standalone mode's Envoy: the project's envoy/envoy.yaml with the ext_proc cluster found by cluster
   * DNS, as the README's standalone cluster does (STRICT_DNS), but on a headless Service of the chart's
   * pods: Envoy then balances gRPC streams over the pods and drops a terminating one within a DNS
   * refresh. Through the chart's own ClusterIP Service, Envoy's one HTTP/2 connection stays pinned to a
   * pod until it goes away, and a stream racing its shutdown is refused (REFUSED_STREAM, seen here as
   * 1 failed request in 17,550 during a rollout).
   */
  async function deployTestEnvoy(mode: Mode): Promise<void> {
    const config = renderEnvoyConfig({
      ADMIN_PORT: 9901,
      LISTEN_ADDRESS: '0.0.0.0',
      LISTEN_PORT: 8080,
      EXTPROC_HOST: `test-extproc.${mode.namespace}.svc.cluster.local`,
      EXTPROC_PORT: 9002,
      MESSAGE_TIMEOUT: '1s',
      MAX_MESSAGE_TIMEOUT: '300s',
    }).replace(
      /(- name: sandbox_extproc\n\s+)type: STATIC/,
      '$1type: STRICT_DNS\n      dns_lookup_family: V4_ONLY\n      dns_refresh_rate: 1s',
    );
    expect(config).toContain('type: STRICT_DNS');
    await core.createNamespacedService({
      namespace: mode.namespace,
      body: {
        metadata: { name: 'test-extproc' },
        spec: {
          clusterIP: 'None',
          selector: { 'app.kubernetes.io/instance': mode.release },
          ports: [{ name: 'grpc', port: 9002, targetPort: 'grpc' as never }],
        },
      },
    });
    await core.createNamespacedConfigMap({
      namespace: mode.namespace,
      body: { metadata: { name: 'test-envoy' }, data: { 'envoy.yaml': config } },
    });
    await apps.createNamespacedDeployment({
      namespace: mode.namespace,
      body: {
        metadata: { name: 'test-envoy' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'test-envoy' } },
          template: {
            metadata: { labels: { app: 'test-envoy' } },
            spec: {
              containers: [
                {
                  name: 'envoy',
                  image: images.envoy.ref,
                  imagePullPolicy: 'Never',
                  args: ['-c', '/etc/envoy/envoy.yaml', '--disable-hot-restart'],
                  ports: [{ containerPort: 8080 }],
                  readinessProbe: { tcpSocket: { port: 8080 as never }, periodSeconds: 2 },
                  volumeMounts: [{ name: 'config', mountPath: '/etc/envoy' }],
                },
              ],
              volumes: [{ name: 'config', configMap: { name: 'test-envoy' } }],
            },
          },
        },
      },
    });
  }

  describe.each(MODES)('$name mode', (mode) => {
    let edge: string;

    beforeAll(async () => {
      // Created before the chart, so the service's first list (which its readiness waits for) has it paused.
      await controller.create({
        namespace: TENANTS,
        name: `asleep-${mode.name}`,
        podIP: (standIns[0] as { ip: string }).ip,
        paused: true,
        wake: { by: 'policy' },
      });
      const started = Date.now();
      await install(mode);
      console.info(`${mode.name} mode installed and served: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      edge = `http://127.0.0.1:${cluster.hostPort(mode.nodePort)}`;
    }, 10 * MINUTE);

    it('runs Ready pods: probes passing, uid 65532, read-only root filesystem', async () => {
      const pods = await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
      for (const pod of pods) {
        const name = pod.metadata?.name as string;
        // The sidecar Envoy is a native sidecar (an init container that keeps running): its status is
        // among the init containers'.
        const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
        for (const status of statuses) {
          expect(status.ready, `${name}/${status.name} ready`).toBe(true);
          expect(status.started, `${name}/${status.name} started (startup probe passed)`).toBe(true);
          expect(status.restartCount, `${name}/${status.name} restarts (liveness probe)`).toBe(0);
        }
        expect(statuses.map((s) => s.name).sort()).toEqual(mode.name === 'sidecar' ? ['envoy', 'sandbox-extproc'] : ['sandbox-extproc']);
        // Asked of the running process, not of the spec.
        const probe = await podExec(mode.namespace, name, 'sandbox-extproc', [
          'node',
          '-e',
          "let w='written';try{require('fs').writeFileSync('/probe','x')}catch(e){w=e.code}console.log(JSON.stringify({uid:process.getuid(),gid:process.getgid(),write:w}))",
        ]);
        expect(probe.status).toBe('Success');
        expect(JSON.parse(probe.out.trim())).toEqual({ uid: 65532, gid: 65532, write: 'EROFS' });
      }
    });

    it("watches Sandboxes with its ServiceAccount's token, from each pod", async () => {
      const pods = await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
      for (const pod of pods) {
        const ip = pod.status?.podIP as string;
        const event = await cluster.waitForAudit(
          (e) =>
            e.verb === 'watch' &&
            e.objectRef?.resource === 'sandboxes' &&
            e.objectRef.namespace === TENANTS &&
            e.user.username === serviceAccount(mode) &&
            (e.sourceIPs ?? []).includes(ip) &&
            e.responseStatus?.code === 200,
          MINUTE,
          `a watch of sandboxes by ${serviceAccount(mode)} from ${ip}`,
        );
        expect(event.requestURI).toContain('watch=true');
      }
    });

    it('routes by header to the named sandbox pod', async () => {
      for (const [name, standIn] of [
        ['alpha', standIns[0]],
        ['beta', standIns[1]],
      ] as const) {
        const res = await httpGet(`${edge}/hello?from=${mode.name}`, { 'e2b-sandbox-id': `${TENANTS}--${name}` });
        expect(res.status, res.body).toBe(200);
        expect(res.json()).toMatchObject({ pod: standIn?.name, path: `/hello?from=${mode.name}` });
      }
    });

    it('routes by host to the named sandbox pod', async () => {
      const res = await httpGet(`${edge}/by-host`, { host: `${SANDBOX_PORT}-${TENANTS}--beta.sandbox.test` });
      expect(res.status, res.body).toBe(200);
      expect(res.json()).toMatchObject({ pod: standIns[1]?.name, host: `${SANDBOX_PORT}-${TENANTS}--beta.sandbox.test` });
    });

    it('answers an unknown sandbox with the JSON error, never reaching a pod', async () => {
      const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': `${TENANTS}--nobody` });
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'sandbox_not_found' });
    });

    it('wakes a paused sandbox on a request, and serves it', async () => {
      const name = `asleep-${mode.name}`;
      expect((await controller.get(TENANTS, name)).status?.phase).toBe('Paused');
      const res = await httpGet(`${edge}/woken`, { 'e2b-sandbox-id': `${TENANTS}--${name}` }, MINUTE);
      expect(res.status, res.body).toBe(200);
      expect(res.json()).toMatchObject({ pod: standIns[0]?.name, path: '/woken' });
      expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(0);
      expect((await controller.get(TENANTS, name)).spec?.paused).toBe(false);
      // The resume was the service's own patch, made with its ServiceAccount.
      await cluster.waitForAudit(
        (e) =>
          e.verb === 'patch' && e.objectRef?.name === name && e.user.username === serviceAccount(mode) && e.responseStatus?.code === 200,
        MINUTE,
        `the resume patch of ${name} by ${serviceAccount(mode)}`,
      );
    });

    it('fails no request while the Deployment rolls out under load', async () => {
      const load = new SteadyLoad(`${edge}/load`, { 'e2b-sandbox-id': `${TENANTS}--alpha` }, { concurrency: 4, maxMs: 5 * MINUTE });
      await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
      // Keep the load on until every old pod is gone: their endpoints are withdrawn, preStop waits,
      // SIGTERM drains, and only then do they disappear. Watched from the list taken before the rollout.
      const labelSelector = `app.kubernetes.io/instance=${mode.release}`;
      const before = await core.listNamespacedPod({ namespace: mode.namespace, labelSelector });
      const oldNames = new Set(before.items.map((p) => p.metadata?.name as string));
      expect(oldNames.size).toBe(2);
      const gone = new Set<string>();
      const oldPodsGone = watchUntil(
        admin,
        `/api/v1/namespaces/${mode.namespace}/pods`,
        { labelSelector, resourceVersion: before.metadata?.resourceVersion as string },
        (type, object) => {
          const name = (object as V1Pod).metadata?.name as string;
          if (type === 'DELETED' && oldNames.has(name)) gone.add(name);
          return gone.size === oldNames.size;
        },
        5 * MINUTE,
        'the old pods deleted',
      );
      const sentBefore = load.sent;
      await apps.patchNamespacedDeployment(
        {
          namespace: mode.namespace,
          name: fullname(mode),
          body: { spec: { template: { metadata: { annotations: { 'e2e/restarted-at': new Date().toISOString() } } } } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await rolledOut(mode.namespace, fullname(mode));
      await oldPodsGone;
      const after = await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
      const result = await load.stop();
      console.info(
        `${mode.name} rollout: ${result.sent - sentBefore} requests during the rollout, ${result.sent} in all, ${result.failures.length} failed`,
      );
      // Every pod was replaced while requests kept flowing.
      expect(after.filter((p) => oldNames.has(p.metadata?.name as string))).toEqual([]);
      expect(result.sent - sentBefore).toBeGreaterThan(100);
      expect(result.failures).toEqual([]);
      expect(result.answered).toBe(result.sent);
    });

    it('RBAC denies the ServiceAccount everything the chart does not grant', async () => {
      const token = await core.createNamespacedServiceAccountToken({
        namespace: mode.namespace,
        name: fullname(mode),
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      const bearer = token.status?.token as string;
      const sandboxes = `/apis/agents.kruise.io/v1alpha1/namespaces/${TENANTS}/sandboxes`;
      const attempts: [string, string, string, unknown?][] = [
        // granted
        ['GET', sandboxes, 'list sandboxes in the watched namespace'],
        // What a wake writes (the chart's admission policy refuses any other change from this identity).
        ['PATCH', `${sandboxes}/alpha`, 'patch a sandbox (wake)', { spec: { paused: false } }],
        // not granted
        ['PATCH', `${sandboxes}/alpha/status`, 'patch sandbox status', { status: { phase: 'Paused' } }],
        ['DELETE', `${sandboxes}/alpha`, 'delete a sandbox'],
        [
          'POST',
          sandboxes,
          'create a sandbox',
          { apiVersion: 'agents.kruise.io/v1alpha1', kind: 'Sandbox', metadata: { name: 'intruder' } },
        ],
        ['GET', '/apis/agents.kruise.io/v1alpha1/namespaces/default/sandboxes', 'list sandboxes in an unwatched namespace'],
        ['GET', '/apis/agents.kruise.io/v1alpha1/sandboxes', 'list sandboxes cluster-wide'],
        ['GET', `/api/v1/namespaces/${TENANTS}/secrets`, 'list secrets'],
        ['GET', `/api/v1/namespaces/${TENANTS}/pods`, 'list pods'],
        ['GET', `/api/v1/namespaces/${mode.namespace}/configmaps`, "list configmaps in the chart's namespace"],
      ];
      const codes: Record<string, number> = {};
      for (const [method, path, what, body] of attempts) codes[what] = await callAs(admin, bearer, method, path, body);
      expect(codes).toEqual({
        'list sandboxes in the watched namespace': 200,
        'patch a sandbox (wake)': 200,
        'patch sandbox status': 403,
        'delete a sandbox': 403,
        'create a sandbox': 403,
        'list sandboxes in an unwatched namespace': 403,
        'list sandboxes cluster-wide': 403,
        'list secrets': 403,
        'list pods': 403,
        "list configmaps in the chart's namespace": 403,
      });
    });

    // Issue 28: the chart's own check of an install (templates/tests/test-install.yaml).
    it('passes `helm test`: the service is ready and, in sidecar mode, the edge routes an unknown ID to its 502', () => {
      const args = [
        'test',
        mode.release,
        '--kubeconfig',
        cluster.kubeconfigPath,
        '--namespace',
        mode.namespace,
        '--logs',
        '--timeout',
        '3m',
      ];
      const out = helm(args);
      expect(out).toMatch(/Phase:\s+Succeeded/);
      expect(out).toContain('"msg":"install works"');
      if (mode.name === 'sidecar') expect(out).toContain('the edge routes through the service');
    });
  });
});

/** One API request with a bearer token; resolves with the HTTP status the API server answered. */
function callAs(config: KubeConfig, token: string, method: string, path: string, body?: unknown): Promise<number> {
  const cluster = config.getCurrentCluster();
  if (!cluster?.caData) throw new Error('no cluster CA in the kubeconfig');
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      `${cluster.server}${path}`,
      {
        method,
        ca: Buffer.from(cluster.caData as string, 'base64'),
        headers: {
          authorization: `Bearer ${token}`,
          ...(payload === undefined ? {} : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' }),
        },
        timeout: 30_000,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

const ip = (pod: V1Pod) => pod.status?.podIP as string;

function isReady(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && (pod.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/**
 * Stand-in sandboxes: two pods answering on the E2B agent port with who they are and what they were
 * asked, run from the project's image (it carries Node) under the same restrictions as the service.
 */
function standInDeployment(image: string): V1Deployment {
  const script =
    "require('http').createServer((q,s)=>{s.setHeader('content-type','application/json');" +
    "s.end(JSON.stringify({pod:require('os').hostname(),path:q.url,host:q.headers.host}))}).listen(" +
    String(SANDBOX_PORT) +
    ')';
  return {
    metadata: { name: 'stand-in', namespace: TENANTS },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'stand-in' } },
      template: {
        metadata: { labels: { app: 'stand-in' } },
        spec: {
          containers: [
            {
              name: 'sandbox',
              image,
              imagePullPolicy: 'Never',
              command: ['node', '-e', script],
              ports: [{ containerPort: SANDBOX_PORT }],
              readinessProbe: { tcpSocket: { port: SANDBOX_PORT as never }, periodSeconds: 1 },
              securityContext: {
                runAsNonRoot: true,
                runAsUser: 65532,
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      },
    },
  };
}
