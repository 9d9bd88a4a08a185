// Routes from a YAML or JSON file, for use without Kubernetes. The file is re-read when it changes
// (the directory is watched, so atomic renames and ConfigMap symlink swaps are seen); a bad file at
// start stops start-up, a bad file later is logged and the routes in force are kept.
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { isValidSandboxId } from '../identification/identify.ts';
import type { Logger } from '../observability/logger.ts';
import type { RouteRegistry } from './registry.ts';
import { ROUTE_STATES, type Route, type RouteState } from './route.ts';
import type { UpstreamAddressPolicy } from './upstream-address.ts';

/**
 * Parses the routes file's text. Throws with the entry and field at fault. `uids` maps IDs of the
 * routes in force to their UIDs: a route kept across a reload keeps its UID (it is the same route,
 * updated); a route that is new, or back after being removed, gets a fresh one (removal fences a UID).
 */
export function parseRoutesFile(
  text: string,
  version: string,
  policy: UpstreamAddressPolicy,
  uids: ReadonlyMap<string, string> = new Map(),
): Route[] {
  const doc = parseYaml(text) as unknown;
  const list = (doc as { routes?: unknown } | null)?.routes;
  if (!Array.isArray(list)) throw new Error('expected a top-level "routes" list');
  const seen = new Set<string>();
  return list.map((entry: unknown, index) => {
    const e = (entry ?? {}) as Record<string, unknown>;
    const where = `routes[${index}]`;
    const id = e['id'];
    if (typeof id !== 'string' || !isValidSandboxId(id)) throw new Error(`${where}.id: expected a valid sandbox ID`);
    if (seen.has(id)) throw new Error(`${where}.id: ${id} is listed twice`);
    seen.add(id);
    const state = (e['state'] ?? 'running') as RouteState;
    if (!ROUTE_STATES.includes(state)) throw new Error(`${where}.state: expected one of ${ROUTE_STATES.join(', ')}`);
    const podIP = e['podIP'] ?? '';
    if (typeof podIP !== 'string') throw new Error(`${where}.podIP: expected an IP address (no host names: Envoy needs a literal IP)`);
    const refusal = podIP === '' ? undefined : policy.refusal(podIP);
    if (refusal === 'not an IP address') {
      throw new Error(`${where}.podIP: ${JSON.stringify(podIP)} is not an IP address (no host names: Envoy needs a literal IP)`);
    }
    if (refusal !== undefined) throw new Error(`${where}.podIP: ${podIP} may not be routed to: ${refusal}`);
    if (state === 'running' && podIP === '') throw new Error(`${where}.podIP: a running route needs one`);
    return {
      id,
      uid: uids.get(id) ?? `file:${version}:${id}`,
      namespace: '',
      name: id,
      resourceVersion: version,
      state,
      podIP,
      pauseRequested: state === 'paused',
      pausing: false,
      resuming: false,
      drainingIP: '',
      suspendedIP: '',
      phase: state,
      shutdownAt: undefined,
      pauseAt: undefined,
      activityAt: undefined,
      idleMs: 0,
      readySince: undefined,
      idleSuspendedAt: undefined,
      deleting: false,
      // A file has no controller to resume a sandbox, so file routes never wake.
      wake: undefined,
      accessTokenDigest: undefined,
      trafficAuth: false,
      kind: undefined,
    } satisfies Route;
  });
}

export class FileRouteSource {
  readonly #path: string;
  readonly #registry: RouteRegistry;
  readonly #policy: UpstreamAddressPolicy;
  readonly #log: Logger;
  /** UIDs of the routes in force, by ID. */
  #uids = new Map<string, string>();
  #watcher: FSWatcher | undefined;
  #version = 0;
  #reloading: Promise<void> = Promise.resolve();

  constructor(path: string, registry: RouteRegistry, policy: UpstreamAddressPolicy, logger: Logger) {
    this.#path = resolve(path);
    this.#registry = registry;
    this.#policy = policy;
    this.#log = logger.child({ component: 'file-source', path: this.#path });
  }

  /** Loads the file (throwing when it is bad) and starts watching it. */
  async start(): Promise<void> {
    await this.#load();
    this.#registry.markReady();
    const name = basename(this.#path);
    this.#watcher = watch(dirname(this.#path), (_event, file) => {
      if (file === null || file === name || file.startsWith('..')) this.#scheduleReload();
    });
    // A watcher error (the directory removed, say) must not crash the process: keep the routes in force.
    this.#watcher.on('error', (error) =>
      this.#log.error({ err: error.message }, 'watching the routes file failed; keeping the routes in force, no more reloads'),
    );
  }

  stop(): Promise<void> {
    this.#watcher?.close();
    return this.#reloading;
  }

  #scheduleReload(): void {
    this.#reloading = this.#reloading.then(() =>
      this.#load().catch((error: unknown) =>
        this.#log.error({ err: (error as Error).message }, 'routes file rejected; keeping the routes in force'),
      ),
    );
  }

  async #load(): Promise<void> {
    const text = await readFile(this.#path, 'utf8');
    let routes: Route[];
    try {
      routes = parseRoutesFile(text, String(++this.#version), this.#policy, this.#uids);
    } catch (error) {
      throw new Error(`routes file ${this.#path}: ${(error as Error).message}`, { cause: error });
    }
    this.#registry.resync(undefined, routes);
    this.#uids = new Map(routes.map((r) => [r.id, r.uid]));
    this.#log.info({ routes: routes.length }, 'routes loaded from file');
  }
}
