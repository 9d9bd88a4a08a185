// OpenKruise agents' own controller (agent-sandbox-controller, built by scripts/provision.sh from the
// source snapshot in ../shared/peers) run against the test control plane, and the calls a test makes
// of it as its users do: create a Sandbox from a pod template, pause it, claim from a SandboxSet,
// recycle. Pods are kwok's (test/support/cluster.ts); every state a Sandbox shows is the controller's.
// Its CRDs are its own (test/support/crds.ts).
import { join } from 'node:path';
import { Watch, type V1Pod } from '@kubernetes/client-node';
import { kwokPodTemplate, type Cluster, type PodBehaviour } from './cluster.ts';
import { CustomResource } from './custom-resource.ts';
import type { ControlPlane } from './controlplane.ts';
import { TestProcess } from './process.ts';
import { toolPath } from './tools.ts';
import { openKruiseCrds } from './crds.ts';

export const GROUP = 'agents.kruise.io';
export const VERSION = 'v1alpha1';
export const PLURAL = 'sandboxes';
export const SANDBOX_ID_LABEL = 'agents.kruise.io/sandbox-id';
/** Set on a SandboxSet member: its pool, and whether it is claimed ("true"/"false"). */
export const POOL_LABEL = 'agents.kruise.io/sandbox-pool';
export const CLAIMED_LABEL = 'agents.kruise.io/sandbox-claimed';
/** Set by the SandboxClaim controller on the sandboxes it claims. */
export const CLAIM_NAME_LABEL = 'agents.kruise.io/claim-name';
/** A pool member recycles (instead of being deleted) when both annotations are "true". */
export const CLEANUP_ENABLED_ANNOTATION = 'agents.kruise.io/cleanup-enabled';
export const CLEANUP_ANNOTATION = 'agents.kruise.io/cleanup';

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  lastTransitionTime?: string;
}

export interface SandboxObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    /** Bumped by every change of the spec (a pause asked for, a timer moved), never by status writes. */
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    finalizers?: string[];
    ownerReferences?: { kind: string; name: string; uid: string }[];
  };
  spec?: {
    paused?: boolean;
    pauseTime?: string | null;
    shutdownTime?: string | null;
    autoPausePolicy?: { resume?: { onIngressTraffic?: { pauseTimeout?: string } } };
    template?: unknown;
  };
  status?: { phase?: string; podInfo?: { podIP?: string; podUID?: string }; sandboxIp?: string; conditions?: Condition[] };
}

/**
 * A Sandbox to create; its pods behave as PodBehaviour says (kwok's delays, the hold gate, the node).
 * Keep stopDelay within the 5 s grace the controller gives its pods.
 */
export interface NewSandbox extends PodBehaviour {
  readonly namespace: string;
  readonly name: string;
  /**
   * Opt in to wake on traffic: by autoPausePolicy (with this pauseTimeout) or by the legacy annotation
   * (with wake-timeout-seconds, the re-arm pause timeout). deadlineSeconds sets our per-sandbox wake
   * deadline (sandbox-extproc.io/wake-deadline-seconds).
   */
  readonly wake?:
    | { readonly by: 'policy'; readonly pauseTimeout?: string; readonly deadlineSeconds?: number }
    | { readonly by: 'annotation'; readonly pauseTimeoutSeconds?: number; readonly deadlineSeconds?: number };
  readonly accessToken?: string;
  /** Created running, then paused (as every paused sandbox gets there); the call returns once it is paused. */
  readonly paused?: boolean;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  /** spec.pauseTime and spec.shutdownTime (RFC 3339): the controller acts on them when they pass. */
  readonly pauseTime?: string;
  readonly shutdownTime?: string;
}

/** A SandboxSet: a pool of running sandboxes from one pod template, refilled by the controller. */
export interface NewSandboxSet {
  readonly namespace: string;
  readonly name: string;
  readonly replicas: number;
  /** Members recycle when cleaned up instead of being deleted (the template's cleanup-enabled annotation). */
  readonly recyclable?: boolean;
  /**
   * Every member's pod stays un-Ready until released (release()), as a slow-starting pod: the member
   * stays Pending meanwhile, and the controller takes Pending members first when the pool is too full.
   */
  readonly hold?: boolean;
}

/** A SandboxClaim on a SandboxSet: the controller claims members and writes these onto them. */
export interface NewSandboxClaim {
  readonly namespace: string;
  readonly name: string;
  readonly pool: string;
  readonly replicas?: number;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly shutdownTime?: string;
}

/** The real controller process. */
export class OpenKruiseController {
  readonly process: TestProcess;

  private constructor(process: TestProcess) {
    this.process = process;
  }

  /** Its CRDs (test/support/crds.ts). */
  static crds(): object[] {
    return openKruiseCrds();
  }

  static async start(plane: ControlPlane, options: { recycleGracePeriod?: string } = {}): Promise<OpenKruiseController> {
    const child = new TestProcess(
      'openkruise-controller',
      join(toolPath('SBX_OPENKRUISE'), 'bin', 'agent-sandbox-controller'),
      [
        `--kubeconfig=${plane.adminKubeconfig}`,
        '--metrics-bind-address=0',
        // No probe listener: the test waits on its log line, and a port it cannot report is one more to race for.
        '--health-probe-bind-address=0',
        '--leader-elect=false',
        ...(options.recycleGracePeriod === undefined ? [] : [`--recycle-grace-period=${options.recycleGracePeriod}`]),
      ],
      { env: { ...process.env, ENABLE_WEBHOOKS: 'false' } },
    );
    const controller = new OpenKruiseController(child);
    await child.waitForLine(/Starting workers.*"controller": ?"sandbox(-controller)?"/, 60_000);
    return controller;
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}

const isTrue = (object: SandboxObject, type: string) =>
  object.status?.conditions?.some((c) => c.type === type && c.status === 'True') === true;
/** Running and Ready with a pod IP: what the controller reports once a sandbox serves. */
export const isRunning = (o: SandboxObject) =>
  o.status?.phase === 'Running' && isTrue(o, 'Ready') && (o.status.podInfo?.podIP ?? '') !== '';
/** Paused and its pod gone: SandboxPaused=True. */
export const isPaused = (o: SandboxObject) => o.status?.phase === 'Paused' && isTrue(o, 'SandboxPaused');
export const podIP = (o: SandboxObject) => o.status?.podInfo?.podIP ?? '';

/** A test's hands on Sandboxes: the calls users (and E2B's sandbox-manager) make, as an admin. */
export class OpenKruiseSandboxes {
  readonly #plane: ControlPlane;
  readonly #cluster: Cluster;
  readonly #sandboxes: CustomResource<SandboxObject>;
  readonly #sets: CustomResource<unknown>;
  readonly #claims: CustomResource<unknown>;

  constructor(plane: ControlPlane, cluster: Cluster) {
    this.#plane = plane;
    this.#cluster = cluster;
    this.#sandboxes = new CustomResource(plane.admin, { group: GROUP, version: VERSION, plural: PLURAL, kind: 'Sandbox' });
    this.#sets = new CustomResource(plane.admin, { group: GROUP, version: VERSION, plural: 'sandboxsets', kind: 'SandboxSet' });
    this.#claims = new CustomResource(plane.admin, { group: GROUP, version: VERSION, plural: 'sandboxclaims', kind: 'SandboxClaim' });
  }

  /** Creates a sandbox and returns it once it runs (or, with paused, once it is paused). */
  async create(sandbox: NewSandbox, timeoutMs = 30_000): Promise<SandboxObject> {
    await this.createOnly(sandbox);
    if (sandbox.hold) await this.release(sandbox.namespace, sandbox.name, timeoutMs);
    const running = await this.waitFor(sandbox.namespace, sandbox.name, isRunning, timeoutMs, 'running');
    if (!sandbox.paused) return running;
    await this.pause(sandbox.namespace, sandbox.name);
    return this.waitFor(sandbox.namespace, sandbox.name, isPaused, timeoutMs, 'paused');
  }

  /** Creates the object and returns at once (the controller then brings it up). */
  async createOnly(sandbox: NewSandbox): Promise<SandboxObject> {
    const annotations: Record<string, string> = { ...(sandbox.annotations ?? {}) };
    const spec: Record<string, unknown> = {
      ...(sandbox.pauseTime === undefined ? {} : { pauseTime: sandbox.pauseTime }),
      ...(sandbox.shutdownTime === undefined ? {} : { shutdownTime: sandbox.shutdownTime }),
      template: kwokPodTemplate(sandbox),
    };
    if (sandbox.wake?.by === 'policy')
      spec['autoPausePolicy'] = {
        resume: { onIngressTraffic: sandbox.wake.pauseTimeout ? { pauseTimeout: sandbox.wake.pauseTimeout } : {} },
      };
    if (sandbox.wake?.by === 'annotation') {
      annotations['agents.kruise.io/wake-on-traffic'] = 'true';
      if (sandbox.wake.pauseTimeoutSeconds !== undefined)
        annotations['agents.kruise.io/wake-timeout-seconds'] = String(sandbox.wake.pauseTimeoutSeconds);
    }
    if (sandbox.wake?.deadlineSeconds !== undefined)
      annotations['sandbox-extproc.io/wake-deadline-seconds'] = String(sandbox.wake.deadlineSeconds);
    if (sandbox.accessToken !== undefined) annotations['agents.kruise.io/runtime-access-token'] = sandbox.accessToken;
    return this.#sandboxes.create(sandbox.namespace, { name: sandbox.name, labels: sandbox.labels ?? {}, annotations }, spec);
  }

  /** Asks for a pause (spec.paused=true), as a user or the E2B API would; the controller does it. */
  pause(namespace: string, name: string): Promise<SandboxObject> {
    return this.patch(namespace, name, { spec: { paused: true } });
  }

  /** Pauses and returns once the controller reports the pause complete. */
  async pauseAndWait(namespace: string, name: string, timeoutMs = 30_000): Promise<SandboxObject> {
    await this.pause(namespace, name);
    return this.waitFor(namespace, name, isPaused, timeoutMs, 'paused');
  }

  patch(namespace: string, name: string, body: Record<string, unknown>): Promise<SandboxObject> {
    return this.#sandboxes.patch(namespace, name, body);
  }

  /** Creates a SandboxSet; the controller then fills the pool (waitForPool). */
  async createSandboxSet(set: NewSandboxSet): Promise<void> {
    const template = kwokPodTemplate(set);
    if (set.recyclable) (template['metadata'] as { annotations: Record<string, string> }).annotations[CLEANUP_ENABLED_ANNOTATION] = 'true';
    await this.#sets.create(set.namespace, { name: set.name }, { replicas: set.replicas, template });
  }

  /** Resolves with a member of the pool that is unclaimed and running (the controller's own word). */
  waitForPool(namespace: string, pool: string, timeoutMs = 30_000): Promise<SandboxObject> {
    return this.waitForAny(
      namespace,
      (o) => o.metadata.labels?.[POOL_LABEL] === pool && o.metadata.labels[CLAIMED_LABEL] === 'false' && isRunning(o),
      timeoutMs,
      `an available member of pool ${pool}`,
    );
  }

  /** Creates a SandboxClaim and resolves with the sandbox the controller claimed for it. */
  async claim(claim: NewSandboxClaim, timeoutMs = 30_000): Promise<SandboxObject> {
    const claimed = this.waitForAny(
      claim.namespace,
      (o) => o.metadata.labels?.[CLAIM_NAME_LABEL] === claim.name && o.metadata.labels[CLAIMED_LABEL] === 'true',
      timeoutMs,
      `the sandbox of claim ${claim.name}`,
    );
    await this.#claims.create(
      claim.namespace,
      { name: claim.name },
      {
        templateName: claim.pool,
        replicas: claim.replicas ?? 1,
        ...(claim.labels === undefined ? {} : { labels: claim.labels }),
        ...(claim.annotations === undefined ? {} : { annotations: claim.annotations }),
        ...(claim.shutdownTime === undefined ? {} : { shutdownTime: claim.shutdownTime }),
      },
    );
    return claimed;
  }

  /**
   * Asks for a recycle as sandbox-manager's TriggerRecycle does (the cleanup annotation, on a member
   * whose pool enabled cleanup): the controller shows phase Recycling, then after its
   * --recycle-grace-period clears the claim (labels, annotations, timers, sandbox ID) and hands the
   * sandbox back to its pool.
   */
  recycle(namespace: string, name: string): Promise<SandboxObject> {
    return this.patch(namespace, name, { metadata: { annotations: { [CLEANUP_ANNOTATION]: 'true' } } });
  }

  /** Resolves with the first sandbox of the namespace (already there, or to come) the predicate accepts. */
  waitForAny(namespace: string, predicate: (o: SandboxObject) => boolean, timeoutMs: number, what: string): Promise<SandboxObject> {
    return this.#sandboxes.waitForAny(namespace, predicate, timeoutMs, what);
  }

  delete(namespace: string, name: string): Promise<void> {
    return this.#sandboxes.delete(namespace, name);
  }

  get(namespace: string, name: string): Promise<SandboxObject> {
    return this.#sandboxes.get(namespace, name);
  }

  /** Resolves with the sandbox once (already, or on a later watch event) the predicate accepts it. */
  waitFor(
    namespace: string,
    name: string,
    predicate: (o: SandboxObject) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<SandboxObject> {
    return this.#sandboxes.waitFor(namespace, name, predicate, timeoutMs, what);
  }

  /**
   * Records every version of the sandbox the API server shows from now on (a watch), in order, until
   * stopped: for assertions on the order of what happened.
   */
  async record(namespace: string, name: string): Promise<{ readonly versions: SandboxObject[]; stop(): void }> {
    const versions: SandboxObject[] = [];
    const controller = await new Watch(this.#plane.admin).watch(
      this.#sandboxes.path(namespace),
      { fieldSelector: `metadata.name=${name}` },
      (type, object: SandboxObject) => {
        if (type === 'ADDED' || type === 'MODIFIED') versions.push(object);
      },
      () => undefined,
    );
    return { versions, stop: () => controller.abort() };
  }

  /** Releases the sandbox's current held pod (waits for the pod to exist first). */
  async release(namespace: string, name: string, timeoutMs = 30_000): Promise<V1Pod> {
    const { metadata } = await this.get(namespace, name);
    return this.#cluster.releaseOwnedBy(namespace, metadata.uid as string, timeoutMs, `sandbox ${namespace}/${name}`);
  }
}
