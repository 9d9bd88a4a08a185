// What agent-sandbox's own SDK suites need in the kind cluster (test/e2e/agent-sandbox-sdk.test.ts):
// - agent-sandbox's controller with its extensions (SandboxTemplate, SandboxWarmPool, SandboxClaim), from
//   its module's own k8s/ manifests as its `kubectl apply -f sandbox.yaml -f extensions.yaml` deploys it:
//   all four CRDs, rbac.generated.yaml, controller.yaml, extensions.yaml and extensions-rbac.generated.yaml,
//   with the controller's Deployment taken from extensions.controller.yaml (--extensions), on the local
//   image of the same binary (scripts/controller-images.sh; pull policy Never), as their deployment
//   scripts replace the image. Nothing else is changed.
// - the router manifest their Python suite applies in each test namespace
//   (clients/python/agentic-sandbox-client/sandbox-router/sandbox_router.yaml), replaced by this chart
//   rendered for one namespace and presenting as their router: the Deployment sandbox-router-deployment,
//   the Service sandbox-router-svc:8080, pods labelled app: sandbox-router. Their fixture applies it with
//   `kubectl apply -n <namespace>`, so the rendering carries no namespace: the chart's Role and
//   RoleBinding land in that namespace (a RoleBinding's ServiceAccount subject without a namespace is
//   the binding's own), and the service watches the namespace its pod runs in (the downward API).
// - a default StorageClass with a few local PersistentVolumes, for their volumeClaimTemplates test: the
//   project's node image has no dynamic provisioner (kind's local-path-provisioner is an image from a
//   registry).
// - for their gateway mode, a GatewayClass named cloud-provider-kind (the class their Gateway names)
//   served by Envoy Gateway (test/support/kind-gateway.ts installs it), its proxies on the Envoy image
//   the chart runs; and, in place of cloud-provider-kind's load balancer (not on the Go module proxy), a
//   stand-in that gives each of Envoy Gateway's LoadBalancer Services the kind node's address, as
//   cloud-provider-kind gives one of the kind network's: kube-proxy then forwards that address's port to
//   the proxies, and Envoy Gateway reports it as the Gateway's address, where their SDK connects.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  type V1Service,
  type KubeConfig,
  type KubernetesObject,
  type V1Deployment,
} from '@kubernetes/client-node';
import { parseAllDocuments, stringify as toYaml } from 'yaml';
import { renderChart, type KubeObject } from './helm.ts';
import { installCrds } from './kind-controllers.ts';
import { toolPath } from './tools.ts';
import { keepWatching } from './watch.ts';

type Manifest = KubernetesObject & Record<string, unknown>;

const documents = (path: string): Manifest[] =>
  parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as Manifest | null)
    .filter((o): o is Manifest => o !== null);

/** The controller's manifests, in the order to create them, its Deployment on the local image. */
export function agentSandboxObjects(image: string): Manifest[] {
  const k8s = join(toolPath('SBX_AGENT_SANDBOX'), 'k8s');
  const core = documents(join(k8s, 'controller.yaml')).filter((o) => o.kind !== 'Deployment');
  const objects = [
    ...documents(join(k8s, 'rbac.generated.yaml')),
    ...documents(join(k8s, 'extensions-rbac.generated.yaml')),
    ...core,
    ...documents(join(k8s, 'extensions.yaml')),
    ...documents(join(k8s, 'extensions.controller.yaml')),
  ];
  const deployments = objects.filter((o) => o.kind === 'Deployment') as unknown as V1Deployment[];
  if (deployments.length !== 1) throw new Error(`expected one controller Deployment, found ${deployments.length}`);
  for (const container of deployments[0]?.spec?.template.spec?.containers ?? []) {
    container.image = image;
    container.imagePullPolicy = 'Never';
  }
  const order = ['Namespace', 'ServiceAccount', 'ClusterRole', 'Role', 'ClusterRoleBinding', 'RoleBinding', 'Service', 'Deployment'];
  const rank = (o: Manifest) => {
    const i = order.indexOf(o.kind as string);
    if (i < 0) throw new Error(`agent-sandbox's manifests hold a ${o.kind}, which this installer does not order`);
    return i;
  };
  return objects.sort((a, b) => rank(a) - rank(b));
}

/** Installs all four CRDs, waits until they are established, then deploys the controller. */
export async function installAgentSandbox(admin: KubeConfig, image: string): Promise<void> {
  const crdDir = join(toolPath('SBX_AGENT_SANDBOX'), 'crds');
  const crds = readdirSync(crdDir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => documents(join(crdDir, f)));
  await installCrds(admin, crds, "agent-sandbox's CRDs established");
  const client = KubernetesObjectApi.makeApiClient(admin);
  for (const object of agentSandboxObjects(image)) await client.create(object);
}

/** A stand-in namespace name the rendering is made for, then removed from every object. */
const PLACEHOLDER = 'router-namespace-placeholder';

/**
 * This chart as their router manifest: one namespace's router, applied with `kubectl apply -n`. The
 * values are those of a drop-in (README "Replacing agent-sandbox's router"), with one replica (their
 * suite makes a router per test) and no cluster-wide object (no admission policy: its binding names
 * one namespace's ServiceAccount; no PodDisruptionBudget: a single replica).
 */
export function routerManifest(image: { repository: string; tag: string }): string {
  const objects = renderChart('sandbox-router', PLACEHOLDER, {
    fullnameOverride: 'sandbox-router-deployment',
    'agentSandboxRouter.enabled': 'true',
    'config.sandboxKind': 'agent-sandbox',
    'config.agentSandboxNamespaces': '*',
    'watchNamespaces[0]': PLACEHOLDER,
    'image.repository': image.repository,
    'image.tag': image.tag,
    replicaCount: '1',
    'podDisruptionBudget.enabled': 'false',
    'admissionPolicy.enabled': 'false',
  });
  // `helm test`'s Pod is no part of an install applied with kubectl (and names the namespace in its URLs).
  const installed = objects.filter(
    (o) => (o.metadata as { annotations?: Record<string, string> }).annotations?.['helm.sh/hook'] === undefined,
  );
  const scoped = installed.map((source) => {
    const o = structuredClone(source) as KubeObject & { subjects?: { kind: string; namespace?: string }[] };
    if (['ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'].includes(o.kind)) {
      throw new Error(`the router manifest would hold a cluster-wide ${o.kind}`);
    }
    delete o.metadata.namespace;
    for (const subject of o.subjects ?? []) if (subject.kind === 'ServiceAccount') delete subject.namespace;
    if (o.kind === 'Deployment') {
      const container = (o as unknown as V1Deployment).spec?.template.spec?.containers.find((c) => c.name === 'sandbox-extproc');
      const watched = container?.env?.find((e) => e.name === 'SANDBOX_EXTPROC_NAMESPACES');
      if (watched === undefined) throw new Error('the chart sets no SANDBOX_EXTPROC_NAMESPACES');
      delete watched.value;
      watched.valueFrom = { fieldRef: { fieldPath: 'metadata.namespace' } };
    }
    return o;
  });
  const text = scoped.map((o) => toYaml(o)).join('---\n');
  if (text.includes(PLACEHOLDER)) throw new Error('the router manifest still names the placeholder namespace');
  return text;
}

/** A default StorageClass (no provisioner) and `count` local volumes on the node, for claims to bind. */
export function localStorage(count: number): Manifest[] {
  const storageClass: Manifest = {
    apiVersion: 'storage.k8s.io/v1',
    kind: 'StorageClass',
    metadata: { name: 'e2e-local', annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
    provisioner: 'kubernetes.io/no-provisioner',
    volumeBindingMode: 'WaitForFirstConsumer',
  };
  const volumes = Array.from({ length: count }, (_, i): Manifest => ({
    apiVersion: 'v1',
    kind: 'PersistentVolume',
    metadata: { name: `e2e-local-${i}` },
    spec: {
      capacity: { storage: '1Gi' },
      accessModes: ['ReadWriteOnce'],
      persistentVolumeReclaimPolicy: 'Delete',
      storageClassName: 'e2e-local',
      hostPath: { path: `/var/local/e2e-volumes/${i}`, type: 'DirectoryOrCreate' },
    },
  }));
  return [storageClass, ...volumes];
}

/** Their Gateway's class, served by Envoy Gateway, its proxies on `envoyImage` (EnvoyProxy parameters). */
export function cloudProviderKindClass(envoyImage: string, namespace: string): Manifest[] {
  return [
    {
      apiVersion: 'gateway.envoyproxy.io/v1alpha1',
      kind: 'EnvoyProxy',
      metadata: { name: 'cloud-provider-kind', namespace },
      spec: { provider: { type: 'Kubernetes', kubernetes: { envoyDeployment: { container: { image: envoyImage } } } } },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'cloud-provider-kind' },
      spec: {
        controllerName: 'gateway.envoyproxy.io/gatewayclass-controller',
        parametersRef: { group: 'gateway.envoyproxy.io', kind: 'EnvoyProxy', name: 'cloud-provider-kind', namespace },
      },
    },
  ];
}

/**
 * The load balancer stand-in: a LoadBalancer Service of `namespace` gets `ip` (the kind node's) in its
 * status, as a watch shows it appear. There is one such address: while a Service holds it, a newer one
 * waits until the holder is deleted (their suite deletes each test's namespace, and with it its Gateway
 * and Envoy Gateway's Service, before the next test's Gateway is used), so kube-proxy never maps the
 * address to two Services and no connection reaches a Gateway that is going away. That wait is most of
 * their warm-pool gateway test's time (Envoy Gateway removes a deleted Gateway's Service some 50 s
 * later); handing the address over as soon as the holder's namespace was being deleted was tried, and
 * that test's first request then got a 503, so the address waits for a Gateway that has had that time to
 * come up. Returns the stop.
 */
export function standInLoadBalancer(admin: KubeConfig, namespace: string, ip: string): () => void {
  const core = admin.makeApiClient(CoreV1Api);
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  let holder: string | undefined;
  /** Services waiting for the address, oldest first. */
  const waiting: string[] = [];
  /** When each waiting Service appeared, for the line saying how long it waited. */
  const appeared = new Map<string, number>();
  const seen = new Set<string>();
  const handOut = () => {
    if (holder !== undefined) return;
    const next = waiting.shift();
    if (next === undefined) return;
    holder = next;
    const waited = ((Date.now() - (appeared.get(next) ?? Date.now())) / 1000).toFixed(1);
    console.info(`load balancer stand-in: ${next} holds ${ip} (waited ${waited} s for it)`);
    core
      .patchNamespacedServiceStatus(
        { name: next, namespace, body: { status: { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } } } },
        merge,
      )
      .catch((error: unknown) => console.warn(`load balancer stand-in: ${next}: ${String(error)}`));
  };
  const handle = (type: string, service: V1Service) => {
    const name = service.metadata?.name as string;
    if (type === 'DELETED') {
      if (holder === name) holder = undefined;
      const at = waiting.indexOf(name);
      if (at >= 0) waiting.splice(at, 1);
      handOut();
      return;
    }
    const key = `${name}/${service.metadata?.uid}`;
    if (service.spec?.type !== 'LoadBalancer' || seen.has(key)) return;
    seen.add(key);
    waiting.push(name);
    appeared.set(name, Date.now());
    handOut();
  };
  // Resumed from the last version seen whenever the API server ends it, so no event (a holder's deletion
  // above all) is missed.
  const stop = new AbortController();
  void keepWatching(
    admin,
    {
      path: `/api/v1/namespaces/${namespace}/services`,
      onEvent: (type, service) => handle(type, service as V1Service),
      onError: (error) => console.warn(`load balancer stand-in: watch: ${String(error)}`),
    },
    stop.signal,
  ).catch((error: unknown) => console.warn(`load balancer stand-in: watch: ${String(error)}`));
  return () => stop.abort();
}
