// The Sandbox families' own controllers, installed in the kind cluster from their projects' own
// manifests, with images of the same binaries the other suites run (scripts/controller-images.sh,
// loaded into the node; no registry is reachable):
// - OpenKruise agents: its CRDs, config/rbac (ServiceAccount, ClusterRole and namespaced Role with their
//   bindings, leader election) and config/manager (the Deployment), rendered as its config/default
//   kustomization renders them (namespace sandbox-system, names prefixed sandbox-; its metrics patch is
//   left out: nothing scrapes metrics here), with webhooks off (ENABLE_WEBHOOKS=false: their
//   certificates and configurations come from a part of the controller this suite does not exercise).
//   Its CRDs are the other suites' (test/support/crds.ts: spec.autoPausePolicy grafted on).
// - agent-sandbox: its Sandbox CRD (test/support/crds.ts), k8s/controller.yaml (namespace, ServiceAccount, binding, Service,
//   Deployment) and k8s/rbac.generated.yaml (the ClusterRole): the core controller, as its release's
//   sandbox.yaml deploys it (the suite makes no claims, templates or warm pools).
// Each Deployment's image placeholder is replaced by the local image (pull policy Never), as their
// deployment scripts replace it. Nothing else is changed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  KubeConfig,
  KubernetesObjectApi,
  loadYaml,
  type KubernetesObject,
  type V1CustomResourceDefinition,
  type V1Deployment,
} from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { watchUntil } from './kind.ts';
import { agentSandboxCrds, openKruiseCrds } from './crds.ts';
import { toolPath } from './tools.ts';

const OPENKRUISE_NAMESPACE = 'sandbox-system';
const OPENKRUISE_PREFIX = 'sandbox-';
/** Who each controller is to the API server: the ServiceAccounts their manifests create. */
export const OPENKRUISE_CONTROLLER_USER = `system:serviceaccount:${OPENKRUISE_NAMESPACE}:${OPENKRUISE_PREFIX}controller-manager`;
export const AGENT_SANDBOX_CONTROLLER_USER = 'system:serviceaccount:agent-sandbox-system:agent-sandbox-controller';

export interface ControllerImages {
  readonly openkruise: string;
  readonly agentSandbox: string;
}

type Manifest = KubernetesObject & Record<string, unknown>;

function documents(path: string): Manifest[] {
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as Manifest | null)
    .filter((o): o is Manifest => o !== null);
}

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

/**
 * What kustomize's `namespace:` and `namePrefix:` do to these objects (config/default sets both): every
 * namespaced object, binding subject and Namespace moves to the namespace; names get the prefix
 * (Namespaces excepted), and so do the references to them (roleRef, subjects, serviceAccountName).
 */
function kustomized(objects: Manifest[], namespace: string, prefix: string): Manifest[] {
  return objects.map((source) => {
    const o = structuredClone(source) as Manifest & {
      metadata: { name: string; namespace?: string };
      roleRef?: { name: string };
      subjects?: { kind: string; name: string; namespace?: string }[];
    };
    if (o.kind === 'Namespace') {
      o.metadata.name = namespace;
      return o;
    }
    o.metadata.name = prefix + o.metadata.name;
    if (!CLUSTER_SCOPED.has(o.kind as string)) o.metadata.namespace = namespace;
    if (o.roleRef) o.roleRef.name = prefix + o.roleRef.name;
    for (const subject of o.subjects ?? []) {
      if (subject.kind !== 'ServiceAccount') continue;
      subject.name = prefix + subject.name;
      subject.namespace = namespace;
    }
    const pod = (o as V1Deployment).spec?.template?.spec;
    if (o.kind === 'Deployment' && pod?.serviceAccountName) pod.serviceAccountName = prefix + pod.serviceAccountName;
    return o;
  });
}

/** The Deployment's one container, on the local image. */
function onLocalImage(objects: Manifest[], image: string, env: { name: string; value: string }[] = []): Manifest[] {
  const deployments = objects.filter((o) => o.kind === 'Deployment') as unknown as V1Deployment[];
  if (deployments.length !== 1) throw new Error(`expected one Deployment in the controller's manifests, found ${deployments.length}`);
  const containers = deployments[0]?.spec?.template.spec?.containers ?? [];
  if (containers.length !== 1) throw new Error(`expected one container in the controller's Deployment, found ${containers.length}`);
  const container = containers[0] as NonNullable<(typeof containers)[number]>;
  container.image = image;
  container.imagePullPolicy = 'Never';
  container.env = [...(container.env ?? []), ...env];
  return objects;
}

/** Both families' CRDs: OpenKruise's, and agent-sandbox's Sandbox (its core controller's only kind). */
export function controllerCrds(): object[] {
  return [
    ...openKruiseCrds(),
    ...agentSandboxCrds()
      .filter((f) => f.endsWith('/agents.x-k8s.io_sandboxes.yaml'))
      .flatMap(documents),
  ];
}

/** The objects that deploy both controllers, in the order to create them. */
export function controllerObjects(images: ControllerImages): Manifest[] {
  const kruise = join(toolPath('SBX_OPENKRUISE'), 'config');
  const kruiseObjects = onLocalImage(
    kustomized(
      [
        ...['service_account', 'role', 'role_binding', 'leader_election_role', 'leader_election_role_binding'].flatMap((f) =>
          documents(join(kruise, 'rbac', `${f}.yaml`)),
        ),
        ...documents(join(kruise, 'manager', 'manager.yaml')),
      ],
      OPENKRUISE_NAMESPACE,
      OPENKRUISE_PREFIX,
    ),
    images.openkruise,
    [{ name: 'ENABLE_WEBHOOKS', value: 'false' }],
  );
  const agent = toolPath('SBX_AGENT_SANDBOX');
  const agentObjects = onLocalImage(
    [...documents(join(agent, 'k8s', 'rbac.generated.yaml')), ...documents(join(agent, 'k8s', 'controller.yaml'))],
    images.agentSandbox,
  );
  // Namespaces first, the Deployments last: a pod is refused while its ServiceAccount is missing, and
  // a controller without its rights would start by failing.
  const order = ['Namespace', 'ServiceAccount', 'ClusterRole', 'Role', 'ClusterRoleBinding', 'RoleBinding', 'Service', 'Deployment'];
  const rank = (o: Manifest) => {
    const i = order.indexOf(o.kind as string);
    if (i < 0) throw new Error(`the controllers' manifests hold a ${o.kind}, which this installer does not order`);
    return i;
  };
  const objects = [...kruiseObjects, ...agentObjects].sort((a, b) => rank(a) - rank(b));
  const users = objects
    .filter((o) => o.kind === 'ServiceAccount')
    .map((o) => `system:serviceaccount:${o.metadata?.namespace}:${o.metadata?.name}`);
  if (users.sort().join() !== [AGENT_SANDBOX_CONTROLLER_USER, OPENKRUISE_CONTROLLER_USER].sort().join())
    throw new Error(`the controllers' ServiceAccounts are ${users.join(', ')}`);
  return objects;
}

/**
 * Installs both families' CRDs and resolves once every one is established (so no controller starts
 * before the kinds it watches are served, and Sandboxes can be created).
 */
export function installControllerCrds(admin: KubeConfig): Promise<void> {
  return installCrds(admin, controllerCrds(), "the controllers' CRDs established");
}

/**
 * Creates CRDs (manifest objects) and resolves once every one is established: no controller starts before
 * the kinds it watches are served, and their objects can be created.
 */
export async function installCrds(admin: KubeConfig, crds: readonly KubernetesObject[], what: string): Promise<void> {
  const api = admin.makeApiClient(ApiextensionsV1Api);
  const names = new Set<string>();
  const established = new Set<string>();
  const allEstablished = watchUntil(
    admin,
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
    {},
    (_type, object) => {
      const crd = object as V1CustomResourceDefinition;
      if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
        established.add(crd.metadata?.name as string);
      return names.size === crds.length && [...names].every((n) => established.has(n));
    },
    120_000,
    what,
  );
  // Through client-node's own YAML loader, which maps the schemas' x-kubernetes-* keys to its model
  // (a plain object would lose them on the way out, and with them spec.template's unknown fields).
  await Promise.all(
    crds.map(async (source) => {
      const crd = loadYaml<V1CustomResourceDefinition>(JSON.stringify(source));
      names.add(crd.metadata?.name as string);
      await api.createCustomResourceDefinition({ body: crd });
    }),
  );
  await allEstablished;
}

/**
 * Deploys both controllers (their RBAC and Deployments; the CRDs first, installControllerCrds, and
 * the images in the node). Resolves once created: the controllers start on their own, and a Sandbox
 * created meanwhile is reconciled when they do.
 */
export async function deployControllers(admin: KubeConfig, images: ControllerImages): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(admin);
  for (const object of controllerObjects(images)) await client.create(object);
}
