// End to end on a real cluster: kind with the project's offline node image (scripts/kind.sh), the
// project's image loaded into the node, both Sandbox families' own controllers installed from their
// manifests (test/support/kind-controllers.ts), sandboxes as real pods of each family, and the Helm
// chart installed twice, serving both families: in sidecar mode (Envoy + sandbox-extproc in one pod,
// the chart's Envoy as the edge) and in standalone mode (sandbox-extproc alone, behind an Envoy the test
// runs in the cluster, which finds the service by its cluster DNS name). A paused sandbox has no pod; a
// wake is the service's patch, then the controller's new pod, with a new IP. Every request goes to
// 127.0.0.1, where the node's NodePorts are published. Where no Docker engine can run, the suite skips
// with one line saying why.
import { request as httpsRequest } from 'node:https';
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1Deployment, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderEnvoyConfig } from '../support/envoy-config.ts';
import { CHART, helm } from '../support/helm.ts';
import { httpGet } from '../support/http.ts';
import { KindCluster, podExec, watchUntil, whyNoEngine } from '../support/kind.ts';
import {
  AGENT_SANDBOX_CONTROLLER_USER,
  deployControllers,
  installControllerCrds,
  OPENKRUISE_CONTROLLER_USER,
} from '../support/kind-controllers.ts';
import { e2eImages, type E2eImages } from '../support/kind-images.ts';
import { AGENT_SANDBOX, KindSandboxes, OPENKRUISE, SANDBOX_PORT, type Family } from '../support/kind-sandboxes.ts';
import { SteadyLoad } from '../support/steady-load.ts';

const skipReason = whyNoEngine();
if (skipReason !== undefined) console.warn(`e2e suite skipped: no Docker engine can run here (${skipReason})`);

const CLUSTER = 'sbx-e2e';
const TENANTS = 'tenants';
const SIDECAR_PORT = 30080;
const STANDALONE_PORT = 30081;
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
const FAMILIES: readonly Family[] = [OPENKRUISE, AGENT_SANDBOX];
/** Running sandboxes: two OpenKruise ones, one of agent-sandbox. */
const RUNNING: readonly [Family, string][] = [
  [OPENKRUISE, 'alpha'],
  [OPENKRUISE, 'beta'],
  [AGENT_SANDBOX, 'gamma'],
];
/** Per mode and family, a sandbox paused before the chart is installed, for that mode's wake. */
const asleep = (family: Family, mode: Mode) => `asleep-${family.name}-${mode.name}`;
const fullname = (mode: Mode) => `${mode.release}-sandbox-extproc`;
const serviceAccount = (mode: Mode) => `system:serviceaccount:${mode.namespace}:${fullname(mode)}`;

describe.skipIf(skipReason !== undefined)('kind cluster with the Helm chart', () => {
  let cluster: KindCluster;
  let admin: KubeConfig;
  let core: CoreV1Api;
  let apps: AppsV1Api;
  let images: E2eImages;
  let sandboxes: KindSandboxes;
  /** What each sandbox paused in beforeAll was serving from before its pause: its pod and that pod's IP. */
  const beforePause = new Map<string, { podUid: string; ip: string }>();

  beforeAll(async () => {
    let started = Date.now();
    const lap = (what: string) => {
      console.info(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      started = Date.now();
    };
    [images, cluster] = await Promise.all([e2eImages(), KindCluster.create(CLUSTER, [SIDECAR_PORT, STANDALONE_PORT])]);
    lap('project image built, kind cluster created, node Ready');
    admin = cluster.admin;
    core = admin.makeApiClient(CoreV1Api);
    apps = admin.makeApiClient(AppsV1Api);
    // The CRDs go in while the images load; the controllers' Deployments once their images are there.
    await Promise.all([
      cluster.loadImages([images.service, images.envoy, images.openkruiseController, images.agentSandboxController].map((i) => i.ref)),
      (async () => {
        for (const name of [TENANTS, ...MODES.map((m) => m.namespace)]) await core.createNamespace({ body: { metadata: { name } } });
        await installControllerCrds(admin);
      })(),
    ]);
    lap("images loaded into the node, the families' CRDs established");
    await deployControllers(admin, { openkruise: images.openkruiseController.ref, agentSandbox: images.agentSandboxController.ref });
    sandboxes = new KindSandboxes(admin, TENANTS, images.service.ref);
    // The chart installs in both modes while the sandboxes come up and some are paused: the service
    // follows each sandbox on its watch.
    await Promise.all([
      startSandboxes(),
      ...MODES.map(async (mode) => {
        const begun = Date.now();
        await install(mode);
        console.info(`${mode.name} mode installed and served: ${((Date.now() - begun) / 1000).toFixed(1)} s`);
      }),
    ]);
    lap('controllers deployed, sandboxes running or paused, the chart installed in both modes');
  }, 20 * MINUTE);

  /**
   * Creates every sandbox and waits until its controller reports it serving (its pod Ready), then
   * pauses the sleepers and waits until the controller reports each pause complete (its pod deleted).
   */
  async function startSandboxes(): Promise<void> {
    const sleepers = MODES.flatMap((mode) => FAMILIES.map((family) => [family, asleep(family, mode)] as const));
    await Promise.all([
      ...RUNNING.map(([family, name]) => sandboxes.create(family, name)),
      ...sleepers.map(([family, name]) => sandboxes.create(family, name, { wake: true })),
    ]);
    await Promise.all(
      [...RUNNING, ...sleepers].map(([family, name]) => sandboxes.waitFor(family, name, family.serving, 3 * MINUTE, 'serving')),
    );
    await Promise.all(
      sleepers.map(async ([family, name]) => {
        const pod = await sandboxes.pod(name);
        beforePause.set(name, { podUid: pod?.metadata?.uid as string, ip: family.ip(await sandboxes.get(family, name)) });
        expect(pod?.status?.podIP).toBe(beforePause.get(name)?.ip);
        await sandboxes.pause(family, name);
        await sandboxes.waitFor(family, name, family.paused, MINUTE, 'paused');
      }),
    );
  }

  afterAll(async () => {
    // SBX_E2E_KEEP=1 leaves the cluster up to look at (scripts/kind.sh delete cluster --name sbx-e2e).
    if (process.env['SBX_E2E_KEEP'] === '1') await Promise.all([cluster?.audit.stop(), cluster?.nft.stop()]);
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
      // Both families, and agent-sandbox requests may name the tenants' namespace.
      '--set',
      'config.sandboxKind=openkruise\\,agent-sandbox',
      '--set',
      `config.agentSandboxNamespaces=${TENANTS}`,
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

  it("runs each family's sandboxes through its own controller in the cluster, as that controller's ServiceAccount", async () => {
    for (const [family, user] of [
      [OPENKRUISE, OPENKRUISE_CONTROLLER_USER],
      [AGENT_SANDBOX, AGENT_SANDBOX_CONTROLLER_USER],
    ] as const) {
      const name = asleep(family, MODES[0] as Mode);
      // It made the sandbox's pod, deleted it for the pause, and wrote the sandbox's status.
      for (const [verbs, resource, subresource] of [
        [['create'], 'pods', undefined],
        [['delete'], 'pods', undefined],
        [['update', 'patch'], 'sandboxes', 'status'],
      ] as const) {
        await cluster.waitForAudit(
          (e) =>
            (verbs as readonly string[]).includes(e.verb) &&
            e.objectRef?.resource === resource &&
            e.objectRef.subresource === subresource &&
            e.objectRef.namespace === TENANTS &&
            e.objectRef.name === name &&
            e.user.username === user &&
            (e.responseStatus?.code ?? 0) < 300,
          MINUTE,
          `${verbs.join('/')} ${resource}${subresource ? `/${subresource}` : ''} ${name} by ${user}`,
        );
      }
    }
  });

  describe.each(MODES)('$name mode', (mode) => {
    let edge: string;

    beforeAll(() => {
      edge = `http://127.0.0.1:${cluster.hostPort(mode.nodePort)}`;
    });

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
        const probe = await podExec(admin, mode.namespace, name, 'sandbox-extproc', [
          'node',
          '-e',
          "let w='written';try{require('fs').writeFileSync('/probe','x')}catch(e){w=e.code}console.log(JSON.stringify({uid:process.getuid(),gid:process.getgid(),write:w}))",
        ]);
        expect(probe.status).toBe('Success');
        expect(JSON.parse(probe.out.trim())).toEqual({ uid: 65532, gid: 65532, write: 'EROFS' });
      }
    });

    it("watches both families' Sandboxes with its ServiceAccount's token, from each pod", async () => {
      const pods = await readyPods(mode.namespace, `app.kubernetes.io/instance=${mode.release}`, 2);
      for (const pod of pods) {
        const ip = pod.status?.podIP as string;
        for (const family of FAMILIES) {
          const event = await cluster.waitForAudit(
            (e) =>
              e.verb === 'watch' &&
              e.objectRef?.resource === 'sandboxes' &&
              e.objectRef.apiGroup === family.group &&
              e.objectRef.namespace === TENANTS &&
              e.user.username === serviceAccount(mode) &&
              (e.sourceIPs ?? []).includes(ip) &&
              e.responseStatus?.code === 200,
            MINUTE,
            `a watch of ${family.name} sandboxes by ${serviceAccount(mode)} from ${ip}`,
          );
          expect(event.requestURI).toContain('watch=true');
        }
      }
    });

    it("routes by each family's headers to the named sandbox's pod", async () => {
      for (const [family, name] of RUNNING) {
        const res = await httpGet(`${edge}/hello?from=${mode.name}`, family.headers(TENANTS, name));
        expect(res.status, res.body).toBe(200);
        // The pod the controller reports for this sandbox (named after it), at the IP it reports.
        const address = family.ip(await sandboxes.get(family, name));
        expect(res.json()).toMatchObject({ pod: name, ip: address, path: `/hello?from=${mode.name}` });
      }
    });

    it('routes by host to the named sandbox pod', async () => {
      const res = await httpGet(`${edge}/by-host`, { host: `${SANDBOX_PORT}-${TENANTS}--beta.sandbox.test` });
      expect(res.status, res.body).toBe(200);
      const address = OPENKRUISE.ip(await sandboxes.get(OPENKRUISE, 'beta'));
      expect(res.json()).toMatchObject({ pod: 'beta', ip: address, host: `${SANDBOX_PORT}-${TENANTS}--beta.sandbox.test` });
    });

    it('answers an unknown sandbox with the JSON error, never reaching a pod', async () => {
      const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': `${TENANTS}--nobody` });
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'sandbox_not_found' });
    });

    it.each(FAMILIES)(
      'wakes a paused $name sandbox on a request: the controller makes a new pod, with a new IP, and the request reaches it',
      async (family) => {
        const name = asleep(family, mode);
        const before = beforePause.get(name) as { podUid: string; ip: string };
        // Paused: the controller says so, and its pod is gone.
        expect(family.paused(await sandboxes.get(family, name))).toBe(true);
        expect(await sandboxes.pod(name)).toBeUndefined();
        const res = await httpGet(`${edge}/woken`, family.headers(TENANTS, name), MINUTE);
        expect(res.status, res.body).toBe(200);
        expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(0);
        const woken = await sandboxes.get(family, name);
        const pod = await sandboxes.pod(name);
        expect(family.serving(woken)).toBe(true);
        // A new pod, at a new address, is what the request reached.
        expect(pod?.metadata?.uid).not.toBe(before.podUid);
        expect(pod?.status?.podIP).toBe(family.ip(woken));
        expect(family.ip(woken)).not.toBe(before.ip);
        expect(res.json()).toMatchObject({ pod: name, ip: family.ip(woken), path: '/woken' });
        // The resume was the service's own patch, made with its ServiceAccount.
        await cluster.waitForAudit(
          (e) =>
            e.verb === 'patch' &&
            e.objectRef?.apiGroup === family.group &&
            e.objectRef.name === name &&
            e.user.username === serviceAccount(mode) &&
            e.responseStatus?.code === 200,
          MINUTE,
          `the resume patch of ${family.name} ${name} by ${serviceAccount(mode)}`,
        );
      },
    );

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

    it('RBAC and the admission policy deny the ServiceAccount everything the chart does not grant', async () => {
      const token = await core.createNamespacedServiceAccountToken({
        namespace: mode.namespace,
        name: fullname(mode),
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      });
      const bearer = token.status?.token as string;
      const sandboxes = `/apis/agents.kruise.io/v1alpha1/namespaces/${TENANTS}/sandboxes`;
      const agentSandboxes = `/apis/agents.x-k8s.io/v1beta1/namespaces/${TENANTS}/sandboxes`;
      const attempts: [string, string, string, unknown?][] = [
        // granted
        ['GET', sandboxes, 'list sandboxes in the watched namespace'],
        ['GET', agentSandboxes, 'list agent-sandbox sandboxes in the watched namespace'],
        // What a wake writes (the chart's admission policy refuses any other change from this identity).
        ['PATCH', `${sandboxes}/alpha`, 'patch a sandbox (wake)', { spec: { paused: false } }],
        ['PATCH', `${agentSandboxes}/gamma`, 'patch an agent-sandbox sandbox (wake)', { spec: { operatingMode: 'Running' } }],
        // granted by RBAC, refused by the admission policy
        ['PATCH', `${sandboxes}/alpha`, 'pause a sandbox', { spec: { paused: true } }],
        ['PATCH', `${agentSandboxes}/gamma`, 'suspend an agent-sandbox sandbox', { spec: { operatingMode: 'Suspended' } }],
        // not granted
        ['PATCH', `${sandboxes}/alpha/status`, 'patch sandbox status', { status: { phase: 'Paused' } }],
        ['PATCH', `${agentSandboxes}/gamma/status`, 'patch agent-sandbox sandbox status', { status: { podIPs: ['10.0.0.1'] } }],
        ['DELETE', `${sandboxes}/alpha`, 'delete a sandbox'],
        ['DELETE', `${agentSandboxes}/gamma`, 'delete an agent-sandbox sandbox'],
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
      const messages: Record<string, string> = {};
      for (const [method, path, what, body] of attempts) {
        const answer = await callAs(admin, bearer, method, path, body);
        codes[what] = answer.status;
        messages[what] = answer.message;
      }
      expect(codes).toEqual({
        'list sandboxes in the watched namespace': 200,
        'list agent-sandbox sandboxes in the watched namespace': 200,
        'patch a sandbox (wake)': 200,
        'patch an agent-sandbox sandbox (wake)': 200,
        'pause a sandbox': 403,
        'suspend an agent-sandbox sandbox': 403,
        'patch sandbox status': 403,
        'patch agent-sandbox sandbox status': 403,
        'delete a sandbox': 403,
        'delete an agent-sandbox sandbox': 403,
        'create a sandbox': 403,
        'list sandboxes in an unwatched namespace': 403,
        'list sandboxes cluster-wide': 403,
        'list secrets': 403,
        'list pods': 403,
        "list configmaps in the chart's namespace": 403,
      });
      // The two RBAC allows were refused by the chart's ValidatingAdmissionPolicies, each in its words.
      expect(messages['pause a sandbox']).toContain('sandbox-extproc may resume a sandbox, never pause one');
      expect(messages['suspend an agent-sandbox sandbox']).toContain(
        'sandbox-extproc may resume a sandbox, and suspend only one opted in to idle suspension',
      );
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

/** One API request with a bearer token; resolves with the HTTP status and the message the API server answered. */
function callAs(
  config: KubeConfig,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; message: string }> {
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
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          let message: string;
          try {
            message = String((JSON.parse(text) as { message?: unknown }).message ?? '');
          } catch {
            message = text;
          }
          resolve({ status: res.statusCode ?? 0, message });
        });
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
