// kubernetes-sigs/agent-sandbox's own controller (cmd/agent-sandbox-controller of the module
// sigs.k8s.io/agent-sandbox, built by scripts/provision.sh, with --extensions: SandboxTemplate,
// SandboxWarmPool, SandboxClaim) run against the test control plane, with its own CRDs (the module's
// k8s/crds), and the calls a test makes of it as its users and SDKs do. Pods are kwok's
// (test/support/cluster.ts); every state a Sandbox shows is the controller's.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { kwokPodTemplate, type Cluster, type PodBehaviour } from './cluster.ts';
import { CustomResource } from './custom-resource.ts';
import type { ControlPlane } from './controlplane.ts';
import { TestProcess } from './process.ts';
import { toolPath } from './tools.ts';
import { agentSandboxCrds } from './crds.ts';

export const AS_GROUP = 'agents.x-k8s.io';
export const AS_VERSION = 'v1beta1';
export const AS_PLURAL = 'sandboxes';
export const EXTENSIONS_GROUP = 'extensions.agents.x-k8s.io';
export const WARM_POOL_LABEL = 'agents.x-k8s.io/warm-pool-sandbox';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface AgentSandboxObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
    deletionTimestamp?: string;
  };
  spec?: {
    operatingMode?: 'Running' | 'Suspended';
    shutdownTime?: string | null;
    shutdownPolicy?: 'Delete' | 'Retain';
    podTemplate?: unknown;
  };
  status?: { podIPs?: string[]; conditions?: Condition[] };
}

export interface NewAgentSandbox extends PodBehaviour {
  readonly namespace: string;
  readonly name: string;
  /** Opt in to wake on traffic (sandbox-extproc.io/wake-on-traffic), with an optional per-sandbox deadline. */
  readonly wake?: boolean | { readonly deadlineSeconds: number };
  /** Stored as its SHA-256 in sandbox-extproc.io/access-token-sha256, never as the token. */
  readonly accessToken?: string;
  /** Created running, then suspended (as every suspended sandbox gets there); create() returns once it is. */
  readonly suspended?: boolean;
  readonly shutdownTime?: string;
  readonly shutdownPolicy?: 'Delete' | 'Retain';
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

/** The real controller process. */
export class AgentSandboxController {
  readonly process: TestProcess;

  private constructor(process: TestProcess) {
    this.process = process;
  }

  /** The module's own CRD files (test/support/crds.ts). */
  static crds(): string[] {
    return agentSandboxCrds();
  }

  static async start(plane: ControlPlane): Promise<AgentSandboxController> {
    const process = new TestProcess('agent-sandbox-controller', join(toolPath('SBX_AGENT_SANDBOX'), 'bin', 'agent-sandbox-controller'), [
      `--kubeconfig=${plane.adminKubeconfig}`,
      '--leader-elect=false',
      '--metrics-bind-address=0',
      '--health-probe-bind-address=0',
      '--extensions',
    ]);
    await process.waitForLine(/Starting workers.*"controller": ?"sandbox(-controller)?"/, 60_000);
    return new AgentSandboxController(process);
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}

const condition = (o: AgentSandboxObject, type: string) => o.status?.conditions?.find((c) => c.type === type);
/** Ready=True with a pod IP: what the controller reports once the sandbox serves. */
export const isServing = (o: AgentSandboxObject) => condition(o, 'Ready')?.status === 'True' && (o.status?.podIPs?.length ?? 0) > 0;
/** Suspended and its pod gone: Suspended=True (PodTerminated). */
export const isSuspended = (o: AgentSandboxObject) => condition(o, 'Suspended')?.status === 'True';
export const podIPOf = (o: AgentSandboxObject) => o.status?.podIPs?.[0] ?? '';

/** A test's hands on agent-sandbox objects, as an admin: what its users and SDKs do. */
export class AgentSandboxes {
  readonly #cluster: Cluster;
  readonly #sandboxes: CustomResource<AgentSandboxObject>;
  readonly #templates: CustomResource<unknown>;
  readonly #warmPools: CustomResource<unknown>;
  readonly #claims: CustomResource<unknown>;

  constructor(plane: ControlPlane, cluster: Cluster) {
    this.#cluster = cluster;
    const extension = (plural: string, kind: string) =>
      new CustomResource<unknown>(plane.admin, { group: EXTENSIONS_GROUP, version: AS_VERSION, plural, kind });
    this.#sandboxes = new CustomResource(plane.admin, { group: AS_GROUP, version: AS_VERSION, plural: AS_PLURAL, kind: 'Sandbox' });
    this.#templates = extension('sandboxtemplates', 'SandboxTemplate');
    this.#warmPools = extension('sandboxwarmpools', 'SandboxWarmPool');
    this.#claims = extension('sandboxclaims', 'SandboxClaim');
  }

  /** Creates a Sandbox and returns it once it serves (or, with suspended, once it is suspended). */
  async create(sandbox: NewAgentSandbox, timeoutMs = 30_000): Promise<AgentSandboxObject> {
    await this.createOnly(sandbox);
    if (sandbox.hold) await this.release(sandbox.namespace, sandbox.name, timeoutMs);
    const serving = await this.waitFor(sandbox.namespace, sandbox.name, isServing, timeoutMs, 'serving');
    if (!sandbox.suspended) return serving;
    await this.suspend(sandbox.namespace, sandbox.name);
    return this.waitFor(sandbox.namespace, sandbox.name, isSuspended, timeoutMs, 'suspended');
  }

  /** Creates the object and returns at once. */
  async createOnly(sandbox: NewAgentSandbox): Promise<AgentSandboxObject> {
    const annotations = { ...(sandbox.annotations ?? {}), ...optIn(sandbox) };
    return this.#sandboxes.create(
      sandbox.namespace,
      { name: sandbox.name, labels: sandbox.labels ?? {}, annotations },
      {
        podTemplate: kwokPodTemplate(sandbox),
        ...(sandbox.shutdownTime === undefined ? {} : { shutdownTime: sandbox.shutdownTime }),
        ...(sandbox.shutdownPolicy === undefined ? {} : { shutdownPolicy: sandbox.shutdownPolicy }),
      },
    );
  }

  suspend(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.patch(namespace, name, { spec: { operatingMode: 'Suspended' } });
  }

  resume(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.patch(namespace, name, { spec: { operatingMode: 'Running' } });
  }

  patch(namespace: string, name: string, body: Record<string, unknown>): Promise<AgentSandboxObject> {
    return this.#sandboxes.patch(namespace, name, body);
  }

  delete(namespace: string, name: string): Promise<void> {
    return this.#sandboxes.delete(namespace, name);
  }

  get(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.#sandboxes.get(namespace, name);
  }

  waitFor(
    namespace: string,
    name: string,
    predicate: (o: AgentSandboxObject) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<AgentSandboxObject> {
    return this.#sandboxes.waitFor(namespace, name, predicate, timeoutMs, what);
  }

  /** Releases the sandbox's current held pod (its newest live one, waited for). */
  async release(namespace: string, name: string, timeoutMs = 30_000): Promise<V1Pod> {
    const { metadata } = await this.get(namespace, name);
    return this.#cluster.releaseOwnedBy(namespace, metadata.uid as string, timeoutMs, `agent-sandbox ${namespace}/${name}`);
  }

  /** A SandboxTemplate (the pod template a warm pool's members and claims use). */
  async createTemplate(
    namespace: string,
    name: string,
    behaviour: PodBehaviour & { annotations?: Record<string, string> } = {},
  ): Promise<void> {
    await this.#templates.create(namespace, { name }, { podTemplate: kwokPodTemplate(behaviour) });
  }

  async createWarmPool(namespace: string, name: string, template: string, replicas: number): Promise<void> {
    await this.#warmPools.create(namespace, { name }, { replicas, sandboxTemplateRef: { name: template } });
  }

  /** A SandboxClaim on a warm pool, as the SDKs make one; resolves with the claim as created. */
  createClaim(namespace: string, name: string, warmPool: string, annotations: Record<string, string> = {}): Promise<unknown> {
    return this.#claims.create(namespace, { name, annotations }, { warmPoolRef: { name: warmPool } });
  }
}

/** Our own annotations: the wake opt-in and the token's digest (agent-sandbox has no field for either). */
function optIn(sandbox: NewAgentSandbox): Record<string, string> {
  const annotations: Record<string, string> = {};
  if (sandbox.wake !== undefined && sandbox.wake !== false) {
    annotations['sandbox-extproc.io/wake-on-traffic'] = 'true';
    if (typeof sandbox.wake === 'object') annotations['sandbox-extproc.io/wake-deadline-seconds'] = String(sandbox.wake.deadlineSeconds);
  }
  if (sandbox.accessToken !== undefined) {
    annotations['sandbox-extproc.io/access-token-sha256'] = createHash('sha256').update(sandbox.accessToken).digest('hex');
  }
  return annotations;
}
