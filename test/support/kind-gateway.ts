// Envoy Gateway and a NetworkPolicy enforcer in the kind cluster, for test/e2e/envoy-gateway.test.ts:
// - kube-network-policies (sigs.k8s.io/kube-network-policies, built from its Go module by
//   `scripts/provision.sh envoy-gateway`), from its own install.yaml with the local image: the node
//   image's CNI does not enforce NetworkPolicy, and the suite proves what the chart's policy admits;
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
  readonly networkPolicies: string;
}

export function gatewayImages(): GatewayImages {
  return {
    envoyGateway: provisionedValue('SANDBOX_EXTPROC_ENVOY_GATEWAY_IMAGE'),
    networkPolicies: provisionedValue('SANDBOX_EXTPROC_KUBE_NETWORK_POLICIES_IMAGE'),
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
 * kube-network-policies as its install.yaml deploys it (a DaemonSet in kube-system with its RBAC), on
 * the local image. Resolves once its pod runs and is ready: from then on NetworkPolicies are enforced.
 */
export async function installNetworkPolicies(admin: KubeConfig, image: string): Promise<void> {
  const objects = manifest(join(toolPath('SANDBOX_EXTPROC_KUBE_NETWORK_POLICIES'), 'install.yaml'));
  const daemonSets = objects.filter((o) => o.kind === 'DaemonSet') as V1DaemonSet[];
  const container = daemonSets[0]?.spec?.template.spec?.containers[0];
  if (daemonSets.length !== 1 || !container) throw new Error('kube-network-policies install.yaml: expected one DaemonSet');
  container.image = image;
  container.imagePullPolicy = 'Never';
  const name = daemonSets[0]?.metadata?.name as string;
  const namespace = daemonSets[0]?.metadata?.namespace as string;
  const ready = watchUntil(
    admin,
    `/apis/apps/v1/namespaces/${namespace}/daemonsets`,
    { fieldSelector: `metadata.name=${name}` },
    (_type, object) => {
      const s = (object as V1DaemonSet).status;
      return (s?.desiredNumberScheduled ?? 0) > 0 && s?.numberReady === s?.desiredNumberScheduled;
    },
    120_000,
    'kube-network-policies ready on the node',
  );
  await createAll(admin, objects);
  await ready;
}

/** helm, without blocking the event loop (Envoy Gateway's install waits for its certgen Job). */
export async function helmAsync(args: readonly string[]): Promise<string> {
  try {
    return (await execTracked(toolPath('SANDBOX_EXTPROC_HELM'), args, { maxBuffer: 64 << 20 })).stdout;
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
  const chart = join(toolPath('SANDBOX_EXTPROC_ENVOY_GATEWAY'), 'gateway-helm');
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
 * per parent (routes) or per ancestor (policies).
 */
export function conditionsOf(object: unknown): Condition[] {
  const status = (
    object as {
      status?: { conditions?: Condition[]; parents?: { conditions?: Condition[] }[]; ancestors?: { conditions?: Condition[] }[] };
    }
  ).status;
  return [
    ...(status?.conditions ?? []),
    ...(status?.parents ?? []).flatMap((p) => p.conditions ?? []),
    ...(status?.ancestors ?? []).flatMap((a) => a.conditions ?? []),
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
  const plural = kind.endsWith('y') ? `${kind.slice(0, -1)}ies` : kind.endsWith('s') ? `${kind}es` : `${kind}s`;
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
