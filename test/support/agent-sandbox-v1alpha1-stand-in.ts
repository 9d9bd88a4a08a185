// Test code only: a stand-in for kubernetes-sigs/agent-sandbox's Sandbox controller, for the one place
// its real controller cannot go: agent-sandbox's v1alpha1 API (spec.replicas 0|1), served by releases
// before v1beta1. The real controller is built from sigs.k8s.io/agent-sandbox v1.0.1, the only version
// on the Go module proxy, which serves v1beta1 alone; every v1beta1 suite runs that real controller
// (test/support/agent-sandbox.ts).
//
// Never kinder than the real one: it follows v1.0.1's controllers/sandbox_controller.go (reconcilePod,
// computeSuspendedCondition, computeReadyCondition) where the service depends on it, with spec.replicas
// in place of spec.operatingMode:
// - asked to run with no pod: a pod is created (status: no podIPs, Ready=False DependenciesNotReady),
//   gets its IP (reported while still not Ready), then turns Ready: Ready=True DependenciesReady;
// - asked to suspend: the pod is deleted and stops when stopGate lets it; meanwhile Suspended=False
//   PodTerminating, Ready=False SandboxSuspended, its IP still reported; once gone, Suspended=True
//   PodTerminated and podIPs cleared;
// - asked to run again while the pod is still terminating: that DYING pod is reused (the real
//   controller checks no deletionTimestamp) and reported Ready=True DependenciesReady with its IP, as a
//   kubelet keeps a pod Ready through its grace period; once it is gone a new pod is created as above;
// - Suspended is False NotSuspended whenever the sandbox is asked to run (v1.0.1 never leaves it True).
// Pods are kept in this process (no kwok: the addresses are the test's, given at create()) and mirrored
// as Pod objects in the API server before each status write that depends on them, as the real
// controller reports only what its pod cache holds: created bound to a node that does not exist (so a
// deletion is graceful: the pod shows its deletionTimestamp until it stops), its address written to
// the pod's status, deleted with a grace period when asked to suspend and for good once it stops. The
// service reads the pod of a sandbox resumed after a suspension. Status is written through the status
// subresource, one write per change, serialised per object, so each state above is a version of its
// own, as the real controller's writes are.
import { createHash } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { keepWatching } from './watch.ts';

export const AS_GROUP = 'agents.x-k8s.io';
export const AS_PLURAL = 'sandboxes';
export type AgentSandboxVersion = 'v1beta1' | 'v1alpha1';

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface AgentSandboxObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec?: { operatingMode?: 'Running' | 'Suspended'; replicas?: number; podTemplate?: unknown };
  status?: { podIPs?: string[]; conditions?: Condition[] };
}

export interface NewAgentSandbox {
  readonly namespace: string;
  readonly name: string;
  /** The address every pod of this sandbox gets (kwok, too, hands a freed address out again). */
  readonly podIP: string;
  /** Opt in to wake on traffic (sandbox-extproc.io/wake-on-traffic), with an optional per-sandbox deadline. */
  readonly wake?: boolean | { readonly deadlineSeconds: number };
  /** Stored as its SHA-256 in sandbox-extproc.io/access-token-sha256, never as the token. */
  readonly accessToken?: string;
  readonly suspended?: boolean;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export interface AgentControllerOptions {
  /** The API version the controller reads and writes (the fixture must serve it). */
  readonly version?: AgentSandboxVersion;
  /** From a pod's IP to its Ready. */
  readonly startDelayMs?: number;
  /**
   * When set, a deleted pod stops (its grace period's use, during which it stays Ready) only once this
   * settles: a test holds the dying window open as long as it needs.
   */
  stopGate?: Promise<void>;
}

interface Pod {
  /** The Sandbox (UID) that owns it ('' until create() learns the new object's UID). */
  owner: string;
  ip: string | undefined;
  ready: boolean;
  deleting: boolean;
}

/** What the API server holds of an in-process pod (its mirror). */
interface Mirrored {
  readonly pod: Pod;
  ip: string | undefined;
  deleting: boolean;
}

/** The node the mirrored pods are bound to: none runs, so nothing but this stand-in changes them. */
const STAND_IN_NODE = 'agent-sandbox-v1alpha1-stand-in';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const key = (ns: string, name: string) => `${ns}/${name}`;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const POD_TEMPLATE = { spec: { containers: [{ name: 'sandbox', image: 'sandbox:test' }] } };
const newer = (a: AgentSandboxObject, b: AgentSandboxObject | undefined) =>
  b === undefined || Number(a.metadata.resourceVersion ?? 0) >= Number(b.metadata.resourceVersion ?? 0);

export class AgentSandboxV1alpha1StandIn {
  readonly options: AgentControllerOptions;
  readonly version: AgentSandboxVersion;
  readonly #api: CustomObjectsApi;
  readonly #config: KubeConfig;
  readonly #pods = new Map<string, Pod>();
  readonly #core: CoreV1Api;
  /** Per sandbox: the pod mirrored in the API server now. */
  readonly #mirrored = new Map<string, Mirrored>();
  /** The address each sandbox's pods get. */
  readonly #ips = new Map<string, string>();
  readonly #latest = new Map<string, AgentSandboxObject>();
  /** Per object: the reconcile under way, so writes never overtake one another. */
  readonly #chains = new Map<string, Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;
  readonly #stopSignal = new AbortController();

  constructor(admin: KubeConfig, options: AgentControllerOptions = {}) {
    this.#config = admin;
    this.#api = admin.makeApiClient(CustomObjectsApi);
    this.#core = admin.makeApiClient(CoreV1Api);
    this.options = options;
    this.version = options.version ?? 'v1beta1';
  }

  /** Watches every Sandbox, re-watching after any end, from the last version seen. */
  async start(): Promise<void> {
    await keepWatching(
      this.#config,
      {
        path: `/apis/${AS_GROUP}/${this.version}/${AS_PLURAL}`,
        onEvent: (type, received) => {
          const object = received as AgentSandboxObject;
          const k = key(object.metadata.namespace, object.metadata.name);
          if (type === 'DELETED') return this.#forget(k, object.metadata.uid);
          if (newer(object, this.#latest.get(k))) this.#latest.set(k, object);
          void this.#sync(k);
        },
      },
      this.#stopSignal.signal,
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#stopSignal.abort();
    for (const timer of this.#timers) clearTimeout(timer);
  }

  /** Creates a Sandbox already settled: running with its pod Ready, or suspended with no pod. */
  async create(sandbox: NewAgentSandbox): Promise<AgentSandboxObject> {
    const annotations: Record<string, string> = { ...(sandbox.annotations ?? {}) };
    if (sandbox.wake !== undefined && sandbox.wake !== false) {
      annotations['sandbox-extproc.io/wake-on-traffic'] = 'true';
      if (typeof sandbox.wake === 'object') annotations['sandbox-extproc.io/wake-deadline-seconds'] = String(sandbox.wake.deadlineSeconds);
    }
    if (sandbox.accessToken !== undefined) {
      annotations['sandbox-extproc.io/access-token-sha256'] = createHash('sha256').update(sandbox.accessToken).digest('hex');
    }
    const k = key(sandbox.namespace, sandbox.name);
    this.#ips.set(k, sandbox.podIP);
    // Settled: the pod it would have by now, in place before any reconcile sees the object.
    const pod: Pod | undefined = sandbox.suspended === true ? undefined : { owner: '', ip: sandbox.podIP, ready: true, deleting: false };
    if (pod === undefined) this.#pods.delete(k);
    else this.#pods.set(k, pod);
    const created = (await this.#api.createNamespacedCustomObject({
      group: AS_GROUP,
      version: this.version,
      plural: AS_PLURAL,
      namespace: sandbox.namespace,
      body: {
        apiVersion: `${AS_GROUP}/${this.version}`,
        kind: 'Sandbox',
        metadata: { name: sandbox.name, labels: sandbox.labels ?? {}, annotations },
        spec: { podTemplate: POD_TEMPLATE, ...this.#desired(sandbox.suspended === true) },
      },
    })) as AgentSandboxObject;
    if (pod !== undefined) pod.owner = created.metadata.uid as string;
    if (newer(created, this.#latest.get(k))) this.#latest.set(k, created);
    await this.#sync(k);
    return this.#latest.get(k) ?? created;
  }

  /** Asks for a suspension, as a user would; the controller then carries it out. */
  suspend(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.#patch(namespace, name, { spec: this.#desired(true) });
  }

  /** Asks for the sandbox to run again, as a user would (the service sends the same patch to wake it). */
  resume(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.#patch(namespace, name, { spec: this.#desired(false) });
  }

  async delete(namespace: string, name: string): Promise<void> {
    await this.#api.deleteNamespacedCustomObject({ group: AS_GROUP, version: this.version, plural: AS_PLURAL, namespace, name });
  }

  get(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.#api.getNamespacedCustomObject({
      group: AS_GROUP,
      version: this.version,
      plural: AS_PLURAL,
      namespace,
      name,
    }) as Promise<AgentSandboxObject>;
  }

  #desired(suspended: boolean): Record<string, unknown> {
    return this.version === 'v1alpha1' ? { replicas: suspended ? 0 : 1 } : { operatingMode: suspended ? 'Suspended' : 'Running' };
  }

  #suspendRequested(object: AgentSandboxObject): boolean {
    return this.version === 'v1alpha1' ? object.spec?.replicas === 0 : object.spec?.operatingMode === 'Suspended';
  }

  async #patch(namespace: string, name: string, body: Record<string, unknown>): Promise<AgentSandboxObject> {
    return (await this.#api.patchNamespacedCustomObject(
      { group: AS_GROUP, version: this.version, plural: AS_PLURAL, namespace, name, body },
      mergePatch,
    )) as AgentSandboxObject;
  }

  /** Queues a reconcile of the object's latest version behind the one under way. */
  #sync(k: string): Promise<void> {
    const next = (this.#chains.get(k) ?? Promise.resolve()).then(() => this.#reconcile(k)).catch(() => undefined);
    this.#chains.set(k, next);
    return next;
  }

  /** reconcilePod, then the status computed from the object and its pod. */
  async #reconcile(k: string): Promise<void> {
    const object = this.#latest.get(k);
    if (object === undefined || object.metadata.deletionTimestamp !== undefined) return;
    const uid = object.metadata.uid as string;
    let pod = this.#pods.get(k);
    if (pod?.owner === '') pod.owner = uid;
    if (pod !== undefined && pod.owner !== uid) {
      // Left from an earlier object of the same name (the garbage collector's to remove).
      this.#pods.delete(k);
      pod = undefined;
    }
    if (this.#suspendRequested(object)) {
      if (pod !== undefined && !pod.deleting) {
        const dying = pod;
        dying.deleting = true;
        void (this.options.stopGate ?? Promise.resolve()).then(() => {
          if (this.#stopped || this.#pods.get(k) !== dying) return;
          this.#pods.delete(k);
          // The pod's disappearance is an event of its own (the real controller watches its pods).
          void this.#sync(k);
        });
      }
    } else if (pod === undefined && !this.#stopped) {
      // A terminating pod is reused as it is (above): a new one only once it is gone.
      const started: Pod = { owner: uid, ip: undefined, ready: false, deleting: false };
      this.#pods.set(k, started);
      this.#later(0, k, () => {
        started.ip = this.#ips.get(k) ?? '';
        this.#later(this.options.startDelayMs ?? 0, k, () => {
          started.ready = true;
        });
      });
    }
    // The pod as this reconcile found or made it: it may change while the mirror writes (a timer gives
    // it its address), and the real controller reports what its cache held when it reconciled.
    const current = this.#pods.get(k);
    const seen = current === undefined ? undefined : { ...current };
    await this.#mirror(object.metadata.namespace, object.metadata.name, current, seen);
    const status = this.#statusFor(object, seen);
    if (sameStatus(object.status, status)) return;
    const written = (await this.#api.patchNamespacedCustomObjectStatus(
      {
        group: AS_GROUP,
        version: this.version,
        plural: AS_PLURAL,
        namespace: object.metadata.namespace,
        name: object.metadata.name,
        // Locked on the version computed from, as the real controller's status Update is: a status
        // computed from an older spec (replicas 0, say) never lands on a newer one; the newer version's
        // own event reconciles again.
        body: {
          metadata: { resourceVersion: object.metadata.resourceVersion },
          status: { conditions: status.conditions, podIPs: (status.podIPs ?? []).length === 0 ? null : status.podIPs },
        },
      },
      mergePatch,
    )) as AgentSandboxObject;
    if (newer(written, this.#latest.get(k))) this.#latest.set(k, written);
  }

  /** computeSuspendedCondition and computeReadyCondition for this object and its pod. */
  #statusFor(object: AgentSandboxObject, pod: Pod | undefined): NonNullable<AgentSandboxObject['status']> {
    const held = object.status?.conditions ?? [];
    const generation = object.metadata.generation;
    const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition => {
      const previous = held.find((c) => c.type === type);
      const lastTransitionTime = previous !== undefined && previous.status === status ? previous.lastTransitionTime : now();
      return { type, status, reason, message, lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
    };
    const podIPs = pod?.ip === undefined || pod.ip === '' ? [] : [pod.ip];
    if (this.#suspendRequested(object)) {
      return {
        podIPs,
        conditions: [
          pod === undefined
            ? cond('Suspended', 'True', 'PodTerminated', 'Pod has been terminated. Sandbox is suspended')
            : cond('Suspended', 'False', 'PodTerminating', 'Pod is terminating. Sandbox is suspending'),
          cond('Ready', 'False', 'SandboxSuspended', pod === undefined ? 'Sandbox is suspended' : 'Sandbox is suspending'),
        ],
      };
    }
    const suspended = cond('Suspended', 'False', 'NotSuspended', 'Sandbox is not suspended');
    // A terminating pod keeps the Ready it had: the kubelet keeps it through the grace period.
    const ready =
      pod !== undefined && pod.ready && podIPs.length > 0
        ? cond('Ready', 'True', 'DependenciesReady', 'Pod is Ready')
        : cond('Ready', 'False', 'DependenciesNotReady', pod === undefined ? 'Pod does not exist' : 'Pod exists with phase: Pending');
    return { podIPs, conditions: [suspended, ready] };
  }

  /** Makes the API server's pod of this sandbox what the in-process one is (see the header). */
  async #mirror(namespace: string, name: string, pod: Pod | undefined, seen: Pod | undefined): Promise<void> {
    const k = key(namespace, name);
    let held = this.#mirrored.get(k);
    if (held !== undefined && held.pod !== pod) {
      // Gone, or replaced by a new pod: the old one stops for good.
      await this.#core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(ignoreNotFound);
      this.#mirrored.delete(k);
      held = undefined;
    }
    if (pod === undefined || seen === undefined) return;
    if (held === undefined) {
      const body = {
        metadata: { name, labels: { 'agents.x-k8s.io/stand-in': 'v1alpha1' } },
        spec: { nodeName: STAND_IN_NODE, containers: [{ name: 'sandbox', image: 'sandbox:test' }] },
      };
      await this.#core.createNamespacedPod({ namespace, body }).catch(async (error: unknown) => {
        if ((error as { code?: number }).code !== 409) throw error;
        // Left by an earlier object of the same name: replaced.
        await this.#core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(ignoreNotFound);
        await this.#core.createNamespacedPod({ namespace, body });
      });
      held = { pod, ip: undefined, deleting: false };
      this.#mirrored.set(k, held);
    }
    if (seen.ip !== undefined && seen.ip !== '' && held.ip !== seen.ip) {
      await this.#core.patchNamespacedPodStatus(
        { namespace, name, body: { status: { phase: 'Running', podIP: seen.ip, podIPs: [{ ip: seen.ip }] } } },
        mergePatch,
      );
      held.ip = seen.ip;
    }
    if (seen.deleting && !held.deleting) {
      await this.#core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 30 });
      held.deleting = true;
    }
  }

  #forget(k: string, uid: string | undefined): void {
    if (this.#pods.get(k)?.owner === uid) this.#pods.delete(k);
    if (this.#latest.get(k)?.metadata.uid === uid) this.#latest.delete(k);
  }

  /** A pod transition after `ms`, then a reconcile (the pod's watch event, for the real controller). */
  #later(ms: number, k: string, transition: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#stopped) return;
      transition();
      void this.#sync(k);
    }, ms);
    this.#timers.add(timer);
  }
}

function ignoreNotFound(error: unknown): void {
  if ((error as { code?: number }).code !== 404) throw error;
}

function sameStatus(shown: AgentSandboxObject['status'], status: NonNullable<AgentSandboxObject['status']>): boolean {
  const brief = (conditions: Condition[] | undefined) =>
    JSON.stringify((conditions ?? []).map(({ type, status: s, reason }) => [type, s, reason]));
  return (
    JSON.stringify(shown?.podIPs ?? []) === JSON.stringify(status.podIPs ?? []) && brief(shown?.conditions) === brief(status.conditions)
  );
}
