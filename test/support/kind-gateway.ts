// Envoy Gateway and a NetworkPolicy enforcer in the kind cluster, for test/e2e/envoy-gateway.test.ts:
// - kube-router's NetworkPolicy controller (built from its Go module by `scripts/provision.sh
//   envoy-gateway`): the node image's CNI does not enforce NetworkPolicy, and the suite proves what the
//   chart's policy admits;
// - Envoy Gateway from its own Helm chart (the module's charts/gateway-helm, as its release packages
//   it, with Gateway API's and its own CRDs), installed with the values file the examples give users;
// - the examples' manifests, applied as they are, in file order.
// Waits are on watch events (conditions in an object's status, Ready pods), with deadlines.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig, KubernetesObjectApi, type KubernetesObject, type V1DaemonSet } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { watchUntil } from './kind.ts';
import { execTracked } from './process.ts';
import { provisionedValue, toolPath } from './tools.ts';

/** Where Envoy Gateway runs, and with it the proxies of every Gateway (its default deployment mode). */
export const ENVOY_GATEWAY_NAMESPACE = 'envoy-gateway-system';

export interface GatewayImages {
  /** Envoy Gateway's image, under the name its chart gives it. */
  readonly envoyGateway: string;
  readonly kubeRouter: string;
}

export function gatewayImages(): GatewayImages {
  return {
    envoyGateway: provisionedValue('SBX_ENVOY_GATEWAY_IMAGE'),
    kubeRouter: provisionedValue('SBX_KUBE_ROUTER_IMAGE'),
  };
}

/** The documents of a YAML file, in order. */
export function manifest(path: string): KubernetesObject[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null);
}

/** Creates the objects in order (as `kubectl apply` of a new file would). */
export async function createAll(admin: KubeConfig, objects: readonly KubernetesObject[]): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(admin);
  for (const object of objects) await client.create(object);
}

/**
 * kube-router as a NetworkPolicy controller only, as its kube-router-firewall-daemonset.yaml runs it
 * (`--run-firewall`, not its router nor its service proxy), with the ServiceAccount and ClusterRole of
 * its kubeadm manifest, on the local image. Two things differ from that manifest, both for this node
 * image: no CNI installer (the node's CNI stays; kube-router only filters), and the API server reached at
 * the node's address, not through the kubernetes Service (the node image's CNI routes the Service range
 * `unreachable` on the host, where kube-router runs: scripts/kind-node/default-cni.yaml). Resolves once
 * its pod is ready; NetworkPolicies are enforced from then on.
 */
export async function installNetworkPolicyController(admin: KubeConfig, image: string): Promise<void> {
  const rbac = manifest(join(toolPath('SBX_KUBE_ROUTER'), 'daemonset', 'kubeadm-kuberouter.yaml')).filter((o) =>
    ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind as string),
  );
  if (rbac.length !== 3)
    throw new Error(`kube-router's kubeadm manifest: expected its ServiceAccount, ClusterRole and binding, found ${rbac.length}`);
  const labels = { 'k8s-app': 'kube-router' };
  const daemonSet: V1DaemonSet = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'kube-router', namespace: 'kube-system', labels },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: 'kube-router',
          priorityClassName: 'system-node-critical',
          hostNetwork: true,
          hostPID: true,
          tolerations: [{ operator: 'Exists' }],
          containers: [
            {
              name: 'kube-router',
              image,
              imagePullPolicy: 'Never',
              args: ['--run-router=false', '--run-firewall=true', '--run-service-proxy=false', '--enable-cni=false'],
              env: [
                { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                { name: 'KUBERNETES_SERVICE_HOST', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } },
                { name: 'KUBERNETES_SERVICE_PORT', value: '6443' },
              ],
              securityContext: { privileged: true },
              readinessProbe: { httpGet: { path: '/healthz', port: 20244 as never }, periodSeconds: 2 },
              volumeMounts: [
                { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
                { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
              ],
            },
          ],
          volumes: [
            { name: 'lib-modules', hostPath: { path: '/lib/modules' } },
            { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
          ],
        },
      },
    },
  };
  const ready = watchUntil(
    admin,
    '/apis/apps/v1/namespaces/kube-system/daemonsets',
    { fieldSelector: 'metadata.name=kube-router' },
    (_type, object) => {
      const s = (object as V1DaemonSet).status;
      return (s?.desiredNumberScheduled ?? 0) > 0 && s?.numberReady === s?.desiredNumberScheduled;
    },
    120_000,
    "kube-router's NetworkPolicy controller ready on the node",
  );
  await createAll(admin, [...rbac, daemonSet as KubernetesObject]);
  await ready;
}

/** helm, without blocking the event loop (Envoy Gateway's install waits for its certgen Job). */
export async function helmAsync(args: readonly string[]): Promise<string> {
  try {
    return (await execTracked(toolPath('SBX_HELM'), args, { maxBuffer: 64 << 20 })).stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`helm ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`, { cause: error });
  }
}

/**
 * Envoy Gateway from its chart, as users install it (`helm install eg ... -n envoy-gateway-system
 * --create-namespace -f <values>`): its CRDs (Gateway API's included) first, then the certgen Job
 * (a pre-install hook helm waits for), then the control plane. Resolves once its Deployment has
 * rolled out.
 */
export async function installEnvoyGateway(admin: KubeConfig, kubeconfigPath: string, valuesFile: string): Promise<void> {
  const chart = join(toolPath('SBX_ENVOY_GATEWAY'), 'gateway-helm');
  await helmAsync([
    'install',
    'eg',
    chart,
    '--kubeconfig',
    kubeconfigPath,
    '--namespace',
    ENVOY_GATEWAY_NAMESPACE,
    '--create-namespace',
    '-f',
    valuesFile,
  ]);
  await rolledOut(admin, ENVOY_GATEWAY_NAMESPACE, 'envoy-gateway');
}

/** Waits until the Deployment has rolled out: every replica updated, available and ready. */
export function rolledOut(admin: KubeConfig, namespace: string, name: string, timeoutMs = 300_000): Promise<void> {
  return watchUntil(
    admin,
    `/apis/apps/v1/namespaces/${namespace}/deployments`,
    { fieldSelector: `metadata.name=${name}` },
    (_type, object) => {
      const d = object as { metadata?: { generation?: number }; spec?: { replicas?: number }; status?: Record<string, number> };
      const want = d.spec?.replicas ?? 1;
      const s = d.status ?? {};
      return (
        (s['observedGeneration'] ?? 0) >= (d.metadata?.generation ?? 1) &&
        s['updatedReplicas'] === want &&
        s['availableReplicas'] === want &&
        s['readyReplicas'] === want &&
        s['replicas'] === want
      );
    },
    timeoutMs,
    `deployment ${namespace}/${name} rolled out`,
  );
}

interface Condition {
  readonly type: string;
  readonly status: string;
  readonly reason?: string;
  readonly message?: string;
  readonly observedGeneration?: number;
}

/**
 * Every condition an object reports, wherever Gateway API puts them: its own (Gateway, GatewayClass),
 * per parent (routes), per ancestor (policies), or per listener (Gateways), the last named
 * `listener:<type>`.
 */
export function conditionsOf(object: unknown): Condition[] {
  type Holder = { conditions?: Condition[] };
  const status = (object as { status?: Holder & { parents?: Holder[]; ancestors?: Holder[]; listeners?: Holder[] } }).status;
  return [
    ...(status?.conditions ?? []),
    ...(status?.parents ?? []).flatMap((p) => p.conditions ?? []),
    ...(status?.ancestors ?? []).flatMap((a) => a.conditions ?? []),
    ...(status?.listeners ?? []).flatMap((l) => (l.conditions ?? []).map((c) => ({ ...c, type: `listener:${c.type}` }))),
  ];
}

/**
 * Resolves once the object reports each of these condition types True for its current generation;
 * rejects at the deadline with the conditions last seen (their reasons and messages say what is wrong).
 */
export async function waitForConditions(
  admin: KubeConfig,
  object: KubernetesObject,
  types: readonly string[],
  timeoutMs: number,
): Promise<void> {
  const [group, version] = (object.apiVersion as string).includes('/') ? (object.apiVersion as string).split('/') : ['', object.apiVersion];
  const kind = (object.kind as string).toLowerCase();
  // The resource's plural, as these kinds' CRDs name it: policies, proxies, gateways, gatewayclasses.
  const plural = /[^aeiou]y$/.test(kind) ? `${kind.slice(0, -1)}ies` : kind.endsWith('s') ? `${kind}es` : `${kind}s`;
  const namespace = object.metadata?.namespace;
  const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  const path = namespace ? `${base}/namespaces/${namespace}/${plural}` : `${base}/${plural}`;
  let last: Condition[] = [];
  try {
    await watchUntil(
      admin,
      path,
      { fieldSelector: `metadata.name=${object.metadata?.name}` },
      (_type, seen) => {
        const generation = (seen as KubernetesObject).metadata?.generation;
        last = conditionsOf(seen);
        return types.every((type) =>
          last.some(
            (c) => c.type === type && c.status === 'True' && (c.observedGeneration === undefined || c.observedGeneration === generation),
          ),
        );
      },
      timeoutMs,
      `${object.kind} ${namespace ?? ''}/${object.metadata?.name} ${types.join(', ')}`,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; its conditions: ${JSON.stringify(last)}`, { cause: error });
  }
}
