// Test code only: plays kubernetes-sigs/agent-sandbox's Sandbox controller (controllers/sandbox_controller.go)
// and the claim side of its warm pools (extensions/controllers) against the real API server, as strictly
// as the real ones where the service depends on them:
// - a Sandbox asked to run gets a pod: Ready=False DependenciesNotReady while it starts (podIPs empty),
//   then Ready=True DependenciesReady with status.podIPs set, after an injectable delay;
// - asked to suspend (spec.operatingMode Suspended, or spec.replicas 0 on v1alpha1): Ready=False
//   SandboxSuspended at once while the pod terminates (its IP still reported, Suspended=False
//   PodTerminating), then podIPs cleared and Suspended=True PodTerminated;
// - asked to run again: a new pod, as above; the Suspended condition is left as it was ("may linger
//   after a resume", their types say), unless told otherwise;
// - spec.shutdownTime passing expires the sandbox: the pod goes, then per spec.shutdownPolicy the object
//   is deleted (Delete) or kept with its live status cleared and Ready=False SandboxExpired (Retain);
// - warm pools: members carry the agents.x-k8s.io/warm-pool-sandbox label and a controller reference to
//   their SandboxWarmPool; adoption by a claim removes the label and hands ownership to the SandboxClaim;
// - a pod that completes (finish) gives Finished=True and Ready=False PodSucceeded / PodFailed;
// - can be told to hold a resume ("stuck") until the test releases it.
// Status is written whole (conditions as metav1.Condition, with lastTransitionTime kept while a status
// holds) through the status subresource, and only when it differs from what the object shows, so the
// controller converges on its own watch events.
import { createHash, randomUUID } from 'node:crypto';
import { CustomObjectsApi, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { Backoff, delay } from '../../src/routes/backoff.ts';

export const AS_GROUP = 'agents.x-k8s.io';
export const AS_PLURAL = 'sandboxes';
export const WARM_POOL_LABEL = 'agents.x-k8s.io/warm-pool-sandbox';
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
    ownerReferences?: Record<string, unknown>[];
    deletionTimestamp?: string;
  };
  spec?: {
    operatingMode?: 'Running' | 'Suspended';
    replicas?: number;
    shutdownTime?: string | null;
    shutdownPolicy?: 'Delete' | 'Retain';
    podTemplate?: unknown;
  };
  status?: { podIPs?: string[]; conditions?: Condition[] };
}

export interface NewAgentSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly podIP: string;
  /** Opt in to wake on traffic (sandbox-extproc.io/wake-on-traffic), with an optional per-sandbox deadline. */
  readonly wake?: boolean | { readonly deadlineSeconds: number };
  /** Stored as its SHA-256 in sandbox-extproc.io/access-token-sha256, never as the token. */
  readonly accessToken?: string;
  readonly suspended?: boolean;
  /** Created asked to run but with no pod yet: the controller starts one (startDelayMs), as for a new sandbox. */
  readonly starting?: boolean;
  readonly shutdownTime?: string;
  readonly shutdownPolicy?: 'Delete' | 'Retain';
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  /** Create it as an unclaimed member of this SandboxWarmPool. */
  readonly warmPool?: string;
}

export interface AgentControllerOptions {
  /** The API version the controller reads and writes (the fixture must serve it). */
  readonly version?: AgentSandboxVersion;
  /** Pod start: from "asked to run" to Ready=True (per sandbox name, or for all). */
  startDelayMs?: number | ((name: string) => number);
  /** Pod termination: from "asked to suspend" to the pod gone. */
  suspendDelayMs?: number;
  /** The pod IP a sandbox gets when its pod is recreated; default: the one it had before. */
  resumeIP?: (name: string) => string | undefined;
  /** Sandboxes whose pod does not start until released (release()). */
  stuck?: Set<string>;
  /** Leave a Suspended=True condition in place after a resume, as the real controller may (default true). */
  lingerSuspended?: boolean;
}

interface Pod {
  uid: string | undefined;
  ip: string;
  phase: 'starting' | 'ready' | 'terminating' | 'succeeded' | 'failed';
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const key = (ns: string, name: string) => `${ns}/${name}`;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const POD_TEMPLATE = { spec: { containers: [{ name: 'sandbox', image: 'sandbox:test' }] } };

export class AgentSandboxController {
  readonly options: AgentControllerOptions;
  readonly version: AgentSandboxVersion;
  readonly #api: CustomObjectsApi;
  readonly #config: KubeConfig;
  readonly #pods = new Map<string, Pod>();
  readonly #lastIP = new Map<string, string>();
  readonly #latest = new Map<string, AgentSandboxObject>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #expiry = new Map<string, NodeJS.Timeout>();
  /** Expiries the controller carried out on its own, in order. */
  readonly expired: { namespace: string; name: string; policy: 'Delete' | 'Retain' }[] = [];
  #watch: AbortController | undefined;
  #stopped = false;
  readonly #stopSignal = new AbortController();

  constructor(admin: KubeConfig, options: AgentControllerOptions = {}) {
    this.#config = admin;
    this.#api = admin.makeApiClient(CustomObjectsApi);
    this.options = options;
    this.version = options.version ?? 'v1beta1';
  }

  /** Watches every Sandbox, re-watching after any end, from the last version seen. */
  async start(): Promise<void> {
    const backoff = new Backoff(50, 1000);
    let resourceVersion: string | undefined;
    const run = async (): Promise<void> => {
      if (this.#stopped) return;
      this.#watch = await new Watch(this.#config).watch(
        `/apis/${AS_GROUP}/${this.version}/${AS_PLURAL}`,
        resourceVersion === undefined ? {} : { resourceVersion, allowWatchBookmarks: true },
        (type, object: AgentSandboxObject & { code?: number }) => {
          backoff.reset();
          if (type === 'ERROR') resourceVersion = object.code === 410 ? undefined : resourceVersion;
          else resourceVersion = object.metadata.resourceVersion ?? resourceVersion;
          const k = key(object.metadata.namespace, object.metadata.name);
          if (type === 'ADDED' || type === 'MODIFIED') {
            this.#latest.set(k, object);
            this.#armExpiry(object);
            this.#reconcile(object);
          }
          if (type === 'DELETED') this.#forget(k, object.metadata.uid);
        },
        () => void delay(backoff.next(), this.#stopSignal.signal).then(run),
      );
    };
    await run();
  }

  stop(): void {
    this.#stopped = true;
    this.#stopSignal.abort();
    this.#watch?.abort();
    for (const timer of this.#timers) clearTimeout(timer);
    for (const timer of this.#expiry.values()) clearTimeout(timer);
  }

  /** Creates a Sandbox already settled: running with its pod IP, or suspended with no pod. */
  async create(sandbox: NewAgentSandbox): Promise<AgentSandboxObject> {
    const annotations: Record<string, string> = { ...(sandbox.annotations ?? {}) };
    if (sandbox.wake !== undefined && sandbox.wake !== false) {
      annotations['sandbox-extproc.io/wake-on-traffic'] = 'true';
      if (typeof sandbox.wake === 'object') annotations['sandbox-extproc.io/wake-deadline-seconds'] = String(sandbox.wake.deadlineSeconds);
    }
    if (sandbox.accessToken !== undefined) {
      annotations['sandbox-extproc.io/access-token-sha256'] = createHash('sha256').update(sandbox.accessToken).digest('hex');
    }
    const labels: Record<string, string> = { ...(sandbox.labels ?? {}) };
    const metadata: AgentSandboxObject['metadata'] = { name: sandbox.name, namespace: sandbox.namespace, labels, annotations };
    if (sandbox.warmPool !== undefined) {
      labels[WARM_POOL_LABEL] = createHash('sha256').update(sandbox.warmPool).digest('hex').slice(0, 16);
      labels['agents.x-k8s.io/launch-type'] = 'warm';
      metadata.ownerReferences = [
        {
          apiVersion: 'extensions.agents.x-k8s.io/v1beta1',
          kind: 'SandboxWarmPool',
          name: sandbox.warmPool,
          uid: randomUUID(),
          controller: true,
          blockOwnerDeletion: true,
        },
      ];
    }
    const spec: Record<string, unknown> = { podTemplate: POD_TEMPLATE, ...this.#desired(sandbox.suspended === true) };
    if (sandbox.shutdownTime !== undefined) spec['shutdownTime'] = sandbox.shutdownTime;
    if (sandbox.shutdownPolicy !== undefined) spec['shutdownPolicy'] = sandbox.shutdownPolicy;
    const k = key(sandbox.namespace, sandbox.name);
    // Settle the pod before the object exists, so the watch's ADDED finds it already in place.
    if (sandbox.suspended === true || sandbox.starting === true) this.#pods.delete(k);
    else this.#pods.set(k, { uid: undefined, ip: sandbox.podIP, phase: 'ready' });
    this.#lastIP.set(k, sandbox.podIP);
    const created = (await this.#api.createNamespacedCustomObject({
      group: AS_GROUP,
      version: this.version,
      plural: AS_PLURAL,
      namespace: sandbox.namespace,
      body: { apiVersion: `${AS_GROUP}/${this.version}`, kind: 'Sandbox', metadata, spec },
    })) as AgentSandboxObject;
    const pod = this.#pods.get(k);
    if (pod !== undefined) pod.uid = created.metadata.uid;
    if (sandbox.starting === true) return created;
    return this.#writeStatus(created, this.#statusFor(created));
  }

  /** Asks for a suspension, as a user (or an idle policy) would; the controller then carries it out. */
  suspend(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.patchSpec(namespace, name, this.#desired(true));
  }

  /** Asks for the sandbox to run again, as a user would (the service sends the same patch to wake it). */
  resume(namespace: string, name: string): Promise<AgentSandboxObject> {
    return this.patchSpec(namespace, name, this.#desired(false));
  }

  /** Lets a stuck pod start: the controller goes on from the sandbox's current state. */
  release(namespace: string, name: string): void {
    this.options.stuck?.delete(name);
    const latest = this.#latest.get(key(namespace, name));
    if (latest !== undefined) this.#reconcile(latest);
  }

  /** A claim adopts an unclaimed warm-pool member: the pool label goes, the claim becomes the controller. */
  async adopt(namespace: string, name: string, claim: string): Promise<AgentSandboxObject> {
    return this.#patch(namespace, name, {
      metadata: {
        labels: { [WARM_POOL_LABEL]: null, 'agents.x-k8s.io/launch-type': 'warm' },
        annotations: { 'agents.x-k8s.io/pod-name': name },
        ownerReferences: [
          {
            apiVersion: 'extensions.agents.x-k8s.io/v1beta1',
            kind: 'SandboxClaim',
            name: claim,
            uid: randomUUID(),
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
    });
  }

  /** The pod reaches a terminal phase. */
  async finish(namespace: string, name: string, outcome: 'PodSucceeded' | 'PodFailed'): Promise<void> {
    const k = key(namespace, name);
    const pod = this.#pods.get(k);
    if (pod === undefined) throw new Error(`${k} has no pod`);
    pod.phase = outcome === 'PodSucceeded' ? 'succeeded' : 'failed';
    const latest = this.#latest.get(k) ?? (await this.get(namespace, name));
    await this.#writeStatus(latest, this.#statusFor(latest));
  }

  /** The pod is rescheduled onto another IP. */
  async setPodIP(namespace: string, name: string, podIP: string): Promise<AgentSandboxObject> {
    const k = key(namespace, name);
    const pod = this.#pods.get(k);
    if (pod === undefined) throw new Error(`${k} has no pod`);
    pod.ip = podIP;
    this.#lastIP.set(k, podIP);
    return this.#writeStatus(this.#latest.get(k) ?? (await this.get(namespace, name)), { podIPs: [podIP] });
  }

  patchSpec(namespace: string, name: string, spec: Record<string, unknown>): Promise<AgentSandboxObject> {
    return this.#patch(namespace, name, { spec });
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

  async #patch(namespace: string, name: string, body: Record<string, unknown>): Promise<AgentSandboxObject> {
    return (await this.#api.patchNamespacedCustomObject(
      { group: AS_GROUP, version: this.version, plural: AS_PLURAL, namespace, name, body },
      mergePatch,
    )) as AgentSandboxObject;
  }

  #suspendRequested(object: AgentSandboxObject): boolean {
    return this.version === 'v1alpha1' ? object.spec?.replicas === 0 : object.spec?.operatingMode === 'Suspended';
  }

  #reconcile(object: AgentSandboxObject): void {
    const { namespace, name, uid } = object.metadata;
    const k = key(namespace, name);
    if (object.metadata.deletionTimestamp !== undefined) return;
    if (isExpired(object)) return void this.#expire(object);
    let pod = this.#pods.get(k);
    if (pod !== undefined && pod.uid !== undefined && pod.uid !== uid) {
      // A pod left from an earlier object of the same name.
      this.#pods.delete(k);
      pod = undefined;
    }
    if (pod !== undefined) pod.uid ??= uid;
    if (this.#suspendRequested(object)) {
      if (pod !== undefined && pod.phase !== 'terminating') {
        pod.phase = 'terminating';
        this.#later(this.options.suspendDelayMs ?? 0, () => {
          if (this.#pods.get(k) === pod) this.#pods.delete(k);
          return this.#settle(k);
        });
      }
    } else if (pod === undefined && !(this.options.stuck?.has(name) ?? false)) {
      const started: Pod = { uid, ip: this.options.resumeIP?.(name) ?? this.#lastIP.get(k) ?? '', phase: 'starting' };
      this.#pods.set(k, started);
      this.#lastIP.set(k, started.ip);
      const delayMs = typeof this.options.startDelayMs === 'function' ? this.options.startDelayMs(name) : (this.options.startDelayMs ?? 0);
      this.#later(delayMs, () => {
        if (this.#pods.get(k) !== started) return Promise.resolve();
        started.phase = 'ready';
        return this.#settle(k);
      });
    }
    // A pod still terminating when the sandbox is asked to run again is replaced once it is gone (the
    // termination timer settles, and the next reconcile starts a new one).
    void this.#writeStatus(object, this.#statusFor(object)).catch(() => undefined);
  }

  /** Re-reads the object and reconciles it (after a pod transition). */
  async #settle(k: string): Promise<void> {
    const latest = this.#latest.get(k);
    if (latest === undefined) return;
    try {
      const fresh = await this.get(latest.metadata.namespace, latest.metadata.name);
      this.#latest.set(k, fresh);
      this.#reconcile(fresh);
    } catch {
      // Deleted meanwhile.
    }
  }

  /** The status the real controller would write for this object and its pod. */
  #statusFor(object: AgentSandboxObject): NonNullable<AgentSandboxObject['status']> {
    const k = key(object.metadata.namespace, object.metadata.name);
    const pod = this.#pods.get(k);
    const held = object.status?.conditions ?? [];
    const generation = object.metadata.generation;
    const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition => {
      const previous = held.find((c) => c.type === type);
      const lastTransitionTime = previous !== undefined && previous.status === status ? previous.lastTransitionTime : now();
      return { type, status, reason, message, lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
    };
    const suspendAsked = this.#suspendRequested(object);
    let suspended: Condition;
    if (suspendAsked) {
      suspended =
        pod === undefined
          ? cond('Suspended', 'True', 'PodTerminated', 'Pod has been terminated. Sandbox is suspended')
          : cond('Suspended', 'False', 'PodTerminating', 'Pod is terminating. Sandbox is suspending');
    } else {
      const previous = held.find((c) => c.type === 'Suspended');
      // The real controller's types warn that a Suspended condition may linger after a resume.
      suspended =
        previous !== undefined && previous.status === 'True' && (this.options.lingerSuspended ?? true)
          ? previous
          : cond('Suspended', 'False', 'NotSuspended', 'Sandbox is not suspended');
    }
    const conditions: Condition[] = [suspended];
    let ready: Condition;
    if (suspendAsked) {
      ready = cond('Ready', 'False', 'SandboxSuspended', pod === undefined ? 'Sandbox is suspended' : 'Sandbox is suspending');
    } else if (pod?.phase === 'succeeded' || pod?.phase === 'failed') {
      const reason = pod.phase === 'succeeded' ? 'PodSucceeded' : 'PodFailed';
      conditions.push(cond('Finished', 'True', reason, pod.phase === 'succeeded' ? 'Pod completed successfully' : 'Pod failed'));
      ready = cond('Ready', 'False', reason, conditions[1]?.message ?? '');
    } else if (pod?.phase === 'ready') {
      ready = cond('Ready', 'True', 'DependenciesReady', 'Pod is Ready');
    } else {
      ready = cond('Ready', 'False', 'DependenciesNotReady', pod === undefined ? 'Pod does not exist' : 'Pod exists with phase: Pending');
    }
    conditions.push(ready);
    const ips = pod === undefined || pod.phase === 'starting' ? [] : [pod.ip];
    return { podIPs: ips, conditions };
  }

  /** Writes status (whole conditions list, podIPs) when it differs from what the object shows. */
  async #writeStatus(object: AgentSandboxObject, status: NonNullable<AgentSandboxObject['status']>): Promise<AgentSandboxObject> {
    const shown = object.status ?? {};
    const same =
      JSON.stringify(shown.podIPs ?? []) === JSON.stringify(status.podIPs ?? shown.podIPs ?? []) &&
      (status.conditions === undefined ||
        JSON.stringify((shown.conditions ?? []).map(({ type, status: s, reason }) => [type, s, reason])) ===
          JSON.stringify(status.conditions.map(({ type, status: s, reason }) => [type, s, reason])));
    if (same) return object;
    const body = {
      status: {
        ...(status.conditions === undefined ? {} : { conditions: status.conditions }),
        podIPs: (status.podIPs ?? []).length === 0 ? null : status.podIPs,
      },
    };
    return (await this.#api.patchNamespacedCustomObjectStatus(
      { group: AS_GROUP, version: this.version, plural: AS_PLURAL, namespace: object.metadata.namespace, name: object.metadata.name, body },
      mergePatch,
    )) as AgentSandboxObject;
  }

  #armExpiry(object: AgentSandboxObject): void {
    const k = key(object.metadata.namespace, object.metadata.name);
    const previous = this.#expiry.get(k);
    if (previous !== undefined) clearTimeout(previous);
    this.#expiry.delete(k);
    const at = object.spec?.shutdownTime ? Date.parse(object.spec.shutdownTime) : NaN;
    if (!Number.isFinite(at) || object.metadata.deletionTimestamp !== undefined) return;
    const timer = setTimeout(
      () => {
        this.#expiry.delete(k);
        void this.#settle(k);
      },
      Math.min(Math.max(0, at - Date.now()), 2 ** 31 - 1),
    );
    this.#expiry.set(k, timer);
  }

  /** handleSandboxExpiry: the pod goes; then Delete deletes the object, Retain clears its live status. */
  async #expire(object: AgentSandboxObject): Promise<void> {
    const { namespace, name } = object.metadata;
    const k = key(namespace, name);
    const policy = object.spec?.shutdownPolicy ?? 'Retain';
    const alreadyMarked = object.status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'SandboxExpired') ?? false;
    this.#pods.delete(k);
    if (policy === 'Delete') {
      if (!this.expired.some((e) => e.namespace === namespace && e.name === name)) this.expired.push({ namespace, name, policy });
      await this.delete(namespace, name).catch(() => undefined);
      return;
    }
    if (alreadyMarked) return;
    this.expired.push({ namespace, name, policy });
    const finished = object.status?.conditions?.filter((c) => c.type === 'Finished') ?? [];
    const expiredReady: Condition = {
      type: 'Ready',
      status: 'False',
      reason: 'SandboxExpired',
      message: 'Sandbox has expired',
      lastTransitionTime: now(),
    };
    const suspended = object.status?.conditions?.filter((c) => c.type === 'Suspended') ?? [];
    await this.#api
      .patchNamespacedCustomObjectStatus(
        {
          group: AS_GROUP,
          version: this.version,
          plural: AS_PLURAL,
          namespace,
          name,
          body: { status: { podIPs: null, conditions: [...suspended, ...finished, expiredReady] } },
        },
        mergePatch,
      )
      .catch(() => undefined);
  }

  #forget(k: string, uid: string | undefined): void {
    const pod = this.#pods.get(k);
    if (pod !== undefined && pod.uid === uid) this.#pods.delete(k);
    if (this.#latest.get(k)?.metadata.uid === uid) this.#latest.delete(k);
    const timer = this.#expiry.get(k);
    if (timer !== undefined) clearTimeout(timer);
    this.#expiry.delete(k);
  }

  #later(ms: number, work: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      work().catch(() => undefined);
    }, ms);
    this.#timers.add(timer);
  }
}

function isExpired(object: AgentSandboxObject): boolean {
  const at = object.spec?.shutdownTime ? Date.parse(object.spec.shutdownTime) : NaN;
  return Number.isFinite(at) && Date.now() >= at;
}
