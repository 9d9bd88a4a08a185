// Fills the registry from a Kubernetes list + watch of one Sandbox kind, per watched namespace (or the
// whole cluster). The watch is not trusted to run forever:
// - 410 Gone (the resourceVersion was compacted away) -> relist, keeping current routes meanwhile;
// - any other error or a closed stream -> re-watch from the last resourceVersion seen, with backoff;
// - no event (bookmarks included) for watchIdleTimeout -> the watch is aborted and restarted;
// - every resyncInterval a full relist catches deletions missed while disconnected.
// A kind that speaks several versions (agent-sandbox) first asks API discovery which one is served.
import { ApisApi, CoreV1Api, CustomObjectsApi, KubeConfig, Watch } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { chooseVersion, type SandboxKind } from '../sandbox-kinds/kind.ts';
import { describeError } from '../observability/describe-error.ts';
import { Backoff, delay } from './backoff.ts';
import { awaitingPod, confirmedByPod, podCheckOutcome, type PodCheckOutcome, type PodFacts } from './pod-check.ts';
import type { RouteRegistry } from './registry.ts';
import type { Route } from './route.ts';
import type { RouteScreen } from './screen.ts';

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly kind: SandboxKind;
  /** Namespaces to watch; empty watches the whole cluster. */
  readonly namespaces: readonly string[];
  readonly labelSelector: string;
  readonly resyncIntervalMs: number;
  readonly watchIdleTimeoutMs: number;
  readonly registry: RouteRegistry;
  /** Every observation passes through it (pod IPs that may not be routed to). */
  readonly screen: RouteScreen;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'watchRestarts' | 'watchEvents' | 'podChecks'>;
  /**
   * Called once, when every scope has completed its first list. The registry's readiness is the
   * caller's to set: with several kinds, it waits for every source.
   */
  readonly onSynced?: () => void;
  /** How long one pod read may take before it counts as failed and is retried (default 5 s). */
  readonly podReadTimeoutMs?: number;
  /**
   * The list and watch calls (default: the Kubernetes client on kubeConfig). A seam for unit tests of
   * the loop's own decisions (relist on 410, re-watch otherwise); the integration tests drive the real
   * API server through the default.
   */
  readonly api?: SandboxApi;
}

/** One page of a list call. */
export interface ListRequest {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly limit: number;
  /** Absent: the whole cluster. */
  readonly namespace?: string;
  readonly _continue?: string;
  readonly labelSelector?: string;
}

export interface ListPage {
  readonly items?: unknown[];
  readonly metadata?: { readonly continue?: string; readonly resourceVersion?: string };
}

/** The calls a scope makes, shaped as @kubernetes/client-node's CustomObjectsApi list and Watch. */
export interface SandboxApi {
  /** One pod by name (the pod a kind asks to confirm); undefined when there is none (404). */
  readPod(namespace: string, name: string): Promise<PodFacts | undefined>;
  list(request: ListRequest): Promise<ListPage>;
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    onEvent: (type: string, object: unknown) => void,
    onDone: (error: unknown) => void,
  ): Promise<AbortController>;
}

/** The real calls, through the Kubernetes client. */
function clientApi(kubeConfig: KubeConfig, watchIdleTimeoutMs: number): SandboxApi {
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  return {
    readPod: (namespace, name) =>
      core.readNamespacedPod({ namespace, name }).then(
        (pod) => ({ ip: pod.status?.podIP ?? '', terminating: pod.metadata?.deletionTimestamp !== undefined }),
        (error: unknown) => {
          if ((error as { code?: unknown }).code === 404) return undefined;
          throw error;
        },
      ),
    list: ({ namespace, ...request }) =>
      (namespace === undefined
        ? api.listClusterCustomObject(request)
        : api.listNamespacedCustomObject({ ...request, namespace })) as Promise<ListPage>,
    watch: (path, query, onEvent, onDone) => {
      const watch = new Watch(kubeConfig);
      // The client aborts a watch that sends nothing for this long: with bookmarks asked for, that is
      // the "silent watch" watchdog.
      (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = watchIdleTimeoutMs;
      return watch.watch(path, query, onEvent, onDone);
    },
  };
}

const PAGE_SIZE = 1000;
const POD_READ_TIMEOUT_MS = 5_000;

/** The listed route, still suspect when the route held before was and it reports that same address. */
function suspectStill(route: Route, previous: Route | undefined): Route {
  const suspect = previous?.uid === route.uid ? previous.suspendedIP : '';
  return suspect !== '' && route.suspendedIP === '' && route.podIP === suspect ? { ...route, suspendedIP: suspect } : route;
}

/** The promise's outcome, or a rejection once `ms` have passed (the call itself is left to finish). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type WatchEnd = 'expired' | 'resync' | 'closed' | 'idle' | 'error' | 'stopped';

/** Starts one list-watch loop per scope; onSynced fires once every scope has listed. */
export class KubernetesRouteSource {
  readonly #options: KubernetesSourceOptions;
  readonly #abort = new AbortController();
  readonly #loops: Promise<void>[] = [];
  #unsynced: number;
  /** The version discovery of this source's kind, shared by its scopes; reset when it fails. */
  #discovery: Promise<void> | undefined;

  constructor(options: KubernetesSourceOptions) {
    this.#options = options;
    this.#unsynced = Math.max(options.namespaces.length, 1);
  }

  start(): void {
    const scopes = this.#options.namespaces.length === 0 ? [undefined] : this.#options.namespaces;
    for (const namespace of scopes)
      this.#loops.push(
        new ScopeLoop(
          this.#options,
          namespace,
          this.#abort.signal,
          () => this.#synced(),
          () => this.#discover(),
        ).run(),
      );
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.allSettled(this.#loops);
  }

  #synced(): void {
    this.#unsynced -= 1;
    if (this.#unsynced === 0) this.#options.onSynced?.();
  }

  /** Picks the kind's version once, from the versions the API server serves for its group. */
  #discover(): Promise<void> {
    const kind = this.#options.kind;
    if (kind.versions.length <= 1) return Promise.resolve();
    this.#discovery ??= (async () => {
      const list = await this.#options.kubeConfig.makeApiClient(ApisApi).getAPIVersions();
      const served = list.groups.find((g) => g.name === kind.group)?.versions.map((v) => v.version) ?? [];
      const chosen = chooseVersion(kind, served);
      if (chosen === undefined) {
        throw new Error(
          `the API server serves none of ${kind.group} ${kind.versions.join(', ')} (served: ${served.join(', ') || 'none'}); is the ${kind.name} Sandbox CRD installed?`,
        );
      }
      kind.useVersion(chosen);
      this.#options.logger.info({ kind: kind.name, group: kind.group, version: chosen, served }, 'sandbox API version chosen');
    })().catch((error: unknown) => {
      this.#discovery = undefined;
      throw error;
    });
    return this.#discovery;
  }
}

class ScopeLoop {
  readonly #o: KubernetesSourceOptions;
  readonly #namespace: string | undefined;
  readonly #signal: AbortSignal;
  readonly #onFirstSync: () => void;
  readonly #discover: () => Promise<void>;
  readonly #api: SandboxApi;
  readonly #log: Logger;
  readonly #backoff = new Backoff(200, 5_000);
  #synced = false;
  #resourceVersion = '';

  constructor(
    options: KubernetesSourceOptions,
    namespace: string | undefined,
    signal: AbortSignal,
    onFirstSync: () => void,
    discover: () => Promise<void>,
  ) {
    this.#o = options;
    this.#namespace = namespace;
    this.#signal = signal;
    this.#onFirstSync = onFirstSync;
    this.#discover = discover;
    this.#api = options.api ?? clientApi(options.kubeConfig, options.watchIdleTimeoutMs);
    this.#log = options.logger.child({ component: 'kubernetes-source', kind: options.kind.name, namespace: namespace ?? '*' });
  }

  async run(): Promise<void> {
    while (!this.#signal.aborted) {
      try {
        await this.#list();
      } catch (error) {
        if (this.#signal.aborted) return;
        this.#o.metrics.watchRestarts.inc({ reason: 'error' });
        this.#log.warn({ err: describeError(error) }, 'listing sandboxes failed; routes kept, retrying');
        await delay(this.#backoff.next(), this.#signal);
        continue;
      }
      await this.#watchUntilRelist();
    }
  }

  async #list(): Promise<void> {
    await this.#discover();
    const { group, version, plural } = this.#o.kind;
    const routes: Route[] = [];
    const checks: { route: Route; held: Route; pod: string }[] = [];
    let token: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.#api.list({
        group,
        version,
        plural,
        limit: PAGE_SIZE,
        ...(this.#namespace === undefined ? {} : { namespace: this.#namespace }),
        ...(token ? { _continue: token } : {}),
        ...(this.#o.labelSelector ? { labelSelector: this.#o.labelSelector } : {}),
      });
      for (const item of page.items ?? []) {
        // A list is not history: what happened between two observations the watch did not see. Facts
        // that follow from history (a pod seen terminating) are dropped rather than kept forever, but for
        // one: an address reported while a suspension was asked for, still reported (a pod that may be
        // dying), which costs at most one needless pod read if the pod was replaced meanwhile.
        const observed = this.#o.kind.toRoute(item);
        if (observed === undefined) continue;
        const route = suspectStill(this.#o.screen.admit(observed), this.#previous(item));
        const check = this.#held(item, route);
        if (check === undefined) routes.push(route);
        else {
          routes.push(check.held);
          checks.push({ route, ...check });
        }
      }
      token = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    } while (token !== undefined && !this.#signal.aborted);
    this.#o.registry.resync(this.#namespace, routes, this.#o.kind);
    // Read for the held routes the table took (a listed version no newer than the one held leaves that
    // one, and its read, in place).
    for (const { route, held, pod } of checks) if (this.#o.registry.byUid(route.uid) === held) this.#confirm(route, held, pod);
    this.#resourceVersion = resourceVersion;
    this.#log.debug({ routes: routes.length, resourceVersion }, 'listed sandboxes');
    if (!this.#synced) {
      this.#synced = true;
      this.#onFirstSync();
    }
  }

  /** Watches from the listed resourceVersion, re-watching after breaks, until a relist is due. */
  async #watchUntilRelist(): Promise<void> {
    const relistAt = Date.now() + this.#o.resyncIntervalMs;
    while (!this.#signal.aborted) {
      const end = await this.#watchOnce(relistAt);
      if (end === 'stopped') return;
      if (end === 'resync') return;
      this.#o.metrics.watchRestarts.inc({ reason: end });
      if (end === 'expired') {
        this.#log.info('watch expired (410); relisting');
        return;
      }
      if (end === 'error') {
        this.#log.warn('watch failed; routes kept, re-watching');
        await delay(this.#backoff.next(), this.#signal);
      }
      if (Date.now() >= relistAt) return;
    }
  }

  #watchOnce(relistAt: number): Promise<WatchEnd> {
    const { group, version, plural } = this.#o.kind;
    const path =
      this.#namespace === undefined
        ? `/apis/${group}/${version}/${plural}`
        : `/apis/${group}/${version}/namespaces/${this.#namespace}/${plural}`;
    const query = {
      allowWatchBookmarks: true,
      resourceVersion: this.#resourceVersion,
      // The server ends the watch when the relist is due.
      timeoutSeconds: Math.max(1, Math.ceil((relistAt - Date.now()) / 1000)),
      ...(this.#o.labelSelector ? { labelSelector: this.#o.labelSelector } : {}),
    };
    return new Promise<WatchEnd>((resolve) => {
      let end: WatchEnd | undefined;
      let controller: AbortController | undefined;
      const finish = (reason: WatchEnd) => {
        end ??= reason;
        controller?.abort();
      };
      const onAbort = () => finish('stopped');
      this.#signal.addEventListener('abort', onAbort, { once: true });
      const onEvent = (type: string, object: unknown) => {
        if (end !== undefined) return;
        this.#o.metrics.watchEvents.inc({ type });
        this.#backoff.reset();
        let handled: WatchEnd | undefined;
        try {
          handled = this.#apply(type, object);
        } catch (error) {
          // Never lose an event to a bug: the resourceVersion did not advance, so the re-watch (after
          // backoff) delivers this event again.
          this.#log.error({ err: error, type }, 'applying a watch event failed; re-watching from the last applied version');
          handled = 'error';
        }
        if (handled !== undefined) finish(handled);
      };
      const onDone = (error: unknown) => {
        this.#signal.removeEventListener('abort', onAbort);
        if (end === undefined) {
          if (error === null || error === undefined) end = Date.now() >= relistAt - 1000 ? 'resync' : 'closed';
          else end = (error as { name?: string }).name === 'TimeoutError' ? 'idle' : 'error';
          if (end === 'error') this.#log.debug({ err: describeError(error) }, 'watch ended with an error');
        }
        resolve(end);
      };
      this.#api.watch(path, query, onEvent, onDone).then(
        (c) => {
          controller = c;
          if (end !== undefined) c.abort();
        },
        (error: unknown) => onDone(error),
      );
    });
  }

  /**
   * Reads the pod of `held` (a route the table holds as awaiting its pod read, see pod-check.ts), then
   * amends the route by what the read says, unless a newer observation has replaced `held` meanwhile
   * (that one decides). A read that fails or takes longer than podReadTimeoutMs is retried with backoff
   * for as long as `held` stands: serving a pod that may be dying is not an option.
   */
  #confirm(route: Route, held: Route, pod: string): void {
    const backoff = new Backoff(200, 5_000);
    const current = () => !this.#signal.aborted && this.#o.registry.byUid(route.uid) === held;
    const timeoutMs = this.#o.podReadTimeoutMs ?? POD_READ_TIMEOUT_MS;
    const attempt = async (): Promise<void> => {
      while (current()) {
        let outcome: Exclude<PodCheckOutcome, 'error'>;
        try {
          outcome = podCheckOutcome(route, await withTimeout(this.#api.readPod(route.namespace, pod), timeoutMs));
        } catch (error) {
          if ((error as { code?: unknown }).code !== 403) {
            this.#o.metrics.podChecks.inc({ outcome: 'error' });
            this.#log.warn(
              { sandboxId: route.id, pod, err: describeError(error) },
              'reading the pod of a resumed sandbox failed; held, retrying',
            );
            await delay(backoff.next(), this.#signal);
            continue;
          }
          outcome = 'forbidden';
          this.#log.error(
            { sandboxId: route.id, pod, err: describeError(error) },
            'may not read pods (get pods): the pod of a resumed agent-sandbox Sandbox is served unchecked; grant the rules of charts/sandbox-extproc/files/rbac-rules.yaml',
          );
        }
        this.#o.metrics.podChecks.inc({ outcome });
        if (outcome !== 'serving' && outcome !== 'forbidden') {
          this.#log.info(
            { sandboxId: route.id, pod, podIP: route.podIP, outcome },
            'sandbox reports a pod that does not serve; held until the controller reports again',
          );
        }
        this.#o.registry.amend(held, confirmedByPod(route, outcome));
        return;
      }
    };
    void attempt();
  }

  /** The route to store for a running observation: held for a pod read when its kind asks for one. */
  #held(object: unknown, route: Route): { held: Route; pod: string } | undefined {
    const pod = this.#o.kind.podToConfirm?.(object, route);
    return pod === undefined ? undefined : { held: awaitingPod(route), pod };
  }

  /** The route held for this object's UID, if any: its history, for the kind. */
  #previous(object: unknown): Route | undefined {
    const uid = (object as { metadata?: { uid?: unknown } } | undefined)?.metadata?.uid;
    return typeof uid === 'string' ? this.#o.registry.byUid(uid) : undefined;
  }

  /** Applies one watch event; returns why the watch must end, if it must. */
  #apply(type: string, object: unknown): WatchEnd | undefined {
    const meta = (object as { metadata?: { resourceVersion?: string } } | undefined)?.metadata;
    if (type === 'ERROR') {
      const code = (object as { code?: number } | undefined)?.code;
      return code === 410 ? 'expired' : 'error';
    }
    if (type === 'BOOKMARK') {
      if (meta?.resourceVersion) this.#resourceVersion = meta.resourceVersion;
      return undefined;
    }
    const previous = this.#previous(object);
    const observed = this.#o.kind.toRoute(object, previous);
    if (observed === undefined) return undefined;
    const route = this.#o.screen.admit(observed);
    if (type === 'DELETED') this.#o.registry.remove(route.uid);
    else if (type === 'ADDED' || type === 'MODIFIED') {
      const check = this.#held(object, route);
      if (check === undefined) this.#o.registry.upsert(route);
      else if (this.#o.registry.upsert(check.held)) this.#confirm(route, check.held, check.pod);
    }
    // Advance only after the event was applied, so a restart never skips one.
    if (route.resourceVersion) this.#resourceVersion = route.resourceVersion;
    return undefined;
  }
}
