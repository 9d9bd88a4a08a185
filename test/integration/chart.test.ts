// The Helm chart, checked by the real helm and the real API server: lint and render in both modes and
// several value sets, apply every rendered object (the API server validates it), then run the service
// as the chart's own ServiceAccount and prove it routes, wakes (OpenKruise's own controller resuming
// the sandbox, kwok's pods), and can do nothing else.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
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
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentSandboxController } from '../support/agent-sandbox.ts';
import { Cluster } from '../support/cluster.ts';
import { ControlPlane, RBAC_RULES_FILE, rbacRules } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { CHART, helm, renderChart, type KubeObject } from '../support/helm.ts';
import { configEnv } from '../../scripts/chart-schema.ts';
import { envOf, SETTINGS } from '../../src/config/settings.ts';
import { GROUP, OpenKruiseController, OpenKruiseSandboxes, PLURAL, podIP, VERSION } from '../support/openkruise.ts';
import { freePort } from '../support/ports.ts';
import { TestProcess } from '../support/process.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startService } from '../support/service.ts';
import { toolPath } from '../support/tools.ts';

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

  it('ships envoy/envoy.yaml with only its ports and addresses filled in, and the stats listener added', () => {
    const cm = renderChart('rel', 'sandbox-system').find((o) => o.kind === 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const template = readFileSync(`${CHART}/../../envoy/envoy.yaml`, 'utf8');
    const stats = readFileSync(`${CHART}/files/envoy-stats.yaml`, 'utf8');
    const rendered = cm.data['envoy.yaml'] as string;
    expect(rendered).not.toMatch(/\$\{[A-Z_]+\}/);
    const tokens = [...template.matchAll(/\$\{[A-Z_]+\}/g)].length;
    expect(tokens).toBeGreaterThan(5);
    // The stats file's separator line is not rendered.
    expect(rendered.split('\n').length).toBe(template.split('\n').length + stats.split('\n').length - 2);
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
    // 9102: Envoy's own statistics (envoy.statsPort), admitted as the metrics port is.
    expect([...new Set(sidecar.spec.ingress.flatMap((r) => r.ports.map((p) => p.port)))].sort()).toEqual([8080, 9003, 9102]);
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
    // The Go client port-forwards to 8080 of the pod: the edge listens there (Envoy's statistics beside it).
    expect(pod?.spec?.initContainers?.[0]?.ports).toEqual([
      { name: 'edge', containerPort: 8080 },
      { name: 'envoy-metrics', containerPort: 9102 },
    ]);
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

// Issue 28: what operators expect of a chart (the conventions of well-kept charts).
describe('operators’ conventions', () => {
  const deploymentOf = (objects: KubeObject[]) => objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment;
  type ServiceObject = {
    metadata: { name: string; labels: Record<string, string> };
    spec: Record<string, unknown> & { ports: { name: string; port: number; targetPort: string }[]; selector: Record<string, string> };
  };
  /** The edge (sidecar) or gRPC (standalone) Service: the one not named -metrics. */
  const serviceOf = (objects: KubeObject[]) =>
    objects.find((o) => o.kind === 'Service' && !o.metadata.name.endsWith('-metrics')) as unknown as ServiceObject;
  const metricsServiceOf = (objects: KubeObject[]) =>
    objects.find((o) => o.kind === 'Service' && o.metadata.name.endsWith('-metrics')) as unknown as ServiceObject;
  const testPodOf = (objects: KubeObject[]) =>
    objects.find((o) => o.kind === 'Pod') as unknown as { metadata: { labels: Record<string, string> }; spec: V1PodSpec };

  it('renders as a subchart of a parent chart that sets global values (helm/helm#10392)', () => {
    const parent = mkdtempSync(join(tmpdir(), 'sbx-parent-chart-'));
    writeFileSync(
      join(parent, 'Chart.yaml'),
      'apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies: [{ name: sandbox-extproc, version: 0.1.0 }]\n',
    );
    writeFileSync(
      join(parent, 'values.yaml'),
      'global:\n  imageRegistry: registry.internal\n  team: sandboxes\nsandbox-extproc:\n  replicaCount: 3\n',
    );
    cpSync(CHART, join(parent, 'charts', 'sandbox-extproc'), { recursive: true });
    const objects = parseAllDocuments(helm(['template', 'rel', parent, '--namespace', 'platform']))
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => o !== null);
    const deployment = deploymentOf(objects);
    expect(deployment.spec?.replicas).toBe(3);
    expect(deployment.spec?.template.spec?.containers[0]?.image).toBe('registry.internal/sandbox-extproc:0.1.0');
    expect(deployment.spec?.template.spec?.initContainers?.[0]?.image).toBe('registry.internal/envoyproxy/envoy:v1.40.0');
    expect(helm(['lint', parent, '--strict', '--with-subcharts'])).toContain('0 chart(s) failed');
  });

  it('takes nameOverride and fullnameOverride for every object’s name', () => {
    expect(serviceOf(renderChart('rel', 'ns', { nameOverride: 'edge' })).metadata.name).toBe('rel-edge');
    const objects = renderChart('rel', 'ns', { fullnameOverride: 'sandbox-edge' });
    expect(serviceOf(objects).metadata.name).toBe('sandbox-edge');
    expect(deploymentOf(objects).metadata?.name).toBe('sandbox-edge');
  });

  it('pulls by digest when image.digest is set, from global.imageRegistry when set', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const pod = podSpec(renderChart('rel', 'ns', { 'image.digest': digest, 'global.imageRegistry': 'mirror.local:5000' }));
    expect(pod.containers[0]?.image).toBe(`mirror.local:5000/sandbox-extproc@${digest}`);
    expect(() => renderChart('rel', 'ns', { 'image.digest': 'latest' })).toThrow(/digest/);
  });

  it('places pods: priorityClassName, a default anti-affinity and zone spread, each replaced by the user’s own', () => {
    const pod = podSpec(renderChart('rel', 'ns', { priorityClassName: 'system-cluster-critical' }));
    expect(pod.priorityClassName).toBe('system-cluster-critical');
    expect(pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm.topologyKey).toBe(
      'kubernetes.io/hostname',
    );
    expect(pod.topologySpreadConstraints?.[0]).toMatchObject({
      topologyKey: 'topology.kubernetes.io/zone',
      whenUnsatisfiable: 'ScheduleAnyway',
    });
    const hard = podSpec(renderChart('rel', 'ns', { podAntiAffinity: 'hard' }));
    expect(hard.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution).toHaveLength(1);
    expect(podSpec(renderChart('rel', 'ns', { podAntiAffinity: 'none' })).affinity).toBeUndefined();
    const own = podSpec(
      renderChart('rel', 'ns', {
        'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key': 'edge',
        'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator': 'Exists',
        'topologySpreadConstraints[0].maxSkew': '2',
        'topologySpreadConstraints[0].topologyKey': 'kubernetes.io/hostname',
        'topologySpreadConstraints[0].whenUnsatisfiable': 'DoNotSchedule',
      }),
    );
    expect(own.affinity?.podAntiAffinity).toBeUndefined();
    expect(own.topologySpreadConstraints).toEqual([
      { maxSkew: 2, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'DoNotSchedule' },
    ]);
  });

  it('adds extraEnv, extraEnvFrom, extraVolumes and extraVolumeMounts to the service container', () => {
    const pod = podSpec(
      renderChart('rel', 'ns', {
        'extraEnv[0].name': 'NODE_OPTIONS',
        'extraEnv[0].value': '--enable-source-maps',
        'extraEnvFrom[0].secretRef.name': 'proxy-settings',
        'extraVolumes[0].name': 'ca',
        'extraVolumes[0].configMap.name': 'corporate-ca',
        'extraVolumeMounts[0].name': 'ca',
        'extraVolumeMounts[0].mountPath': '/etc/ca',
      }),
    );
    const container = pod.containers[0];
    expect(container?.env).toContainEqual({ name: 'NODE_OPTIONS', value: '--enable-source-maps' });
    expect(container?.envFrom).toEqual([{ secretRef: { name: 'proxy-settings' } }]);
    expect(pod.volumes).toContainEqual({ name: 'ca', configMap: { name: 'corporate-ca' } });
    expect(container?.volumeMounts).toContainEqual({ name: 'ca', mountPath: '/etc/ca' });
  });

  it('sets the Service’s externalTrafficPolicy and loadBalancerClass', () => {
    const spec = serviceOf(
      renderChart('rel', 'ns', {
        'service.type': 'LoadBalancer',
        'service.externalTrafficPolicy': 'Local',
        'service.loadBalancerClass': 'example.com/lb',
      }),
    ).spec;
    expect([spec['type'], spec['externalTrafficPolicy'], spec['loadBalancerClass']]).toEqual(['LoadBalancer', 'Local', 'example.com/lb']);
    expect(serviceOf(renderChart('rel', 'ns')).spec['externalTrafficPolicy']).toBeUndefined();
  });

  it('sets Envoy’s log level and worker threads', () => {
    const envoy = podSpec(renderChart('rel', 'ns', { 'envoy.logLevel': 'warning', 'envoy.concurrency': '2' })).initContainers?.[0];
    expect(envoy?.args?.join(' ')).toContain('--log-level warning --concurrency 2');
    expect(podSpec(renderChart('rel', 'ns')).initContainers?.[0]?.args).not.toContain('--concurrency');
  });

  it('restricts pod IPs to the pod network given as podCIDR (--upstream-cidrs), and refuses it twice', () => {
    const env = podSpec(renderChart('rel', 'ns', { podCIDR: '10.244.0.0/16' })).containers[0]?.env;
    expect(env).toContainEqual({ name: 'SANDBOX_EXTPROC_UPSTREAM_CIDRS', value: '10.244.0.0/16' });
    expect(() => renderChart('rel', 'ns', { podCIDR: '10.244.0.0/16', 'config.upstreamCidrs': '10.0.0.0/8' })).toThrow(
      /podCIDR and config.upstreamCidrs/,
    );
  });

  it('maps config names to the service’s variables, the E2B port under its new name and its alias', () => {
    const env = podSpec(renderChart('rel', 'ns', { 'config.e2bDefaultPort': '8080', 'config.tracingEndpoint': 'http://otel:4318' }))
      .containers[0]?.env;
    expect(env).toContainEqual({ name: 'SANDBOX_EXTPROC_E2B_DEFAULT_PORT', value: '8080' });
    expect(env).toContainEqual({ name: 'SANDBOX_EXTPROC_TRACING_ENDPOINT', value: 'http://otel:4318' });
    const alias = podSpec(renderChart('rel', 'ns', { 'config.defaultPort': '8081' })).containers[0]?.env;
    expect(alias).toContainEqual({ name: 'SANDBOX_EXTPROC_DEFAULT_PORT', value: '8081' });
  });

  it('exposes Envoy’s own statistics in sidecar mode: the metrics Service, the ServiceMonitor and the NetworkPolicy', () => {
    const objects = renderChart('rel', 'ns', { 'serviceMonitor.enabled': 'true' });
    const metrics = metricsServiceOf(objects);
    expect(metrics.metadata.name).toBe('rel-sandbox-extproc-metrics');
    expect(metrics.spec.ports).toEqual([
      { name: 'http-metrics', port: 9003, targetPort: 'http-metrics' },
      { name: 'envoy-metrics', port: 9102, targetPort: 'envoy-metrics' },
    ]);
    const monitor = objects.find((o) => o.kind === 'ServiceMonitor') as unknown as {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] };
    };
    expect(monitor.spec.endpoints.map((e) => [e.port, e.path])).toEqual([
      ['http-metrics', '/metrics'],
      ['envoy-metrics', '/stats/prometheus'],
    ]);
    // The ServiceMonitor selects the metrics Service, not the edge one.
    const selects = (service: ServiceObject) =>
      Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels[k] === v);
    expect([selects(metrics), selects(serviceOf(objects))]).toEqual([true, false]);
    const policy = objects.find((o) => o.kind === 'NetworkPolicy') as unknown as { spec: { ingress: { ports: { port: number }[] }[] } };
    expect(policy.spec.ingress.flatMap((i) => i.ports.map((p) => p.port))).toContain(9102);
    const standalone = renderChart('rel', 'ns', { mode: 'standalone', 'serviceMonitor.enabled': 'true' });
    expect(metricsServiceOf(standalone).spec.ports.map((p) => p.name)).toEqual(['http-metrics']);
    expect(serviceOf(standalone).spec.ports.map((p) => p.name)).toEqual(['grpc']);
  });

  // Review of issue 28: the stats listener shared the edge's global connection limit, so a flood that
  // filled it cut Prometheus off from the statistics that would show it; and it had no limit of its own.
  // The real Envoy runs the rendered sidecar config, its edge limit at one connection.
  it('keeps Envoy’s statistics reachable when the edge is at its connection limit, within a limit of their own', async () => {
    const [port, statsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const cm = renderChart('rel', 'ns', {
      'envoy.port': String(port),
      'envoy.statsPort': String(statsPort),
      'envoy.adminPort': String(adminPort),
      'envoy.maxConnections': '1',
    }).find((o) => o.kind === 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const config = parseYaml(cm.data['envoy.yaml'] as string) as EnvoyBootstrap;
    const stats = (config.static_resources.listeners as EnvoyBootstrap[]).find((l) => l.name === 'stats');
    expect(stats.ignore_global_conn_limit).toBe(true);
    const filters = stats.filter_chains[0].filters as EnvoyBootstrap[];
    expect(filters.map((f) => f.name)).toEqual(['envoy.filters.network.connection_limit', 'envoy.filters.network.http_connection_manager']);
    const limit = filters[0].typed_config.max_connections as number;
    expect(limit).toBeGreaterThanOrEqual(4); // a few scrapers (an HA pair of Prometheus, a person with curl)

    const file = join(mkdtempSync(join(tmpdir(), 'sbx-chart-envoy-')), 'envoy.yaml');
    writeFileSync(file, cm.data['envoy.yaml'] as string);
    const envoy = new TestProcess('envoy', toolPath('SBX_ENVOY'), ['-c', file, '--disable-hot-restart', '--concurrency', '1']);
    const sockets: Socket[] = [];
    /** A TCP connection, once connected; `closed` resolves when Envoy closes it. */
    const open = (to: number) =>
      new Promise<{ socket: Socket; closed: Promise<void> }>((resolve, reject) => {
        const socket = connect(to, '127.0.0.1');
        sockets.push(socket);
        const closed = new Promise<void>((done) => socket.once('close', () => done()));
        socket.once('error', reject);
        socket.once('connect', () => resolve({ socket, closed }));
      });
    /** GET over a connection of its own, read until Envoy closes it (its count is down by then). */
    const get = async (to: number, path: string) => {
      const { socket, closed } = await open(to);
      let text = '';
      socket.setEncoding('utf8').on('data', (d: string) => (text += d));
      socket.write(`GET ${path} HTTP/1.1\r\nhost: stats\r\nconnection: close\r\n\r\n`);
      await closed;
      return text;
    };
    const within = <T>(what: string, promise: Promise<T>) =>
      Promise.race([
        promise,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within 10 s`)), 10_000).unref()),
      ]);
    try {
      await envoy.waitForLine(/starting main dispatch loop/, 30_000);
      // One open edge connection fills the edge's limit: the next is closed at once.
      await open(port);
      await within('a second edge connection closed', (await open(port)).closed);
      const scrape = await within('a scrape', get(statsPort, '/stats/prometheus'));
      expect(scrape).toMatch(/^HTTP\/1\.1 200/);
      expect(scrape).toContain('envoy_listener_downstream_global_cx_overflow');
      // Past its own limit the stats listener closes new connections, those before it stay open.
      const held = [];
      for (let i = 0; i < limit; i++) held.push(await open(statsPort));
      await within('the connection past the stats limit closed', (await open(statsPort)).closed);
      expect(held.filter((c) => c.socket.destroyed)).toEqual([]);
      const admin = await fetch(
        `http://127.0.0.1:${adminPort}/stats?filter=${encodeURIComponent('^connection_limit\\.stats\\.limited_connections$')}`,
      );
      expect(await admin.text()).toMatch(/: 1\s*$/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await envoy.stop();
    }
  });

  // Review of issue 28: the edge Service carried 9102 and 9003, so a LoadBalancer or NodePort edge
  // published Envoy's statistics and the service's metrics to whoever reaches the edge.
  it.each(['LoadBalancer', 'NodePort'])(
    'publishes only the edge port on an edge Service of type %s; metrics stay on a ClusterIP Service',
    (type) => {
      const objects = renderChart('rel', 'ns', { 'service.type': type });
      expect(serviceOf(objects).spec['type']).toBe(type);
      expect(serviceOf(objects).spec.ports.map((p) => p.name)).toEqual(['http']);
      expect(metricsServiceOf(objects).spec['type']).toBe('ClusterIP');
      expect(metricsServiceOf(objects).spec.selector).toEqual(serviceOf(objects).spec.selector);
    },
  );

  // Review of issue 28: with service links on, a release named sandbox-extproc (Services sandbox-extproc
  // and sandbox-extproc-metrics) gave the pod SANDBOX_EXTPROC_SERVICE_HOST, _PORT, _PORT_80_TCP...,
  // which the service refused as unknown settings: it never started.
  it('turns service links off for the pods of a release named sandbox-extproc (their variables would share the service’s prefix)', () => {
    const objects = renderChart('sandbox-extproc', 'ns');
    expect(objects.filter((o) => o.kind === 'Service').map((o) => o.metadata.name)).toEqual(['sandbox-extproc', 'sandbox-extproc-metrics']);
    expect(podSpec(objects).enableServiceLinks).toBe(false);
    expect(testPodOf(objects).spec.enableServiceLinks).toBe(false);
  });

  // Review of issue 28: Kubernetes keeps the last of two variables of one name, so an extraEnv entry
  // silently replaced what the chart sets (the gRPC listener, podCIDR's networks, the sidecar's
  // metadata key).
  it('refuses SANDBOX_EXTPROC_* variables in extraEnv, pointing to the value that sets each', () => {
    const refuse = (name: string) => () => renderChart('rel', 'ns', { 'extraEnv[0].name': name, 'extraEnv[0].value': 'x' });
    expect(refuse('SANDBOX_EXTPROC_UPSTREAM_CIDRS')).toThrow(
      /extraEnv: SANDBOX_EXTPROC_UPSTREAM_CIDRS is a setting: set config\.upstreamCidrs/,
    );
    expect(refuse('SANDBOX_EXTPROC_METADATA_KEY')).toThrow(/set config\.metadataKey/);
    expect(refuse('SANDBOX_EXTPROC_WAKE_TIMEOUT')).toThrow(/set config\.wakeTimeout/);
    expect(refuse('SANDBOX_EXTPROC_GRPC_PORT')).toThrow(/extraEnv: SANDBOX_EXTPROC_GRPC_PORT is set by the chart from service\.grpcPort/);
    expect(refuse('SANDBOX_EXTPROC_GRPC_HOST')).toThrow(/SANDBOX_EXTPROC_GRPC_HOST is set by the chart from mode/);
    expect(refuse('SANDBOX_EXTPROC_WAKE_TIMOUT')).toThrow(/extraEnv: SANDBOX_EXTPROC_WAKE_TIMOUT: .*config\.<name>/);
    expect(
      podSpec(renderChart('rel', 'ns', { 'extraEnv[0].name': 'NODE_OPTIONS', 'extraEnv[0].value': '--enable-source-maps' })).containers[0]
        ?.env,
    ).toContainEqual({
      name: 'NODE_OPTIONS',
      value: '--enable-source-maps',
    });
  });

  // Review of issue 28: the test Pod carried the selector labels (so the Service, the PDB and the
  // NetworkPolicy took it for a replica), and with metricsFrom or edgeFrom set the NetworkPolicy did
  // not admit it: helm test failed on a working install.
  it.each([
    ['sidecar', {}],
    ['standalone', { mode: 'standalone' }],
  ] as const)(
    'lets helm test’s Pod through a NetworkPolicy that admits only chosen peers (%s), and no selector takes it for a replica',
    (_mode, values) => {
      const objects = renderChart('rel', 'ns', {
        ...values,
        'networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name': 'monitoring',
        'networkPolicy.edgeFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name': 'ingress',
      });
      const test = testPodOf(objects);
      const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => test.metadata.labels[k] === v);
      const selectors: Record<string, Record<string, string>> = {
        deployment: (objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment).spec?.selector.matchLabels ?? {},
        pdb: (
          objects.find((o) => o.kind === 'PodDisruptionBudget') as unknown as {
            spec: { selector: { matchLabels: Record<string, string> } };
          }
        ).spec.selector.matchLabels,
        policy: (
          objects.find((o) => o.kind === 'NetworkPolicy') as unknown as { spec: { podSelector: { matchLabels: Record<string, string> } } }
        ).spec.podSelector.matchLabels,
        ...Object.fromEntries(
          objects.filter((o) => o.kind === 'Service').map((o) => [o.metadata.name, (o as unknown as ServiceObject).spec.selector]),
        ),
      };
      expect(Object.keys(selectors).length).toBe(5);
      for (const [what, selector] of Object.entries(selectors)) expect(matches(selector), what).toBe(false);
      expect(test.metadata.labels['app.kubernetes.io/component']).toBe('helm-test');

      // Each URL the test Pod checks: its Service's port, to the container port the NetworkPolicy sees.
      const pod = podSpec(objects);
      const containerPort = (name: string) =>
        [...pod.containers, ...(pod.initContainers ?? [])].flatMap((c) => c.ports ?? []).find((p) => p.name === name)?.containerPort;
      const urls = (test.spec.containers[0]?.command ?? []).filter((a) => a.startsWith('http://'));
      expect(urls.length).toBe('mode' in values ? 1 : 2);
      const policy = objects.find((o) => o.kind === 'NetworkPolicy') as unknown as {
        spec: {
          ingress: {
            ports: { port: number }[];
            from?: { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: unknown }[];
          }[];
        };
      };
      for (const url of urls) {
        const { hostname, port } = new URL(url);
        // (URL leaves out http's default port 80.)
        const service = objects.find((o) => o.kind === 'Service' && hostname === `${o.metadata.name}.ns.svc`) as unknown as ServiceObject;
        expect(service, url).toBeDefined();
        const target = containerPort(service.spec.ports.find((p) => p.port === Number(port || 80))?.targetPort ?? '');
        const admitted = policy.spec.ingress.some(
          (rule) =>
            rule.ports.some((p) => p.port === target) &&
            (rule.from === undefined ||
              rule.from.some(
                (peer) => peer.namespaceSelector === undefined && peer.podSelector !== undefined && matches(peer.podSelector.matchLabels),
              )),
        );
        expect(admitted, `${url} (container port ${target})`).toBe(true);
      }
      // No rule for it when there is no test Pod.
      const untested = renderChart('rel', 'ns', { ...values, 'tests.enabled': 'false' }).find(
        (o) => o.kind === 'NetworkPolicy',
      ) as unknown as typeof policy;
      expect(JSON.stringify(untested.spec.ingress)).not.toContain('helm-test');
    },
  );

  it('sets only SANDBOX_EXTPROC_* variables the service knows (it refuses any other at start-up)', () => {
    const known = new Set(Object.values(SETTINGS).flatMap((s) => [s.env, ...s.aliases.map(envOf)]));
    // Every setting the chart passes through config, at its default (a valid value by definition).
    const everySetting = Object.fromEntries(
      (Object.keys(configEnv()) as string[])
        .filter((name) => name in SETTINGS && SETTINGS[name as keyof typeof SETTINGS].default !== '')
        // Standalone only (the sidecar's Envoy reads the fixed key): refused by the chart here.
        .filter((name) => name !== 'metadataNamespace' && name !== 'metadataKey')
        .map((name) => [`config.${name}`, SETTINGS[name as keyof typeof SETTINGS].default.replaceAll(',', '\\,')]),
    );
    const sets: Record<string, string>[] = [
      everySetting,
      { mode: 'standalone', 'grpcTls.secretName': 'tls', 'grpcTls.clientCa': 'true', podCIDR: '10.0.0.0/8' },
      { 'config.defaultPort': '8080' },
    ];
    expect(Object.keys(everySetting).length).toBeGreaterThan(30);
    for (const values of sets) {
      const names = (podSpec(renderChart('rel', 'ns', values)).containers[0]?.env ?? [])
        .map((e) => e.name)
        .filter((n) => n.startsWith('SANDBOX_EXTPROC_'));
      expect(names.length).toBeGreaterThan(5);
      expect(
        names.filter((n) => !known.has(n)),
        JSON.stringify(values),
      ).toEqual([]);
    }
    // Both names of one setting: refused by the chart, as the service would refuse them.
    expect(() => renderChart('rel', 'ns', { 'config.defaultPort': '1', 'config.e2bDefaultPort': '2' })).toThrow(/config.defaultPort/);
  });

  it('refuses Kubernetes older than 1.30', () => {
    expect(() => helm(['template', 'rel', CHART, '--kube-version', '1.29.0'])).toThrow(/kubeVersion: >=1.30.0-0/);
    expect(helm(['template', 'rel', CHART, '--kube-version', '1.30.0'])).toContain('kind: Deployment');
  });

  it('prints NOTES for the families it serves: E2B headers for OpenKruise, x-sandbox-* for agent-sandbox', () => {
    const notes = (values: string[]) => {
      // A dry run still asks a cluster for its version: the real API server of this file.
      const out = helm([
        'install',
        'rel',
        CHART,
        '--dry-run=client',
        '--namespace',
        'ns',
        '--kubeconfig',
        plane.adminKubeconfig,
        ...values,
      ]);
      return out.slice(out.indexOf('NOTES:'));
    };
    const openkruise = notes([]);
    expect(openkruise).toContain('e2b-sandbox-id: <sandbox ID>');
    expect(openkruise).not.toContain('x-sandbox-id');
    const agent = notes(['--set', 'config.sandboxKind=agent-sandbox']);
    expect(agent).toContain('x-sandbox-id: <name>');
    expect(agent).not.toContain('e2b-sandbox-id');
    const both = notes(['--set', 'config.sandboxKind=openkruise\\,agent-sandbox', '--set', 'podCIDR=10.244.0.0/16']);
    expect(both).toContain('serving openkruise and agent-sandbox Sandboxes');
    expect(both).toContain('e2b-sandbox-id');
    expect(both).toContain('x-sandbox-id');
    expect(both).not.toContain('Pod IPs are not restricted');
    expect(both).toContain('helm test rel -n ns');
  });

  it('has a helm test: a hook Pod from the service image that checks readiness and, in sidecar mode, a routed 502 through the edge', () => {
    const test = renderChart('rel', 'ns').find((o) => o.kind === 'Pod') as unknown as {
      metadata: { annotations: Record<string, string> };
      spec: V1PodSpec;
    };
    expect(test.metadata.annotations['helm.sh/hook']).toBe('test');
    const command = test.spec.containers[0]?.command ?? [];
    expect(command.slice(-3)).toEqual([
      'http://rel-sandbox-extproc-metrics.ns.svc:9003/readyz',
      'http://rel-sandbox-extproc.ns.svc:80/',
      'e2b-sandbox-id',
    ]);
    expect(test.spec.containers[0]?.securityContext?.readOnlyRootFilesystem).toBe(true);
    const agent = renderChart('rel', 'ns', { mode: 'standalone', 'config.sandboxKind': 'agent-sandbox' }).find(
      (o) => o.kind === 'Pod',
    ) as unknown as { spec: V1PodSpec };
    expect(agent.spec.containers[0]?.command?.slice(-2)).toEqual(['-', 'x-sandbox-id']);
    expect(renderChart('rel', 'ns', { 'tests.enabled': 'false' }).some((o) => o.kind === 'Pod')).toBe(false);
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
