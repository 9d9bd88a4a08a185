// The README's `helm install`, for the container suites: the same flags rendered with `helm template`
// (no cluster runs here), every object applied to the real kube-apiserver (which validates them and
// enforces the chart's RBAC and admission policy), and the Deployment's pods run on the Docker engine
// (pod.ts) as in-cluster clients of that API server, with their ServiceAccount's token.
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubernetesObjectApi, type V1ConfigMap, type V1Deployment } from '@kubernetes/client-node';
import type { ControlPlane } from './controlplane.ts';
import type { DockerNetwork } from './docker.ts';
import { helm, objectsOf, type KubeObject } from './helm.ts';
import { Pod } from './pod.ts';

export interface ChartInstall {
  readonly release: string;
  readonly namespace: string;
  readonly objects: readonly KubeObject[];
  readonly deployment: V1Deployment;
  readonly configMaps: Record<string, Record<string, string>>;
}

/**
 * Renders a README `helm install` command (its arguments after `helm`) with `helm template`, the
 * placeholder `<your-registry>` standing for `registry`, plus `extra` flags the test adds.
 */
export function renderInstall(command: readonly string[], registry: string, extra: readonly string[] = []): ChartInstall {
  const args = command.map((a) => a.replaceAll('<your-registry>', registry));
  if (args[0] !== 'install') throw new Error(`not a helm install command: ${command.join(' ')}`);
  const [release, chart] = [args[1] as string, args[2] as string];
  const namespace = args[args.indexOf('--namespace') + 1] as string;
  if (!chart.startsWith('charts/')) throw new Error(`unexpected chart path ${chart}`);
  const objects = objectsOf(helm(['template', ...args.slice(1), ...extra]));
  const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as V1Deployment;
  const configMaps: Record<string, Record<string, string>> = {};
  for (const cm of objects.filter((o) => o.kind === 'ConfigMap') as unknown as V1ConfigMap[])
    configMaps[cm.metadata?.name as string] = cm.data ?? {};
  return { release, namespace, objects, deployment, configMaps };
}

/** Creates the namespaces and applies every rendered object; the API server validates each. */
export async function applyInstall(plane: ControlPlane, install: ChartInstall): Promise<void> {
  const namespaces = new Set([install.namespace, ...install.objects.map((o) => o.metadata.namespace).filter((n): n is string => !!n)]);
  for (const namespace of namespaces) await plane.ensureNamespace(namespace);
  const api = KubernetesObjectApi.makeApiClient(plane.admin);
  for (const object of install.objects) {
    try {
      await api.create(object as never);
    } catch (error) {
      throw new Error(
        `the API server refused ${object.kind}/${object.metadata.name}: ${(error as { body?: string }).body ?? String(error)}`,
        {
          cause: error,
        },
      );
    }
  }
}

export interface PodRun {
  readonly name: string;
  readonly network: DockerNetwork;
  readonly labels: Record<string, string>;
  readonly aliases?: readonly string[];
  readonly secrets?: Record<string, Record<string, string>>;
}

/** Runs one pod of the install's Deployment, authenticated as its ServiceAccount. */
export function startChartPod(plane: ControlPlane, install: ChartInstall, run: PodRun): Promise<Pod> {
  const spec = install.deployment.spec?.template.spec;
  if (spec === undefined) throw new Error('the Deployment has no pod template');
  const api = new URL(plane.url);
  const core = plane.admin.makeApiClient(CoreV1Api);
  return Pod.start({
    name: run.name,
    namespace: install.namespace,
    spec,
    network: run.network,
    labels: run.labels,
    aliases: run.aliases ?? [],
    secrets: run.secrets ?? {},
    // The cluster's CA bundle, as the kube-root-ca.crt publisher would put it in every namespace.
    configMaps: { ...install.configMaps, 'kube-root-ca.crt': { 'ca.crt': readFileSync(plane.certs.caCert, 'utf8') } },
    serviceAccountToken: async () =>
      (
        await core.createNamespacedServiceAccountToken({
          name: spec.serviceAccountName as string,
          namespace: install.namespace,
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3607, audiences: [] } },
        })
      ).status?.token ?? '',
    apiServer: { host: api.hostname, port: Number(api.port) },
    ready: { envoy: /starting main dispatch loop/, 'sandbox-extproc': /"msg":"routes synced from Kubernetes"/ },
  });
}
