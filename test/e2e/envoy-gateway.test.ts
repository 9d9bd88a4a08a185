// Behind the edge users already run (issue 27), on a real cluster: kind with the project's offline node
// image, both Sandbox families' own controllers (test/support/kind-controllers.ts), Envoy Gateway built
// from its Go module and installed from its own Helm chart, kube-router enforcing NetworkPolicy, and the manifests of examples/ applied as they are:
// 1. Envoy Gateway as the edge (examples/envoy-gateway): its proxies call sandbox-extproc (the chart in
//    standalone mode) through an EnvoyExtensionPolicy and route to the pod IP it answers through the
//    EnvoyPatchPolicy's ORIGINAL_DST cluster;
// 2. any Gateway API front door (examples/gateway-api): Envoy Gateway again, terminating TLS for a
//    wildcard host and forwarding to the chart's own edge (sidecar mode).
// What the test sets beyond the examples, and why: the images (built here, loaded into the node, pull
// policy Never), and for the standalone release config.minPauseTimeout=1s, so that the websocket test's
// sandbox keeps its own 45 s pause timeout instead of the 300 s floor. Every request goes to 127.0.0.1,
// where the node's NodePorts are published (Services of the suite's own in front of Envoy Gateway's
// proxies). Where no Docker engine can run, the suite skips with one line saying why.
import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { makeServingCert } from '../support/certs.ts';
import { CHART } from '../support/helm.ts';
import { httpGet, type HttpResult } from '../support/http.ts';
import { KindCluster, podExec, watchUntil, whyNoEngine } from '../support/kind.ts';
import { deployControllers, installControllerCrds } from '../support/kind-controllers.ts';
import {
  createAll,
  ENVOY_GATEWAY_NAMESPACE,
  gatewayImages,
  helmAsync,
  installEnvoyGateway,
  installNetworkPolicyController,
  manifest,
  rolledOut,
  waitForConditions,
  type GatewayImages,
} from '../support/kind-gateway.ts';
import { e2eImages, type E2eImages } from '../support/kind-images.ts';
import { AGENT_SANDBOX, KindSandboxes, OPENKRUISE, SANDBOX_PORT, type Family } from '../support/kind-sandboxes.ts';
import { isPaused, type SandboxObject } from '../support/openkruise.ts';
import { REPO_ROOT } from '../support/tools.ts';

const skipReason = whyNoEngine();
if (skipReason !== undefined) console.warn(`e2e suite skipped: no Docker engine can run here (${skipReason})`);

const CLUSTER = 'sbx-eg';
/** NodePorts published on 127.0.0.1: Envoy Gateway's proxies for the edge Gateway, and for the front door. */
const EDGE_PORT = 30090;
const FRONT_DOOR_PORT = 30091;
/** The examples' namespaces and names. */
const TENANTS = 'team-a';
const SYSTEM = 'sandbox-system';
const DOMAIN = 'sandbox.example.com';
const EXAMPLES = join(REPO_ROOT, 'examples');
const EDGE_GATEWAY = { namespace: SYSTEM, name: 'sandboxes' };
const FRONT_DOOR_GATEWAY = { namespace: SYSTEM, name: 'front-door' };
const STANDALONE = { release: 'extproc', values: join(EXAMPLES, 'envoy-gateway/sandbox-extproc-values.yaml') };
const SIDECAR = { release: 'edge', values: join(EXAMPLES, 'gateway-api/sandbox-extproc-values.yaml') };
const serviceAccount = (release: string) => `system:serviceaccount:${SYSTEM}:${release}-sandbox-extproc`;

const MINUTE = 60_000;
/**
 * The longest timeout Envoy Gateway sets by default on a held request's way: a route's 15 s (Envoy's
 * default; the others are ext_proc's messageTimeout, 200 ms, and its gRPC call's, 10 s).
 */
const LONGEST_DEFAULT_MS = 15_000;
/**
 * How long a woken sandbox's pod takes to become Ready, so that its wake outlasts that timeout (the
 * kubelet counts the delay from the container's start, to the second).
 */
const SLOW_READY_S = 17;
/** The websocket test's pause timeout: its first push comes from the access log entry 30 s after the upgrade. */
const PAUSE_TIMEOUT_S = 45;

/** Running sandboxes of both families, and the paused ones each front door wakes. */
const RUNNING: readonly [Family, string][] = [
  [OPENKRUISE, 'alpha'],
  [OPENKRUISE, 'beta'],
  [AGENT_SANDBOX, 'gamma'],
];
const SLEEPERS: readonly [Family, string][] = [
  [OPENKRUISE, 'sleepy'],
  [AGENT_SANDBOX, 'drowsy'],
];

/**
 * Every sandbox's server: who it is (its hostname is the pod's name), the address the request reached
 * (the pod IP), and what it was asked, headers included; an upgrade is accepted as a websocket that is
 * held open, silent, its 101 naming the pod. It exits on SIGTERM, as a server should when its pod goes.
 */
const SERVER = `
process.on('SIGTERM', () => process.exit(0));
const http = require('node:http'), crypto = require('node:crypto'), os = require('node:os');
const server = http.createServer((q, s) => {
  s.setHeader('content-type', 'application/json');
  s.end(JSON.stringify({ pod: os.hostname(), ip: q.socket.localAddress, path: q.url, host: q.headers.host, headers: q.headers }));
});
server.on('upgrade', (q, socket) => {
  const accept = crypto.createHash('sha1').update(q.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept +
    '\\r\\nx-sandbox-pod: ' + os.hostname() + '\\r\\nx-sandbox-ip: ' + socket.localAddress + '\\r\\n\\r\\n');
  socket.on('error', () => {});
});
server.listen(${SANDBOX_PORT}, '0.0.0.0');
`;

/** A probe: TCP connects to each target from wherever its pod runs; prints each outcome. */
const PROBE = `
const net = require('node:net');
const targets = JSON.parse(process.env.TARGETS);
Promise.all(targets.map((t) => new Promise((resolve) => {
  const socket = net.connect({ host: t.host, port: t.port });
  // kube-router refuses what a NetworkPolicy does not admit (REJECT, ICMP port unreachable); a dropped
  // packet would never answer, and is reported so after 5 s.
  const timer = setTimeout(() => { socket.destroy(); resolve([t.name, 'no answer']); }, 5000);
  socket.on('connect', () => { clearTimeout(timer); socket.destroy(); resolve([t.name, 'connected']); });
  socket.on('error', (e) => { clearTimeout(timer); resolve([t.name, e.code === 'ECONNREFUSED' ? 'refused' : e.code]); });
}))).then((results) => console.log(JSON.stringify(Object.fromEntries(results))));
`;

const RESTRICTED = {
  runAsNonRoot: true,
  runAsUser: 65532,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

describe.skipIf(skipReason !== undefined)('behind Envoy Gateway and a Gateway API front door, in kind', () => {
  let cluster: KindCluster;
  let admin: KubeConfig;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let images: E2eImages;
  let gateway: GatewayImages;
  let sandboxes: KindSandboxes;
  let edge: string;
  let tls: { caCert: string; cert: string; key: string };

  /**
   * A wake held past every default timeout on the way: answered 200 by the woken sandbox's new pod, after
   * longer than the longest default, resumed by the release's own ServiceAccount (the audit log's patch).
   */
  async function expectHeldWake(res: HttpResult, started: number, family: Family, name: string, release: string): Promise<void> {
    expect(res.status, res.body).toBe(200);
    expect(Date.now() - started).toBeGreaterThan(LONGEST_DEFAULT_MS);
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(LONGEST_DEFAULT_MS);
    const woken = await sandboxes.get(family, name);
    expect(family.serving(woken)).toBe(true);
    expect(res.json()).toMatchObject({ pod: name, ip: family.ip(woken), path: '/woken' });
    await cluster.waitForAudit(
      (e) =>
        e.verb === 'patch' &&
        e.objectRef?.apiGroup === family.group &&
        e.objectRef.name === name &&
        e.user.username === serviceAccount(release) &&
        e.responseStatus?.code === 200,
      MINUTE,
      `the resume patch of ${name} by ${serviceAccount(release)}`,
    );
  }

  beforeAll(async () => {
    let started = Date.now();
    const lap = (what: string) => {
      console.info(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      started = Date.now();
    };
    gateway = gatewayImages();
    [images, cluster] = await Promise.all([e2eImages(), KindCluster.create(CLUSTER, [EDGE_PORT, FRONT_DOOR_PORT])]);
    lap('project image built, kind cluster created, node Ready');
    admin = cluster.admin;
    core = admin.makeApiClient(CoreV1Api);
    custom = admin.makeApiClient(CustomObjectsApi);
    sandboxes = new KindSandboxes(admin, TENANTS, images.service.ref);
    await Promise.all([
      cluster.loadImages([
        images.service.ref,
        images.envoy.ref,
        images.openkruiseController.ref,
        images.agentSandboxController.ref,
        gateway.envoyGateway,
        gateway.kubeRouter,
      ]),
      (async () => {
        for (const name of [TENANTS, ENVOY_GATEWAY_NAMESPACE]) await core.createNamespace({ body: { metadata: { name } } });
        await installControllerCrds(admin);
      })(),
    ]);
    lap("images loaded into the node, the families' CRDs established");
    await Promise.all([installNetworkPolicyController(admin, gateway.kubeRouter), startProbes()]);
    await deployControllers(admin, { openkruise: images.openkruiseController.ref, agentSandbox: images.agentSandboxController.ref });
    lap('NetworkPolicy enforced, controllers deployed');
    // The sandboxes come up (and the sleepers pause) while Envoy Gateway and the chart install.
    await Promise.all([
      startSandboxes(),
      installEnvoyGateway(admin, cluster.kubeconfigPath, join(EXAMPLES, 'envoy-gateway/envoy-gateway-values.yaml')),
      installChart(STANDALONE, ['config.minPauseTimeout=1s']),
      installChart(SIDECAR, []),
    ]);
    lap('Envoy Gateway and both releases of the chart installed, sandboxes running or paused');
    const certs = mkdtempSync(join(tmpdir(), 'sbx-eg-tls-'));
    tls = makeServingCert(certs, [`*.${DOMAIN}`]);
    await core.createNamespacedSecret({
      namespace: SYSTEM,
      body: {
        metadata: { name: 'front-door-tls' },
        type: 'kubernetes.io/tls',
        data: { 'tls.crt': readFileSync(tls.cert).toString('base64'), 'tls.key': readFileSync(tls.key).toString('base64') },
      },
    });
    const examples = [
      ...manifest(join(EXAMPLES, 'envoy-gateway/gatewayclass.yaml')),
      ...manifest(join(EXAMPLES, 'envoy-gateway/gateway.yaml')),
      ...manifest(join(EXAMPLES, 'gateway-api/front-door.yaml')),
    ];
    await createAll(admin, examples);
    // Every object of the examples accepted (policies attached, routes resolved), the Gateways programmed.
    await Promise.all(
      examples
        .filter((o) => !['Service', 'EndpointSlice', 'EnvoyProxy'].includes(o.kind as string))
        .map((o) => waitForConditions(admin, o, conditionTypes(o), 3 * MINUTE)),
    );
    await Promise.all([exposeProxies(EDGE_GATEWAY, EDGE_PORT), exposeProxies(FRONT_DOOR_GATEWAY, FRONT_DOOR_PORT)]);
    edge = `http://127.0.0.1:${cluster.hostPort(EDGE_PORT)}`;
    lap('examples applied and accepted, the proxies exposed');
  }, 20 * MINUTE);

  afterAll(async () => {
    // SBX_E2E_KEEP=1 leaves the cluster up to look at (scripts/kind.sh delete cluster --name sbx-eg).
    if (process.env['SBX_E2E_KEEP'] === '1') await Promise.all([cluster?.audit.stop(), cluster?.nft.stop()]);
    else await cluster?.delete();
  }, 5 * MINUTE);

  /** The conditions each kind of the examples reports once it is in effect. */
  function conditionTypes(object: KubernetesObject): string[] {
    switch (object.kind) {
      // Its own Programmed stays False in kind, where no load balancer gives its Service an address
      // (the suite reaches the proxies through a NodePort of its own); each listener's is the one that
      // says the configuration went to the proxies.
      case 'Gateway':
        return ['Accepted', 'listener:Programmed'];
      case 'HTTPRoute':
        return ['Accepted', 'ResolvedRefs'];
      case 'EnvoyPatchPolicy':
        return ['Accepted', 'Programmed'];
      default:
        return ['Accepted'];
    }
  }

  async function installChart(release: { release: string; values: string }, sets: readonly string[]): Promise<void> {
    await helmAsync([
      'install',
      release.release,
      CHART,
      '--kubeconfig',
      cluster.kubeconfigPath,
      '--namespace',
      SYSTEM,
      '-f',
      release.values,
      ...[
        `image.repository=${images.service.repository}`,
        `image.tag=${images.service.tag}`,
        'image.pullPolicy=Never',
        `envoy.image.repository=${images.envoy.repository}`,
        `envoy.image.tag=${images.envoy.tag}`,
        'envoy.image.pullPolicy=Never',
        ...sets,
      ].flatMap((s) => ['--set', s]),
    ]);
    await rolledOut(admin, SYSTEM, `${release.release}-sandbox-extproc`);
  }

  /** The sandbox's pod template: the server, Ready when it listens (or SLOW_READY_S later). */
  function template(slow: boolean): object {
    return {
      metadata: { labels: { app: 'sandbox' } },
      spec: {
        containers: [
          {
            name: 'sandbox',
            image: images.service.ref,
            imagePullPolicy: 'Never',
            command: ['node', '-e', SERVER],
            ports: [{ containerPort: SANDBOX_PORT }],
            readinessProbe: { tcpSocket: { port: SANDBOX_PORT }, periodSeconds: 1, ...(slow ? { initialDelaySeconds: SLOW_READY_S } : {}) },
            securityContext: RESTRICTED,
          },
        ],
      },
    };
  }

  async function createSandbox(
    family: Family,
    name: string,
    options: { wake?: boolean; slow?: boolean; spec?: object } = {},
  ): Promise<void> {
    const body = family.body(name, template(options.slow ?? false), options.wake ?? false) as { spec: object };
    body.spec = { ...body.spec, ...options.spec };
    await custom.createNamespacedCustomObject({
      group: family.group,
      version: family.version,
      plural: family.plural,
      namespace: TENANTS,
      body,
    });
  }

  /** Creates every sandbox, waits until its controller reports it serving, then pauses the sleepers. */
  async function startSandboxes(): Promise<void> {
    await Promise.all([
      ...RUNNING.map(([family, name]) => createSandbox(family, name)),
      ...SLEEPERS.map(([family, name]) => createSandbox(family, name, { wake: true, slow: true })),
    ]);
    await Promise.all(
      [...RUNNING, ...SLEEPERS].map(([family, name]) => sandboxes.waitFor(family, name, family.serving, 3 * MINUTE, 'serving')),
    );
    await Promise.all(
      SLEEPERS.map(async ([family, name]) => {
        await sandboxes.pause(family, name);
        await sandboxes.waitFor(family, name, family.paused, MINUTE, 'paused');
      }),
    );
  }

  /** Resolves with `count` Ready pods matching the selector, by watching them. */
  async function readyPods(namespace: string, labelSelector: string, count: number, timeoutMs = 3 * MINUTE): Promise<V1Pod[]> {
    const pods = new Map<string, V1Pod>();
    await watchUntil(
      admin,
      `/api/v1/namespaces/${namespace}/pods`,
      { labelSelector },
      (type, object) => {
        const pod = object as V1Pod;
        const name = pod.metadata?.name as string;
        // The probes' pods wear a proxy's labels on purpose; they are not Envoy Gateway's.
        if (namespace === PROBES[name as keyof typeof PROBES]?.namespace) return false;
        if (type === 'DELETED' || pod.metadata?.deletionTimestamp) pods.delete(name);
        else pods.set(name, pod);
        const ready = [...pods.values()].filter(
          (p) => p.status?.phase === 'Running' && (p.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length === count && pods.size === count;
      },
      timeoutMs,
      `${count} Ready pods ${labelSelector} in ${namespace}`,
    );
    return [...pods.values()];
  }

  /** The labels Envoy Gateway gives a Gateway's proxy pods. */
  const proxyLabels = (gw: { namespace: string; name: string }) => ({
    'app.kubernetes.io/managed-by': 'envoy-gateway',
    'app.kubernetes.io/component': 'proxy',
    'app.kubernetes.io/name': 'envoy',
    'gateway.envoyproxy.io/owning-gateway-namespace': gw.namespace,
    'gateway.envoyproxy.io/owning-gateway-name': gw.name,
  });

  const proxySelector = (gw: { namespace: string; name: string }) =>
    `gateway.envoyproxy.io/owning-gateway-namespace=${gw.namespace},gateway.envoyproxy.io/owning-gateway-name=${gw.name}`;

  /**
   * A NodePort Service of the suite's in front of a Gateway's proxies, to the container port Envoy
   * Gateway's own Service for them targets, used once kube-proxy has programmed it.
   */
  async function exposeProxies(gw: { namespace: string; name: string }, nodePort: number): Promise<void> {
    const selector = proxySelector(gw);
    let own: V1Service | undefined;
    const [pods] = await Promise.all([
      readyPods(ENVOY_GATEWAY_NAMESPACE, selector, 1),
      watchUntil(
        admin,
        `/api/v1/namespaces/${ENVOY_GATEWAY_NAMESPACE}/services`,
        { labelSelector: selector },
        (_type, object) => {
          own = object as V1Service;
          return true;
        },
        3 * MINUTE,
        `Envoy Gateway's Service for ${gw.name}`,
      ),
    ]);
    const targetPort = own?.spec?.ports?.[0]?.targetPort;
    if (targetPort === undefined) throw new Error(`Envoy Gateway's Service for ${gw.name} has no port`);
    const name = `e2e-${gw.name}`;
    await core.createNamespacedService({
      namespace: ENVOY_GATEWAY_NAMESPACE,
      body: {
        metadata: { name },
        spec: { type: 'NodePort', selector: own?.spec?.selector, ports: [{ port: 80, targetPort, nodePort }] },
      },
    });
    await cluster.waitForServiceEndpoints(
      ENVOY_GATEWAY_NAMESPACE,
      name,
      '',
      pods.map((p) => p.status?.podIP as string),
      MINUTE,
    );
  }

  /** A request over TLS to the front door, for `host` (SNI and Host), trusting only the test's CA. */
  function frontDoor(
    host: string,
    path: string,
    headers: Record<string, string> = {},
    timeoutMs = 10_000,
  ): Promise<HttpResult & { certNames: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: cluster.hostPort(FRONT_DOOR_PORT),
          path,
          servername: host,
          headers: { host, ...headers },
          ca: readFileSync(tls.caCert),
          agent: false,
          timeout: timeoutMs,
        },
        (res) => {
          const certNames = (res.socket as TLSSocket).getPeerCertificate().subjectaltname ?? '';
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T, certNames });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`GET https://${host}${path} timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * The probes' pods, made before the chart and the Gateways: idle, and never Ready (wearing a proxy's
   * labels, one must not become an endpoint of the proxies' Services). NetworkPolicy controllers learn
   * pod addresses from their pod watch, so a pod made just before it connects may be refused only
   * because its address is not known yet; these are older than the proxies, whose requests getting
   * through show that kube-router has synced since (one pod watch, in order), with these addresses known.
   * A policy that admitted them would admit them.
   */
  const PROBES = {
    imposter: { namespace: TENANTS, labels: () => proxyLabels(EDGE_GATEWAY) },
    tenant: { namespace: TENANTS, labels: () => ({ app: 'probe' }) },
    neighbour: { namespace: ENVOY_GATEWAY_NAMESPACE, labels: () => proxyLabels(FRONT_DOOR_GATEWAY) },
  } as const;

  async function startProbes(): Promise<void> {
    const running = Object.entries(PROBES).map(([name, { namespace }]) =>
      watchUntil(
        admin,
        `/api/v1/namespaces/${namespace}/pods`,
        { fieldSelector: `metadata.name=${name}` },
        (_type, object) => (object as V1Pod).status?.phase === 'Running' && Boolean((object as V1Pod).status?.podIP),
        3 * MINUTE,
        `probe ${namespace}/${name} running`,
      ),
    );
    for (const [name, { namespace, labels }] of Object.entries(PROBES)) {
      await core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name, labels: labels() },
          spec: {
            containers: [
              {
                name: 'probe',
                image: images.service.ref,
                imagePullPolicy: 'Never',
                command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'],
                readinessProbe: { tcpSocket: { port: 1 as never }, periodSeconds: 60 },
                securityContext: RESTRICTED,
              },
            ],
          },
        },
      });
    }
    await Promise.all(running);
  }

  /** Runs the probe in one of the probes' pods. */
  async function probe(name: keyof typeof PROBES, targets: { name: string; host: string; port: number }[]) {
    const pod = await core.readNamespacedPod({ namespace: PROBES[name].namespace, name });
    return probeFrom(pod, 'probe', targets);
  }

  /** Runs the probe inside a running container (the service's image carries Node), through the API server. */
  async function probeFrom(pod: V1Pod, container: string, targets: { name: string; host: string; port: number }[]) {
    const script = `process.env.TARGETS = ${JSON.stringify(JSON.stringify(targets))};\n${PROBE}`;
    const result = await podExec(admin, pod.metadata?.namespace as string, pod.metadata?.name as string, container, ['node', '-e', script]);
    expect(result.status, result.out).toBe('Success');
    return JSON.parse(result.out.trim()) as Record<string, string>;
  }

  const pods = async (release: string) =>
    (await core.listNamespacedPod({ namespace: SYSTEM, labelSelector: `app.kubernetes.io/instance=${release}` })).items;

  describe('Envoy Gateway as the edge (examples/envoy-gateway)', () => {
    it("routes each family by its own clients' convention to the pod its controller reports", async () => {
      const asked: [Family, string, Record<string, string>][] = [
        [OPENKRUISE, 'alpha', OPENKRUISE.headers(TENANTS, 'alpha')],
        [OPENKRUISE, 'beta', { host: `${SANDBOX_PORT}-${TENANTS}--beta.${DOMAIN}` }],
        [AGENT_SANDBOX, 'gamma', AGENT_SANDBOX.headers(TENANTS, 'gamma')],
      ];
      for (const [family, name, headers] of asked) {
        const res = await httpGet(`${edge}/hello?via=envoy-gateway`, headers);
        expect(res.status, res.body).toBe(200);
        const address = family.ip(await sandboxes.get(family, name));
        expect(res.json()).toMatchObject({ pod: name, ip: address, path: '/hello?via=envoy-gateway' });
      }
      // An unknown sandbox is answered by the service (its JSON error), not by Envoy Gateway.
      const unknown = await httpGet(`${edge}/`, OPENKRUISE.headers(TENANTS, 'nobody'));
      expect(unknown.status).toBe(502);
      expect(unknown.json()).toMatchObject({ error: 'sandbox_not_found' });
    });

    it('ignores the routing headers a client sets (x-envoy-original-dst-host, x-sandbox-pod-ip), and none reaches a sandbox', async () => {
      const alpha = OPENKRUISE.ip(await sandboxes.get(OPENKRUISE, 'alpha'));
      const gamma = AGENT_SANDBOX.ip(await sandboxes.get(AGENT_SANDBOX, 'gamma'));
      const steering = (ip: string) => ({
        'x-envoy-original-dst-host': `${ip}:${SANDBOX_PORT}`,
        'x-sandbox-pod-ip': ip,
        'x-sandbox-uid': 'someone-else',
      });
      for (const [family, name, own, other] of [
        [OPENKRUISE, 'alpha', alpha, gamma],
        [AGENT_SANDBOX, 'gamma', gamma, alpha],
      ] as const) {
        const res = await httpGet(`${edge}/steer`, { ...family.headers(TENANTS, name), ...steering(other) });
        expect(res.status, res.body).toBe(200);
        const seen = res.json<{ pod: string; ip: string; headers: Record<string, string> }>();
        expect(seen).toMatchObject({ pod: name, ip: own });
        expect(seen.headers['x-envoy-original-dst-host']).toBeUndefined();
        expect(seen.headers['x-sandbox-pod-ip']).toBeUndefined();
        expect(seen.headers['x-sandbox-uid']).toBeUndefined();
      }
      // Naming no sandbox it knows, a request is answered, never sent where the header points.
      const res = await httpGet(`${edge}/steer`, { ...OPENKRUISE.headers(TENANTS, 'nobody'), ...steering(alpha) });
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'sandbox_not_found' });
    });

    it(
      "holds a wake longer than Envoy Gateway's default timeouts, then reaches the new pod",
      async () => {
        const [family, name] = SLEEPERS[0] as [Family, string];
        expect(family.paused(await sandboxes.get(family, name))).toBe(true);
        const started = Date.now();
        const res = await httpGet(`${edge}/woken`, family.headers(TENANTS, name), 2 * MINUTE);
        await expectHeldWake(res, started, family, name, STANDALONE.release);
      },
      3 * MINUTE,
    );

    it(
      'keeps a sandbox awake while a websocket through Envoy Gateway stays open, from the access log alone',
      async () => {
        const name = 'terminal';
        await createSandbox(OPENKRUISE, name, {
          spec: { autoPausePolicy: { resume: { onIngressTraffic: { pauseTimeout: `${PAUSE_TIMEOUT_S}s` } } } },
        });
        await sandboxes.waitFor(OPENKRUISE, name, OPENKRUISE.serving, 3 * MINUTE, 'serving');
        // The pause timer, as E2B sets it: due in PAUSE_TIMEOUT_S, and the controller pauses it then.
        const pauseAt = Math.ceil(Date.now() / 1000) * 1000 + PAUSE_TIMEOUT_S * 1000;
        await custom.patchNamespacedCustomObject(
          {
            group: OPENKRUISE.group,
            version: OPENKRUISE.version,
            plural: OPENKRUISE.plural,
            namespace: TENANTS,
            name,
            body: { spec: { pauseTime: new Date(pauseAt).toISOString().replace(/\.\d{3}Z$/, 'Z') } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        const ip = OPENKRUISE.ip(await sandboxes.get(OPENKRUISE, name));
        const socket = new WebSocket(`ws://127.0.0.1:${cluster.hostPort(EDGE_PORT)}/terminal`, {
          headers: OPENKRUISE.headers(TENANTS, name),
        });
        const upgraded = await new Promise<Record<string, unknown>>((resolve, reject) => {
          socket.once('upgrade', (res) => resolve(res.headers));
          socket.once('error', reject);
        });
        const openedAt = Date.now();
        expect(upgraded).toMatchObject({ 'x-sandbox-pod': name, 'x-sandbox-ip': ip });
        // The upgrade left more than half the timeout on the timer: it wrote nothing. What moves the timer
        // is the access log's entry for the socket, still open, 30 s later.
        const write = await cluster.waitForAudit(
          (e) =>
            e.verb === 'patch' &&
            e.objectRef?.apiGroup === OPENKRUISE.group &&
            e.objectRef.name === name &&
            e.user.username === serviceAccount(STANDALONE.release) &&
            e.responseStatus?.code === 200,
          PAUSE_TIMEOUT_S * 1000,
          `an activity write of ${name} by ${serviceAccount(STANDALONE.release)}`,
        );
        expect(write).toBeDefined();
        expect(Date.now() - openedAt).toBeGreaterThanOrEqual(29_000);
        const moved = (await sandboxes.get(OPENKRUISE, name)) as SandboxObject;
        expect(Date.parse(moved.spec?.pauseTime ?? '')).toBeGreaterThan(pauseAt);
        // Past the time it was due, it is still running, the socket still open.
        const paused = sandboxes.waitFor(OPENKRUISE, name, (o) => isPaused(o as SandboxObject), pauseAt - Date.now() + 5000, 'paused');
        await expect(paused).rejects.toThrow(/not seen within/);
        expect(OPENKRUISE.serving(await sandboxes.get(OPENKRUISE, name))).toBe(true);
        expect(socket.readyState).toBe(WebSocket.OPEN);
        socket.close();
      },
      3 * MINUTE,
    );

    it(
      "its NetworkPolicy admits Envoy Gateway's proxies to the gRPC port, and no other pod, however labelled",
      async () => {
        // Envoy Gateway's proxies get through (the service routes their request), so kube-router has
        // synced with the probes' addresses known (startProbes).
        const routed = await httpGet(`${edge}/admitted`, OPENKRUISE.headers(TENANTS, 'alpha'));
        expect(routed.status, routed.body).toBe(200);
        const targets = (await pods(STANDALONE.release)).flatMap((p) => [
          { name: `${p.metadata?.name}:grpc`, host: p.status?.podIP as string, port: 9002 },
          { name: `${p.metadata?.name}:metrics`, host: p.status?.podIP as string, port: 9003 },
        ]);
        expect(targets).toHaveLength(4);
        // Each port answers: asked from inside each pod, to its own address, where no policy applies.
        for (const pod of await pods(STANDALONE.release)) {
          const own = targets.filter((t) => t.host === pod.status?.podIP);
          expect(await probeFrom(pod, 'sandbox-extproc', own)).toEqual(Object.fromEntries(own.map((t) => [t.name, 'connected'])));
        }
        const [imposter, neighbour] = await Promise.all([
          // A tenant's pod wearing the proxies' labels.
          probe('imposter', targets),
          // A pod of Envoy Gateway's namespace that is not one of this Gateway's proxies: it wears the front door's labels.
          probe('neighbour', targets),
        ]);
        // Refused by the policy (kube-router rejects); the metrics port admits anyone (the chart's default).
        for (const result of [imposter, neighbour])
          for (const target of targets)
            expect(result[target.name], target.name).toBe(target.name.endsWith(':metrics') ? 'connected' : 'refused');
      },
      3 * MINUTE,
    );
  });

  describe('a Gateway API front door with TLS for a wildcard host (examples/gateway-api)', () => {
    it("serves E2B's host form under the wildcard, and the other family by its headers, through the chart's edge", async () => {
      const host = `${SANDBOX_PORT}-${TENANTS}--beta.${DOMAIN}`;
      const byHost = await frontDoor(host, '/by-host');
      expect(byHost.status, byHost.body).toBe(200);
      expect(byHost.certNames).toBe(`DNS:*.${DOMAIN}`);
      expect(byHost.json()).toMatchObject({ pod: 'beta', ip: OPENKRUISE.ip(await sandboxes.get(OPENKRUISE, 'beta')), host });
      const byHeaders = await frontDoor(`api.${DOMAIN}`, '/by-headers', AGENT_SANDBOX.headers(TENANTS, 'gamma'));
      expect(byHeaders.status, byHeaders.body).toBe(200);
      expect(byHeaders.json()).toMatchObject({ pod: 'gamma', ip: AGENT_SANDBOX.ip(await sandboxes.get(AGENT_SANDBOX, 'gamma')) });
      // Outside the wildcard there is no route (and no certificate).
      await expect(frontDoor('elsewhere.example.org', '/')).rejects.toThrow();
    });

    it(
      "holds a wake longer than the front door's default request timeout, through the chart's edge",
      async () => {
        const [family, name] = SLEEPERS[1] as [Family, string];
        expect(family.paused(await sandboxes.get(family, name))).toBe(true);
        const started = Date.now();
        const res = await frontDoor(`api.${DOMAIN}`, '/woken', family.headers(TENANTS, name), 2 * MINUTE);
        await expectHeldWake(res, started, family, name, SIDECAR.release);
      },
      3 * MINUTE,
    );

    it(
      "its NetworkPolicy admits the front door's proxies to the chart's edge, and no tenant pod",
      async () => {
        const admitted = await frontDoor(`${SANDBOX_PORT}-${TENANTS}--beta.${DOMAIN}`, '/admitted');
        expect(admitted.status, admitted.body).toBe(200);
        const targets = (await pods(SIDECAR.release)).flatMap((p) => [
          { name: `${p.metadata?.name}:edge`, host: p.status?.podIP as string, port: 8080 },
          { name: `${p.metadata?.name}:metrics`, host: p.status?.podIP as string, port: 9003 },
        ]);
        expect(targets).toHaveLength(4);
        for (const pod of await pods(SIDECAR.release)) {
          const own = targets.filter((t) => t.host === pod.status?.podIP);
          expect(await probeFrom(pod, 'sandbox-extproc', own)).toEqual(Object.fromEntries(own.map((t) => [t.name, 'connected'])));
        }
        const tenant = await probe('tenant', targets);
        for (const target of targets)
          expect(tenant[target.name], target.name).toBe(target.name.endsWith(':metrics') ? 'connected' : 'refused');
      },
      3 * MINUTE,
    );
  });
});
