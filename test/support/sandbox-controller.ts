// Test code only: plays the OpenKruise sandbox controller against the real API server. It creates
// Sandbox objects backed by local upstreams, completes pauses (phase Paused, SandboxPaused=True, pod IP
// cleared) and resumes (spec.paused=false -> Resuming -> Running, Ready=True, possibly a new pod IP)
// after injectable delays, and can be told to never finish a resume.
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
    pauseTime?: string;
    shutdownTime?: string;
    autoPausePolicy?: { resume?: { onIngressTraffic?: { pauseTimeout?: string } } };
  };
  status?: { phase?: string; podInfo?: { podIP?: string }; conditions?: { type: string; status: string }[] };
}

export interface NewSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly podIP: string;
  /** Sandbox ID label; default is <namespace>--<name>. */
  readonly id?: string;
  /** Opt in to wake on traffic: by autoPausePolicy (with this pauseTimeout) or by annotation. */
  readonly wake?:
    { readonly by: 'policy'; readonly pauseTimeout?: string } | { readonly by: 'annotation'; readonly timeoutSeconds?: number };
  readonly accessToken?: string;
  readonly paused?: boolean;
  readonly labels?: Record<string, string>;
}

export interface ControllerOptions {
  /** How long a resume takes, from spec.paused=false to Running (per sandbox name, or for all). */
  resumeDelayMs?: number | ((name: string) => number);
  /** How long a pause takes, from spec.paused=true to Paused. */
  pauseDelayMs?: number;
  /** The pod IP a sandbox gets when it resumes; default: the one it had before pausing. */
  resumeIP?: (name: string) => string | undefined;
  /** Sandboxes whose resume never completes. */
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
          if (type === 'ADDED' || type === 'MODIFIED') this.#reconcile(object);
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
  }

  async create(sandbox: NewSandbox): Promise<SandboxObject> {
    const annotations: Record<string, string> = {};
    const spec: SandboxObject['spec'] = { paused: sandbox.paused ?? false };
    if (sandbox.wake?.by === 'policy')
      spec.autoPausePolicy = { resume: { onIngressTraffic: sandbox.wake.pauseTimeout ? { pauseTimeout: sandbox.wake.pauseTimeout } : {} } };
    if (sandbox.wake?.by === 'annotation') {
      annotations['agents.kruise.io/wake-on-traffic'] = 'true';
      if (sandbox.wake.timeoutSeconds !== undefined)
        annotations['agents.kruise.io/wake-timeout-seconds'] = String(sandbox.wake.timeoutSeconds);
    }
    if (sandbox.accessToken !== undefined) annotations['agents.kruise.io/runtime-access-token'] = sandbox.accessToken;
    const labels = { ...(sandbox.labels ?? {}), ...(sandbox.id ? { 'agents.kruise.io/sandbox-id': sandbox.id } : {}) };
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
      void this.setStatus(namespace, name, {
        phase: 'Resuming',
        podInfo: { podIP: '' },
        conditions: [
          { type: 'Ready', status: 'False' },
          { type: 'SandboxPaused', status: 'False' },
        ],
      });
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

export function runningStatus(podIP: string): SandboxObject['status'] {
  return {
    phase: 'Running',
    podInfo: { podIP },
    conditions: [
      { type: 'Ready', status: 'True' },
      { type: 'SandboxPaused', status: 'False' },
      { type: 'SandboxResumed', status: 'True' },
    ],
  };
}

export function pausedStatus(): SandboxObject['status'] {
  return {
    phase: 'Paused',
    podInfo: { podIP: '' },
    conditions: [
      { type: 'Ready', status: 'False' },
      { type: 'SandboxPaused', status: 'True' },
    ],
  };
}
