// Test code only: plays the OpenKruise sandbox controller against the real API server, as strictly as
// the real one (openkruise/agents pkg/controller/sandbox) where the service depends on it:
// - completes pauses (phase Paused, SandboxPaused=True, pod IP cleared) and resumes (spec.paused=false
//   -> Resuming -> Running, Ready=True, possibly a new pod IP) after injectable delays;
// - pauses a running sandbox when its spec.pauseTime has passed (a patch with an optimistic lock, as
//   handlePauseTimeout does), and deletes a sandbox when its spec.shutdownTime has passed;
// - records resumes asked for while a pause is still in progress (the real controller refuses them);
// - claims and recycles: the sandbox-id label set on claim and cleared on recycle, so one object
//   changes ID over its life;
// - can be told to hold a resume ("stuck") until the test releases it.
import { CustomObjectsApi, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { Backoff, delay } from '../../src/routes/backoff.ts';

export const GROUP = 'agents.kruise.io';
export const VERSION = 'v1alpha1';
export const PLURAL = 'sandboxes';

export interface SandboxObject {
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec?: {
    paused?: boolean;
    pauseTime?: string | null;
    shutdownTime?: string | null;
    autoPausePolicy?: { resume?: { onIngressTraffic?: { pauseTimeout?: string } } };
  };
  status?: {
    phase?: string;
    podInfo?: { podIP?: string };
    conditions?: { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
  };
}

export interface NewSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly podIP: string;
  /** Sandbox ID label; default is <namespace>--<name>. */
  readonly id?: string;
  /**
   * Opt in to wake on traffic: by autoPausePolicy (with this pauseTimeout) or by the legacy annotation
   * (with wake-timeout-seconds, the re-arm pause timeout). deadlineSeconds sets our per-sandbox wake
   * deadline (sandbox-extproc.io/wake-deadline-seconds).
   */
  readonly wake?:
    | { readonly by: 'policy'; readonly pauseTimeout?: string; readonly deadlineSeconds?: number }
    | { readonly by: 'annotation'; readonly pauseTimeoutSeconds?: number; readonly deadlineSeconds?: number };
  readonly accessToken?: string;
  readonly paused?: boolean;
  readonly labels?: Record<string, string>;
  /** spec.pauseTime and spec.shutdownTime (RFC 3339): the controller acts on them when they pass. */
  readonly pauseTime?: string;
  readonly shutdownTime?: string;
}

export const SANDBOX_ID_LABEL = 'agents.kruise.io/sandbox-id';

export interface ControllerOptions {
  /** How long a resume takes, from spec.paused=false to Running (per sandbox name, or for all). */
  resumeDelayMs?: number | ((name: string) => number);
  /** How long a pause takes, from spec.paused=true to Paused. */
  pauseDelayMs?: number;
  /** The pod IP a sandbox gets when it resumes; default: the one it had before pausing. */
  resumeIP?: (name: string) => string | undefined;
  /** Sandboxes whose resume does not complete until released (release()). */
  stuck?: Set<string>;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const key = (ns: string, name: string) => `${ns}/${name}`;

export class SandboxController {
  readonly options: ControllerOptions;
  readonly #api: CustomObjectsApi;
  readonly #config: KubeConfig;
  readonly #lastIP = new Map<string, string>();
  readonly #busy = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  /** Pending pauseTime / shutdownTime actions, per sandbox (re-armed on every observation). */
  readonly #deadlines = new Map<string, NodeJS.Timeout[]>();
  /** Latest observation of each sandbox. */
  readonly #latest = new Map<string, SandboxObject>();
  /** Pauses and deletions the controller made on its own because a timer passed. */
  readonly timerActions: { action: 'pause' | 'delete'; namespace: string; name: string }[] = [];
  /** Resumes seen while a pause was still in progress (the real controller refuses these). */
  readonly resumesWhilePausing: string[] = [];
  #watch: AbortController | undefined;
  #stopped = false;
  readonly #stopSignal = new AbortController();

  constructor(admin: KubeConfig, options: ControllerOptions = {}) {
    this.#config = admin;
    this.#api = admin.makeApiClient(CustomObjectsApi);
    this.options = options;
  }

  /**
   * Watches every Sandbox, re-watching after any end (the API server answers 429 while a new CRD's
   * watch cache initialises, and ends watches on restarts), from the last version seen.
   */
  async start(): Promise<void> {
    const backoff = new Backoff(50, 1000);
    let resourceVersion: string | undefined;
    const run = async (): Promise<void> => {
      if (this.#stopped) return;
      this.#watch = await new Watch(this.#config).watch(
        `/apis/${GROUP}/${VERSION}/${PLURAL}`,
        resourceVersion === undefined ? {} : { resourceVersion, allowWatchBookmarks: true },
        (type, object: SandboxObject & { code?: number }) => {
          backoff.reset();
          if (type === 'ERROR') resourceVersion = object.code === 410 ? undefined : resourceVersion;
          else resourceVersion = object.metadata.resourceVersion ?? resourceVersion;
          if (type === 'ADDED' || type === 'MODIFIED') {
            this.#latest.set(key(object.metadata.namespace, object.metadata.name), object);
            this.#armTimers(object);
            this.#reconcile(object);
          }
          if (type === 'DELETED') this.#forget(key(object.metadata.namespace, object.metadata.name));
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
    for (const k of [...this.#deadlines.keys()]) this.#forget(k);
  }

  /** Lets a stuck resume go on: the controller completes it from the sandbox's current state. */
  release(namespace: string, name: string): void {
    this.options.stuck?.delete(name);
    const latest = this.#latest.get(key(namespace, name));
    if (latest !== undefined) this.#reconcile(latest);
  }

  /** Claims a sandbox for a tenant: sets its sandbox-id label (OpenKruise does this on claim). */
  claim(namespace: string, name: string, id: string): Promise<SandboxObject> {
    return this.#patchMeta(namespace, name, { labels: { [SANDBOX_ID_LABEL]: id } });
  }

  /** Recycles a sandbox: clears its sandbox-id label, so it answers to <namespace>--<name> again. */
  recycle(namespace: string, name: string): Promise<SandboxObject> {
    return this.#patchMeta(namespace, name, { labels: { [SANDBOX_ID_LABEL]: null } });
  }

  async #patchMeta(namespace: string, name: string, metadata: Record<string, unknown>): Promise<SandboxObject> {
    return (await this.#api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body: { metadata } },
      mergePatch,
    )) as SandboxObject;
  }

  /** Re-arms the pauseTime and shutdownTime actions from the latest observation. */
  #armTimers(object: SandboxObject): void {
    const { namespace, name } = object.metadata;
    const k = key(namespace, name);
    for (const timer of this.#deadlines.get(k) ?? []) clearTimeout(timer);
    const timers: NodeJS.Timeout[] = [];
    const at = (text: string | null | undefined) => (text ? Date.parse(text) : NaN);
    const pauseAt = at(object.spec?.pauseTime);
    if (Number.isFinite(pauseAt) && object.spec?.paused !== true && object.metadata.deletionTimestamp === undefined) {
      timers.push(setTimeout(() => void this.#pauseForTimer(object), Math.max(0, pauseAt - Date.now())));
    }
    const shutdownAt = at(object.spec?.shutdownTime);
    if (Number.isFinite(shutdownAt) && object.metadata.deletionTimestamp === undefined) {
      timers.push(
        setTimeout(
          () => {
            this.timerActions.push({ action: 'delete', namespace, name });
            this.delete(namespace, name).catch(() => undefined);
          },
          Math.min(Math.max(0, shutdownAt - Date.now()), 2 ** 31 - 1),
        ),
      );
    }
    this.#deadlines.set(k, timers);
  }

  /** handlePauseTimeout: spec.paused=true with an optimistic lock; a conflict waits for the next event. */
  async #pauseForTimer(object: SandboxObject): Promise<void> {
    const { namespace, name, resourceVersion } = object.metadata;
    // Recorded before the patch: its watch event may reach a watcher before the patch call returns.
    const action = { action: 'pause' as const, namespace, name };
    this.timerActions.push(action);
    try {
      await this.#api.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace,
          name,
          body: { metadata: { resourceVersion }, spec: { paused: true } },
        },
        mergePatch,
      );
    } catch {
      // 409: the object changed since; its next event re-arms the timer from the new state.
      this.timerActions.splice(this.timerActions.indexOf(action), 1);
    }
  }

  #forget(k: string): void {
    for (const timer of this.#deadlines.get(k) ?? []) clearTimeout(timer);
    this.#deadlines.delete(k);
    this.#latest.delete(k);
  }

  async create(sandbox: NewSandbox): Promise<SandboxObject> {
    const annotations: Record<string, string> = {};
    const spec: SandboxObject['spec'] = {
      paused: sandbox.paused ?? false,
      ...(sandbox.pauseTime === undefined ? {} : { pauseTime: sandbox.pauseTime }),
      ...(sandbox.shutdownTime === undefined ? {} : { shutdownTime: sandbox.shutdownTime }),
    };
    if (sandbox.wake?.by === 'policy')
      spec.autoPausePolicy = { resume: { onIngressTraffic: sandbox.wake.pauseTimeout ? { pauseTimeout: sandbox.wake.pauseTimeout } : {} } };
    if (sandbox.wake?.by === 'annotation') {
      annotations['agents.kruise.io/wake-on-traffic'] = 'true';
      if (sandbox.wake.pauseTimeoutSeconds !== undefined)
        annotations['agents.kruise.io/wake-timeout-seconds'] = String(sandbox.wake.pauseTimeoutSeconds);
    }
    if (sandbox.wake?.deadlineSeconds !== undefined)
      annotations['sandbox-extproc.io/wake-deadline-seconds'] = String(sandbox.wake.deadlineSeconds);
    if (sandbox.accessToken !== undefined) annotations['agents.kruise.io/runtime-access-token'] = sandbox.accessToken;
    const labels = { ...(sandbox.labels ?? {}), ...(sandbox.id ? { [SANDBOX_ID_LABEL]: sandbox.id } : {}) };
    const created = (await this.#api.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: sandbox.namespace,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Sandbox', metadata: { name: sandbox.name, labels, annotations }, spec },
    })) as SandboxObject;
    this.#lastIP.set(key(sandbox.namespace, sandbox.name), sandbox.podIP);
    return this.setStatus(sandbox.namespace, sandbox.name, sandbox.paused ? pausedStatus() : runningStatus(sandbox.podIP)).then(
      (o) => o ?? created,
    );
  }

  /** Asks for a pause, as a user or the auto-pause timer would; the controller then completes it. */
  pause(namespace: string, name: string): Promise<SandboxObject> {
    return this.patchSpec(namespace, name, { paused: true });
  }

  async patchSpec(namespace: string, name: string, spec: Record<string, unknown>): Promise<SandboxObject> {
    return (await this.#api.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body: { spec } },
      mergePatch,
    )) as SandboxObject;
  }

  async setStatus(namespace: string, name: string, status: SandboxObject['status']): Promise<SandboxObject> {
    return (await this.#api.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: PLURAL, namespace, name, body: { status } },
      mergePatch,
    )) as SandboxObject;
  }

  /** Moves a running sandbox to another pod IP (a rescheduled pod). */
  async setPodIP(namespace: string, name: string, podIP: string): Promise<SandboxObject> {
    this.#lastIP.set(key(namespace, name), podIP);
    return this.setStatus(namespace, name, runningStatus(podIP));
  }

  async delete(namespace: string, name: string): Promise<void> {
    await this.#api.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, namespace, name });
  }

  get(namespace: string, name: string): Promise<SandboxObject> {
    return this.#api.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace,
      name,
    }) as Promise<SandboxObject>;
  }

  #reconcile(object: SandboxObject): void {
    const { namespace, name } = object.metadata;
    const k = key(namespace, name);
    const phase = object.status?.phase;
    const paused = object.spec?.paused === true;
    if (this.#busy.has(k)) {
      if (!paused && this.#pausing.has(k)) this.resumesWhilePausing.push(k);
      return;
    }
    if (phase === 'Running' && paused) {
      this.#busy.add(k);
      this.#pausing.add(k);
      this.#later(this.options.pauseDelayMs ?? 0, async () => {
        await this.setStatus(namespace, name, pausedStatus());
        this.#pausing.delete(k);
        this.#busy.delete(k);
      });
    } else if (phase === 'Paused' && !paused) {
      if (this.options.stuck?.has(name)) return;
      this.#busy.add(k);
      // Deleted or replaced meanwhile: the later Running write fails the same way and is dropped too.
      this.setStatus(namespace, name, {
        phase: 'Resuming',
        podInfo: { podIP: '' },
        conditions: [condition('Ready', 'False', 'PodReady'), condition('SandboxPaused', 'False', 'Resuming')],
      }).catch(() => undefined);
      const delayMs =
        typeof this.options.resumeDelayMs === 'function' ? this.options.resumeDelayMs(name) : (this.options.resumeDelayMs ?? 0);
      this.#later(delayMs, async () => {
        const ip = this.options.resumeIP?.(name) ?? this.#lastIP.get(k) ?? '';
        this.#lastIP.set(k, ip);
        await this.setStatus(namespace, name, runningStatus(ip));
        this.#busy.delete(k);
      });
    }
  }

  readonly #pausing = new Set<string>();

  #later(ms: number, work: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      work().catch(() => undefined);
    }, ms);
    this.#timers.add(timer);
  }
}

/**
 * A condition with every field OpenKruise's CRD requires (reason, message, lastTransitionTime): its
 * schema refuses a status without them, as it refuses the real controller's.
 */
const condition = (type: string, status: string, reason: string) => ({
  type,
  status,
  reason,
  message: '',
  lastTransitionTime: new Date().toISOString(),
});

export function runningStatus(podIP: string): SandboxObject['status'] {
  return {
    phase: 'Running',
    podInfo: { podIP },
    conditions: [
      condition('Ready', 'True', 'PodReady'),
      condition('SandboxPaused', 'False', 'ResumeSucceed'),
      condition('SandboxResumed', 'True', 'ResumeSucceed'),
    ],
  };
}

export function pausedStatus(): SandboxObject['status'] {
  return {
    phase: 'Paused',
    podInfo: { podIP: '' },
    conditions: [condition('Ready', 'False', 'PodReady'), condition('SandboxPaused', 'True', 'StopPauseSucceed')],
  };
}
