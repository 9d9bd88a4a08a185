// The Helm chart, checked by the real helm and the real API server: lint and render in both modes and
// several value sets, apply every rendered object (the API server validates it), then run the service
// as the chart's own ServiceAccount and prove it routes, wakes (OpenKruise's own controller resuming
// the sandbox, kwok's pods), and can do nothing else.
import { readFileSync } from 'node:fs';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Deployment,
  type V1PodSpec,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSandboxController } from '../support/agent-sandbox.ts';
import { Cluster } from '../support/cluster.ts';
import { ControlPlane, RBAC_RULES_FILE, rbacRules } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { CHART, helm, renderChart, type KubeObject } from '../support/helm.ts';
import { GROUP, OpenKruiseController, OpenKruiseSandboxes, PLURAL, podIP, VERSION } from '../support/openkruise.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService } from '../support/service.ts';

const VALUE_SETS: Record<string, Record<string, string>> = {
  sidecar: {},
  standalone: { mode: 'standalone' },
  'watched namespaces': { 'watchNamespaces[0]': 'team-a', 'watchNamespaces[1]': 'team-b' },
  "agent-sandbox's router": {
    'config.sandboxKind': 'agent-sandbox',
    'agentSandboxRouter.enabled': 'true',
    'config.agentSandboxAuthzMode': 'tokenreview',
    'config.agentSandboxPathPrefix': '/router',
  },
  'autoscaled, tuned': {
    'autoscaling.enabled': 'true',
    'config.wakeTimeout': '90s',
    'config.domains': 'sandbox.example.com',
    'config.maxWaiters': '500',
    'podDisruptionBudget.enabled': 'false',
  },
};

let plane: ControlPlane;
let cluster: Cluster | undefined;
let controller: OpenKruiseController | undefined;

beforeAll(async () => {
  plane = await ControlPlane.start({ crds: [...OpenKruiseController.crds(), ...AgentSandboxController.crds()] });
});

afterAll(async () => {
  await controller?.stop();
  await cluster?.stop();
  await plane?.stop();
});

describe('helm lint and template', () => {
  it.each(Object.entries(VALUE_SETS))('lints and renders with %s values', (_name, values) => {
    const sets = Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
    expect(helm(['lint', CHART, '--strict', ...sets])).toContain('0 chart(s) failed');
    expect(renderChart('rel', 'sandbox-system', values).length).toBeGreaterThan(3);
  });

  it('refuses bad values through values.schema.json', () => {
    expect(() => helm(['template', 'rel', CHART, '--set', 'mode=both'])).toThrow(/mode/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'config.wakeTimout=9s'])).toThrow(/wakeTimout/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'config.wakeTimeout=soon'])).toThrow(/wakeTimeout/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'watchNamespaces[0]=Bad_NS'])).toThrow(/watchNamespaces/);
  });

  it('ships envoy/envoy.yaml with only its ports and addresses filled in', () => {
    const cm = renderChart('rel', 'sandbox-system').find((o) => o.kind === 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const template = readFileSync(`${CHART}/../../envoy/envoy.yaml`, 'utf8');
    const rendered = cm.data['envoy.yaml'] as string;
    expect(rendered).not.toMatch(/\$\{[A-Z_]+\}/);
    const tokens = [...template.matchAll(/\$\{[A-Z_]+\}/g)].length;
    expect(tokens).toBeGreaterThan(5);
    expect(rendered.split('\n').length).toBe(template.split('\n').length);
  });

  it('takes its RBAC rules from the one rules file, those of the enabled Sandbox families only, with no wildcard', () => {
    expect(JSON.stringify(parseYaml(readFileSync(RBAC_RULES_FILE, 'utf8')))).not.toContain('*');
    const rulesOf = (values: Record<string, string> = {}) =>
      (renderChart('rel', 'sandbox-system', values).find((o) => o.kind === 'ClusterRole') as KubeObject & { rules: unknown }).rules;
    expect(rulesOf()).toEqual(rbacRules(['openkruise']));
    expect(rulesOf({ 'config.sandboxKind': 'agent-sandbox' })).toEqual(rbacRules(['agent-sandbox']));
    expect(rulesOf({ 'config.sandboxKind': 'openkruise\\,agent-sandbox' })).toEqual(rbacRules(['openkruise', 'agent-sandbox']));
    const namespaced = renderChart('rel', 'sandbox-system', VALUE_SETS['watched namespaces']);
    expect(namespaced.filter((o) => o.kind === 'Role').map((o) => o.metadata.namespace)).toEqual(['team-a', 'team-b']);
    expect(namespaced.some((o) => o.kind === 'ClusterRole')).toBe(false);
  });

  it('runs every container non-root, read-only, without privilege escalation or capabilities', () => {
    const pod = podSpec(renderChart('rel', 'sandbox-system'));
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(pod.containers.map((c) => c.name)).toEqual(['sandbox-extproc']);
    // Envoy is a native sidecar: started first, stopped last (after the service's preStop drained it).
    expect(pod.initContainers?.map((c) => [c.name, c.restartPolicy])).toEqual([['envoy', 'Always']]);
    for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
    }
  });

  it('gives the ServiceAccount token to the sandbox-extproc container only', () => {
    for (const values of [{}, { mode: 'standalone' }] as Record<string, string>[]) {
      const objects = renderChart('rel', 'sandbox-system', values);
      const pod = podSpec(objects);
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(
        (objects.find((o) => o.kind === 'ServiceAccount') as unknown as { automountServiceAccountToken: boolean })
          .automountServiceAccountToken,
      ).toBe(false);
      const tokenVolumes = (pod.volumes ?? []).filter((v) => v.projected?.sources?.some((s) => s.serviceAccountToken)).map((v) => v.name);
      expect(tokenVolumes).toEqual(['kube-api-access']);
      const mountedBy = [...pod.containers, ...(pod.initContainers ?? [])]
        .filter((c) => c.volumeMounts?.some((m) => m.name === 'kube-api-access'))
        .map((c) => c.name);
      expect(mountedBy).toEqual(['sandbox-extproc']);
    }
  });

  it("drains the sidecar Envoy in the service container's preStop hook, before any container is signalled", () => {
    const pod = podSpec(renderChart('rel', 'sandbox-system', { 'envoy.drainSeconds': '7', terminationGracePeriodSeconds: '60' }));
    const service = pod.containers[0];
    const hook = service?.lifecycle?.preStop?.exec?.command ?? [];
    expect(hook.slice(0, 3)).toEqual(['node', '--input-type=module', '-e']);
    expect(hook[3]).toContain('/drain_listeners?graceful');
    expect(hook.slice(4)).toEqual(['9901', '7', '55']);
    const envoy = pod.initContainers?.[0];
    expect(envoy?.lifecycle).toBeUndefined();
    expect(envoy?.args).toEqual(expect.arrayContaining(['--drain-time-s', '7', '--drain-strategy', 'immediate']));
  });

  it('standalone: a headless Service, a NetworkPolicy on the gRPC port, TLS from a Secret', () => {
    const objects = renderChart('rel', 'sandbox-system', {
      mode: 'standalone',
      'grpcTls.secretName': 'extproc-tls',
      'grpcTls.clientCa': 'true',
    });
    const service = objects.find((o) => o.kind === 'Service') as unknown as {
      spec: { clusterIP?: string; ports: { name: string; appProtocol?: string }[] };
    };
    expect(service.spec.clusterIP).toBe('None');
    expect(service.spec.ports.find((p) => p.name === 'grpc')?.appProtocol).toBeUndefined();
    const policy = objects.find((o) => o.kind === 'NetworkPolicy') as unknown as {
      spec: { podSelector: { matchLabels: Record<string, string> }; ingress: { ports: { port: number }[]; from?: unknown[] }[] };
    };
    const pod = podSpec(objects);
    const podLabels = (objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment).spec?.template.metadata?.labels ?? {};
    expect(podLabels).toMatchObject(policy.spec.podSelector.matchLabels);
    const grpcRule = policy.spec.ingress.find((r) => r.ports.some((p) => p.port === 9002));
    // By default the gateway's namespace (here the release's), by the label only the API server sets:
    // never a pod label, which any tenant can put on its own pods.
    expect(grpcRule?.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'sandbox-system' } } }]);
    const elsewhere = renderChart('rel', 'sandbox-system', { mode: 'standalone', 'networkPolicy.gatewayNamespace': 'edge' });
    const elsewherePolicy = elsewhere.find((o) => o.kind === 'NetworkPolicy') as unknown as typeof policy;
    expect(elsewherePolicy.spec.ingress.find((r) => r.ports.some((p) => p.port === 9002))?.from).toEqual([
      { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'edge' } } },
    ]);
    const env = Object.fromEntries((pod.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      SANDBOX_EXTPROC_GRPC_TLS_CERT: '/etc/sandbox-extproc/tls/tls.crt',
      SANDBOX_EXTPROC_GRPC_TLS_KEY: '/etc/sandbox-extproc/tls/tls.key',
      SANDBOX_EXTPROC_GRPC_TLS_CLIENT_CA: '/etc/sandbox-extproc/tls/ca.crt',
      SANDBOX_EXTPROC_DRAIN_DELAY: '5s',
    });
    expect(pod.volumes?.find((v) => v.name === 'grpc-tls')?.secret).toEqual({ secretName: 'extproc-tls', defaultMode: 0o440 });
    expect(pod.containers[0]?.volumeMounts).toContainEqual({ name: 'grpc-tls', mountPath: '/etc/sandbox-extproc/tls', readOnly: true });
    // Sidecar mode: the gRPC port is on localhost; the policy admits the edge and metrics ports only.
    const sidecar = renderChart('rel', 'sandbox-system').find((o) => o.kind === 'NetworkPolicy') as unknown as typeof policy;
    expect(sidecar.spec.ingress.flatMap((r) => r.ports.map((p) => p.port)).sort()).toEqual([8080, 9003]);
  });

  it('refuses values the bundled Envoy or the pod cannot honour, naming them', () => {
    expect(() => renderChart('rel', 'ns', { 'config.metadataNamespace': 'my.ns' })).toThrow(/config\.metadataNamespace: the bundled Envoy/);
    expect(() => renderChart('rel', 'ns', { 'config.metadataKey': 'target' })).toThrow(/config\.metadataKey: the bundled Envoy/);
    expect(() => renderChart('rel', 'ns', { 'grpcTls.secretName': 'x' })).toThrow(/grpcTls\.secretName: in sidecar mode/);
    expect(() => renderChart('rel', 'ns', { 'envoy.streamIdleTimeout': '300s' })).toThrow(
      /envoy\.streamIdleTimeout \(300s\) must be longer/,
    );
    expect(() => renderChart('rel', 'ns', { 'envoy.maxMessageTimeout': '10m' })).toThrow(/envoy\.streamIdleTimeout/);
    expect(() => renderChart('rel', 'ns', { terminationGracePeriodSeconds: '8' })).toThrow(/terminationGracePeriodSeconds/);
    // Standalone: your Envoy reads whatever key you tell the service to write.
    const env = podSpec(
      renderChart('rel', 'ns', { mode: 'standalone', 'config.metadataNamespace': 'my.ns', 'config.metadataKey': 'target' }),
    ).containers[0]?.env;
    expect(env).toEqual(
      expect.arrayContaining([
        { name: 'SANDBOX_EXTPROC_METADATA_NAMESPACE', value: 'my.ns' },
        { name: 'SANDBOX_EXTPROC_METADATA_KEY', value: 'target' },
      ]),
    );
  });

  it("presents the edge as agent-sandbox's router: sandbox-router-svc port 8080, in sidecar mode and behind your own edge", () => {
    const routerService = (objects: KubeObject[]) =>
      objects.find((o) => o.kind === 'Service' && o.metadata.name === 'sandbox-router-svc') as unknown as
        | {
            metadata: { namespace: string };
            spec: { selector: Record<string, string>; ports: { port: number; targetPort: string | number }[] };
          }
        | undefined;
    expect(routerService(renderChart('rel', 'ns', { 'config.sandboxKind': 'agent-sandbox' }))).toBeUndefined();
    const sidecar = renderChart('rel', 'sandbox-team', { 'config.sandboxKind': 'agent-sandbox', 'agentSandboxRouter.enabled': 'true' });
    const service = routerService(sidecar);
    expect(service?.metadata.namespace).toBe('sandbox-team');
    expect(service?.spec.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'edge', protocol: 'TCP' }]);
    // It selects this release's pods, whose Envoy listens on port 8080 (the Go client's tunnel port-forwards
    // to the pod's 8080), and the pods carry app: sandbox-router, which agent-sandbox's SandboxTemplates'
    // NetworkPolicies admit to the sandboxes.
    const pod = (sidecar.find((o) => o.kind === 'Deployment') as unknown as V1Deployment).spec?.template;
    expect(pod?.metadata?.labels).toMatchObject({ ...service?.spec.selector, app: 'sandbox-router' });
    expect(pod?.spec?.initContainers?.[0]?.ports).toEqual([{ name: 'edge', containerPort: 8080 }]);
    expect(() =>
      renderChart('rel', 'ns', { 'config.sandboxKind': 'agent-sandbox', 'agentSandboxRouter.enabled': 'true', 'envoy.port': '9000' }),
    ).toThrow(/envoy\.port must be 8080/);
    expect(() => renderChart('rel', 'ns', { 'agentSandboxRouter.enabled': 'true' })).toThrow(
      /config\.sandboxKind to include agent-sandbox/,
    );
    // Standalone: your edge's pods (the Envoy with the ext_proc filter) are the router.
    const standalone = renderChart('rel', 'ns', {
      mode: 'standalone',
      'config.sandboxKind': 'agent-sandbox',
      'agentSandboxRouter.enabled': 'true',
      'agentSandboxRouter.edgeSelector.app': 'edge-envoy',
      'agentSandboxRouter.edgeTargetPort': '10080',
    });
    expect(routerService(standalone)?.spec).toMatchObject({ selector: { app: 'edge-envoy' }, ports: [{ port: 8080, targetPort: 10080 }] });
    expect(() =>
      renderChart('rel', 'ns', { mode: 'standalone', 'config.sandboxKind': 'agent-sandbox', 'agentSandboxRouter.enabled': 'true' }),
    ).toThrow(/agentSandboxRouter\.edgeSelector/);
    // A fixed name for the release's objects (their suite waits for a Deployment named sandbox-router-deployment).
    const named = renderChart('rel', 'ns', { fullnameOverride: 'sandbox-router-deployment' });
    expect(named.find((o) => o.kind === 'Deployment')?.metadata.name).toBe('sandbox-router-deployment');
  });

  it('grants create on tokenreviews only while the tokenreview authorization is on, and mounts the scoped-token secret for the service only', () => {
    const clusterRoles = (values: Record<string, string>) =>
      renderChart('rel', 'ns', { 'config.sandboxKind': 'agent-sandbox', ...values }).filter((o) => o.kind === 'ClusterRole') as unknown as {
        metadata: { name: string };
        rules: unknown;
      }[];
    expect(clusterRoles({}).map((r) => r.metadata.name)).toEqual(['rel-sandbox-extproc']);
    const withReview = clusterRoles({ 'config.agentSandboxAuthzMode': 'tokenreview' });
    expect(withReview.map((r) => r.metadata.name)).toEqual(['rel-sandbox-extproc', 'rel-sandbox-extproc-tokenreview']);
    expect(withReview[1]?.rules).toEqual(rbacRules(['agent-sandbox-tokenreview']));
    // Cluster-scoped, so cluster-wide even when only some namespaces are watched.
    const namespaced = renderChart('rel', 'ns', {
      'config.sandboxKind': 'agent-sandbox',
      'config.agentSandboxAuthzMode': 'tokenreview',
      'watchNamespaces[0]': 'team-a',
    });
    expect(namespaced.filter((o) => o.kind === 'ClusterRoleBinding').map((o) => o.metadata.name)).toEqual([
      'rel-sandbox-extproc-tokenreview',
    ]);
    const scoped = podSpec(
      renderChart('rel', 'ns', {
        'config.sandboxKind': 'agent-sandbox',
        'config.agentSandboxAuthzMode': 'scoped-token',
        'agentSandboxRouter.scopedTokenSecret.name': 'router-secret',
      }),
    );
    expect(scoped.volumes?.find((v) => v.name === 'scoped-token')?.secret).toEqual({
      secretName: 'router-secret',
      items: [{ key: 'secret', path: 'secret' }],
      defaultMode: 0o440,
    });
    expect(scoped.containers[0]?.env).toContainEqual({
      name: 'SANDBOX_EXTPROC_AGENT_SANDBOX_AUTHZ_SCOPED_TOKEN_SECRET_FILE',
      value: '/etc/sandbox-extproc/scoped-token/secret',
    });
    expect(scoped.initContainers?.[0]?.volumeMounts?.some((m) => m.name === 'scoped-token')).toBe(false);
    expect(() =>
      renderChart('rel', 'ns', { 'config.sandboxKind': 'agent-sandbox', 'config.agentSandboxAuthzMode': 'scoped-token' }),
    ).toThrow(/scopedTokenSecret\.name/);
  });

  it('renders the edge listener limits into the Envoy config', () => {
    const cm = renderChart('rel', 'ns', {
      'envoy.requestHeadersTimeout': '7s',
      'envoy.streamIdleTimeout': '400s',
      'envoy.websocketIdleTimeout': '2h',
      'envoy.maxConnections': '1234',
      'envoy.xffNumTrustedHops': '2',
    }).find((o) => o.kind === 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const config = parseYaml(cm.data['envoy.yaml'] as string) as EnvoyBootstrap;
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    expect(hcm).toMatchObject({
      request_headers_timeout: '7s',
      stream_idle_timeout: '400s',
      use_remote_address: true,
      xff_num_trusted_hops: 2,
    });
    expect(hcm.route_config.virtual_hosts[0].routes[1].route.idle_timeout).toBe('2h');
    expect(config.overload_manager.resource_monitors[0].typed_config.max_active_downstream_connections).toBe(1234);
    expect(JSON.stringify(hcm.access_log)).toContain('%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%');
  });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type EnvoyBootstrap = any;

function podSpec(objects: KubeObject[]): V1PodSpec {
  const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment;
  return deployment.spec?.template.spec as V1PodSpec;
}

describe('on the real API server', () => {
  // The release the ServiceAccount test runs as. A running API server puts a new
  // ValidatingAdmissionPolicy into effect about a second later (its policy source refreshes on a timer,
  // with no event to wait on); a starting one loads its policies before it serves. So: create, restart.
  beforeAll(async () => {
    await plane.ensureNamespace('sandbox-system');
    await plane.ensureNamespace('tenants');
    const api = KubernetesObjectApi.makeApiClient(plane.admin);
    for (const object of renderChart('edge', 'sandbox-system', { 'watchNamespaces[0]': 'tenants' })) await api.create(object as never);
    await plane.ensureNamespace('as-system');
    await plane.ensureNamespace('as-tenants');
    await plane.ensureNamespace('as-idle');
    for (const object of renderChart('as', 'as-system', {
      'watchNamespaces[0]': 'as-tenants',
      'watchNamespaces[1]': 'as-idle',
      'config.sandboxKind': 'agent-sandbox',
      'config.idleTimeout': '10m',
      'config.idleNamespaces': 'as-idle',
    })) {
      await api.create(object as never);
    }
    await plane.stopApiserver();
    await plane.startApiserver();
    cluster = await Cluster.start(plane);
    controller = await OpenKruiseController.start(plane);
  });

  it.each(Object.entries(VALUE_SETS))('accepts every object rendered with %s values', async (name, values) => {
    const namespace = `chart-${name.replace(/[^a-z]+/g, '-')}`.replace(/-$/, '');
    await plane.ensureNamespace(namespace);
    for (const ns of values['watchNamespaces[0]'] ? ['team-a', 'team-b'] : []) await plane.ensureNamespace(ns);
    const api = KubernetesObjectApi.makeApiClient(plane.admin);
    const release = `r${Object.keys(VALUE_SETS).indexOf(name)}`;
    for (const object of renderChart(release, namespace, values)) {
      await expect(api.create(object as never), `${object.kind}/${object.metadata.name}`).resolves.toBeDefined();
    }
  });

  it("runs the service as the chart's ServiceAccount: it routes and wakes, and can do nothing else", async () => {
    const namespace = 'sandbox-system';
    const sandboxes = 'tenants';
    const kubeconfig = await plane.kubeconfigFor(namespace, 'edge-sandbox-extproc');

    const admin = new OpenKruiseSandboxes(plane, cluster as Cluster);
    const [live] = await Promise.all([
      admin.create({ namespace: sandboxes, name: 'live' }),
      admin.create({ namespace: sandboxes, name: 'napping', paused: true, wake: { by: 'policy' } }),
      admin.create({ namespace: sandboxes, name: 'timed', pauseTime: '2040-01-01T00:00:00Z' }),
    ]);
    const service = await startService(['--kubeconfig', kubeconfig, '--namespaces', sandboxes]);
    const client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
    try {
      await waitForRoute(service.app.registry, `${sandboxes}--napping`, (r) => r?.state === 'paused');
      const ask = async (id: string, answers: number) =>
        (
          await client.exchange([{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }], {
            closeAfter: answers,
          })
        ).responses;
      expect(JSON.stringify((await ask(`${sandboxes}--live`, 1))[0]?.dynamic_metadata)).toContain(`${podIP(live)}:49983`);
      // A wake answers twice: the timer extension, then the forward, to the new pod.
      const woken = await ask(`${sandboxes}--napping`, 2);
      expect(JSON.stringify(woken[1]?.dynamic_metadata)).toContain(`${podIP(await admin.get(sandboxes, 'napping'))}:49983`);

      const identity = new KubeConfig();
      identity.loadFromFile(kubeconfig);
      const custom = identity.makeApiClient(CustomObjectsApi);
      const core = identity.makeApiClient(CoreV1Api);
      const target = { group: GROUP, version: VERSION, plural: PLURAL, namespace: sandboxes };
      const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
      await expect(core.listNamespacedSecret({ namespace: sandboxes })).rejects.toMatchObject({ code: 403 });
      await expect(core.listNamespacedSecret({ namespace })).rejects.toMatchObject({ code: 403 });
      await expect(custom.listNamespacedCustomObject({ ...target, namespace: 'default' })).rejects.toMatchObject({ code: 403 });
      await expect(
        custom.createNamespacedCustomObject({
          ...target,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Sandbox', metadata: { name: 'x' } },
        }),
      ).rejects.toMatchObject({ code: 403 });
      await expect(custom.deleteNamespacedCustomObject({ ...target, name: 'live' })).rejects.toMatchObject({ code: 403 });
      await expect(
        custom.patchNamespacedCustomObjectStatus({ ...target, name: 'live', body: { status: { phase: 'Failed' } } }, merge),
      ).rejects.toMatchObject({ code: 403 });
      // No get: the service lists and watches, it never reads one sandbox by name.
      await expect(custom.getNamespacedCustomObject({ ...target, name: 'live' })).rejects.toMatchObject({ code: 403 });

      // The chart's ValidatingAdmissionPolicy (created with the other objects above): the patch verb
      // reaches only what a wake and activity write. The wake above passed it; these do not.
      const patch = (name: string, body: object) => custom.patchNamespacedCustomObject({ ...target, name, body }, merge);
      const refused = async (name: string, body: object, message: RegExp) => {
        const error = (await patch(name, body).then(
          () => undefined,
          (e: unknown) => e,
        )) as { code?: number; body?: string } | undefined;
        expect(error, JSON.stringify(body)).toMatchObject({ code: 403 });
        expect(error?.body).toMatch(message);
      };
      await refused('live', { spec: { paused: true } }, /may resume a sandbox, never pause one/);
      await refused('live', { metadata: { labels: { 'agents.kruise.io/sandbox-id': 'someone-else' } } }, /labels, annotations/);
      await refused('live', { metadata: { annotations: { 'agents.kruise.io/runtime-access-token': 'mine' } } }, /labels, annotations/);
      await refused(
        'napping',
        { spec: { autoPausePolicy: { resume: { onIngressTraffic: { pauseTimeout: '1s' } } } } },
        /only spec\.paused/,
      );
      await refused('live', { spec: { shutdownTime: '2030-01-01T00:00:00Z' } }, /only push spec\.shutdownTime later/);
      // pauseTime only later (a past one would make the controller pause it: "never pause one"), and
      // never added, except in the resume itself, which re-arms or clears it.
      await refused('live', { spec: { pauseTime: '2030-01-01T00:00:00Z' } }, /only push spec\.pauseTime later/);
      await expect(patch('timed', { spec: { pauseTime: '2041-01-01T00:00:00Z' } })).resolves.toBeDefined();
      await refused('timed', { spec: { pauseTime: '2020-01-01T00:00:00Z' } }, /only push spec\.pauseTime later/);
      await refused('timed', { spec: { pauseTime: null } }, /only push spec\.pauseTime later/);
      // Anyone else (here the admin) is not held to it.
      await expect(admin.pause(sandboxes, 'live')).resolves.toBeDefined();
    } finally {
      client.close();
      await service.stop();
    }
  });

  it('agent-sandbox: the admission policy lets the ServiceAccount resume, suspend only what opted in to idle suspension, and nothing else', async () => {
    const target = { group: 'agents.x-k8s.io', version: 'v1beta1', plural: 'sandboxes', namespace: 'as-tenants' };
    const admin = plane.admin.makeApiClient(CustomObjectsApi);
    const create = (namespace: string, name: string, annotations: Record<string, string>, operatingMode = 'Suspended') =>
      admin.createNamespacedCustomObject({
        ...target,
        namespace,
        body: {
          apiVersion: 'agents.x-k8s.io/v1beta1',
          kind: 'Sandbox',
          metadata: { name, annotations },
          spec: { operatingMode, podTemplate: { spec: { containers: [{ name: 'c', image: 'c' }] } } },
        },
      });
    await create('as-tenants', 'box', { owner: 'team' });
    await create('as-tenants', 'idler', { 'sandbox-extproc.io/idle-timeout': '5m' }, 'Running');
    await create('as-idle', 'defaulted', {}, 'Running');
    const identity = new KubeConfig();
    identity.loadFromFile(await plane.kubeconfigFor('as-system', 'as-sandbox-extproc'));
    const custom = identity.makeApiClient(CustomObjectsApi);
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const patch = (body: object) => custom.patchNamespacedCustomObject({ ...target, name: 'box', body }, merge);
    const refused = async (body: object, message: RegExp) => {
      const error = (await patch(body).then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: number; body?: string } | undefined;
      expect(error, JSON.stringify(body)).toMatchObject({ code: 403 });
      expect(error?.body).toMatch(message);
    };
    // What the service writes: the resume.
    await expect(patch({ spec: { operatingMode: 'Running' } })).resolves.toBeDefined();
    // An idle suspension, with its records, of a Sandbox that opted in (its own annotation, or the
    // release's default for its namespace); never of one that did not.
    const idle = {
      'sandbox-extproc.io/idle-suspended-at': '2030-01-01T00:00:00Z',
      'sandbox-extproc.io/last-activity': '2030-01-01T00:00:00Z',
    };
    const suspend = (namespace: string, name: string) =>
      custom.patchNamespacedCustomObject(
        { ...target, namespace, name, body: { metadata: { annotations: idle }, spec: { operatingMode: 'Suspended' } } },
        merge,
      );
    await expect(suspend('as-tenants', 'idler')).resolves.toBeDefined();
    await expect(suspend('as-idle', 'defaulted')).resolves.toBeDefined();
    await refused({ spec: { operatingMode: 'Suspended' } }, /suspend only one opted in to idle suspension/);
    await refused({ spec: { shutdownPolicy: 'Delete' } }, /only spec\.operatingMode and spec\.replicas/);
    await refused({ metadata: { annotations: { owner: 'me' } } }, /only its own records/);
    await refused({ metadata: { annotations: { 'sandbox-extproc.io/idle-timeout': '1s' } } }, /only its own records/);
    await refused({ metadata: { labels: { 'agents.x-k8s.io/warm-pool-sandbox': 'x' } } }, /no label/);
  });
});
