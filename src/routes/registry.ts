// The route table. Sources (Kubernetes watch, file) write observations of objects; the decision core
// reads by sandbox ID. An object is identified by its UID, and its sandbox ID may change over its life
// (OpenKruise sets the sandbox-id label on claim and clears it on recycle), so the table keeps:
// - one observation per UID, applied only when its resourceVersion is newer than the one held;
// - an ID index over those observations: an update that moves a UID to another ID retires the old ID
//   at once, and a deletion removes by UID;
// - fail-closed IDs: when two live objects claim one ID, neither is served until only one claims it
//   (never last-writer-wins: whoever could label a Sandbox would capture another tenant's traffic);
// - fenced UIDs: a deleted object's late events can never bring its old IP back.
import type { SandboxKind } from '../sandbox-kinds/kind.ts';
import { ROUTE_STATES, type Route, type RouteState } from './route.ts';

/** Called with an ID whose answer changed: its route now, or undefined when no route serves it. */
export type RouteListener = (id: string, route: Route | undefined) => void;

/** The read side the request path needs (declared by its consumer, the decision core). */
export interface RouteLookup {
  get(id: string): Route | undefined;
  /** Whether more than one object claims this ID (so none is served). */
  conflicted(id: string): boolean;
  readonly ready: boolean;
}

export interface RegistryHooks {
  /** An ID became claimed by several objects (claimants listed), or is claimed by one again (empty list). */
  readonly onConflict?: (id: string, claimants: readonly Route[]) => void;
  /** A listener threw: reported, never allowed to stop the change reaching the table or other listeners. */
  readonly onListenerError?: (error: unknown) => void;
}

const FENCE_CAPACITY = 65_536;

/**
 * Compares Kubernetes resourceVersions. They are opaque by contract but etcd revisions in practice:
 * numeric ones compare as integers; anything else counts as newer when it differs, so an unfamiliar
 * store degrades to "last write wins" rather than to "never update".
 */
export function isNewerVersion(candidate: string, held: string): boolean {
  if (/^[0-9]+$/.test(candidate) && /^[0-9]+$/.test(held)) {
    // Stryker disable next-line EqualityOperator: equivalent; the lengths differ here, so > and >= agree
    return candidate.length !== held.length ? candidate.length > held.length : candidate > held;
  }
  return candidate !== held;
}

export class RouteRegistry implements RouteLookup {
  /** Latest observation of each live object, by UID. */
  readonly #byUid = new Map<string, Route>();
  /** The route serving each ID claimed by exactly one object. */
  readonly #byId = new Map<string, Route>();
  /** IDs claimed by more than one object: the UIDs claiming them. Small, and empty in a healthy cluster. */
  readonly #conflicts = new Map<string, Set<string>>();
  readonly #fenced = new Map<string, true>();
  readonly #listeners = new Set<RouteListener>();
  readonly #hooks: RegistryHooks;
  #ready = false;

  constructor(hooks: RegistryHooks = {}) {
    this.#hooks = hooks;
  }

  get ready(): boolean {
    return this.#ready;
  }

  /** Objects held (including those whose ID is in conflict). */
  get size(): number {
    return this.#byUid.size;
  }

  /** IDs currently claimed by more than one object. */
  get conflicts(): number {
    return this.#conflicts.size;
  }

  get(id: string): Route | undefined {
    return this.#byId.get(id);
  }

  conflicted(id: string): boolean {
    return this.#conflicts.has(id);
  }

  /** The latest observation of one object. */
  byUid(uid: string): Route | undefined {
    return this.#byUid.get(uid);
  }

  /** Every object held, in no particular order (the idle suspender's sweep). */
  routes(): IterableIterator<Route> {
    return this.#byUid.values();
  }

  /** Marks the table loaded: the first full list (or file read) has been applied. */
  markReady(): void {
    this.#ready = true;
  }

  /** Applies an added/modified object. Returns whether the table changed. */
  upsert(route: Route): boolean {
    if (this.#fenced.has(route.uid)) return false;
    const held = this.#byUid.get(route.uid);
    if (held !== undefined && !isNewerVersion(route.resourceVersion, held.resourceVersion)) return false;
    this.#byUid.set(route.uid, route);
    if (held !== undefined && held.id !== route.id) this.#release(held.id, held.uid);
    this.#claim(route);
    return true;
  }

  /**
   * Replaces `held` by `route`, another reading of the same observation (same object, ID and version:
   * a route held while its pod was read, then what the read said), if the table still holds `held`.
   * Returns whether it did.
   */
  amend(held: Route, route: Route): boolean {
    if (this.#byUid.get(held.uid) !== held || route.uid !== held.uid || route.id !== held.id) return false;
    this.#byUid.set(route.uid, route);
    this.#claim(route);
    return true;
  }

  /** Applies a deletion, by UID; the UID is fenced either way. Returns whether the table changed. */
  remove(uid: string): boolean {
    this.#fence(uid);
    const held = this.#byUid.get(uid);
    if (held === undefined) return false;
    this.#byUid.delete(uid);
    this.#release(held.id, uid);
    return true;
  }

  /**
   * Applies a full list for one scope (one kind's objects in a namespace, or in all namespaces when
   * undefined; file routes have no kind): objects of that scope the list no longer holds are removed
   * (deleted while the watch was away), objects that changed ID give up their old ID, and then every
   * listed route is upserted. In that order an ID that passed from one object to another while the
   * watch was away never shows as claimed twice. Objects the list still holds are never dropped, so
   * traffic keeps flowing during a resync, and another kind's objects are never touched.
   */
  resync(namespace: string | undefined, routes: readonly Route[], kind: SandboxKind | undefined = undefined): void {
    const listed = new Map<string, Route>();
    for (const route of routes) listed.set(route.uid, route);
    for (const [uid, held] of this.#byUid) {
      if (listed.has(uid) || held.kind?.name !== kind?.name || (namespace !== undefined && held.namespace !== namespace)) continue;
      this.remove(uid);
    }
    for (const route of listed.values()) {
      const held = this.#byUid.get(route.uid);
      if (held !== undefined && held.id !== route.id && isNewerVersion(route.resourceVersion, held.resourceVersion)) {
        this.#release(held.id, held.uid);
      }
    }
    for (const route of listed.values()) this.upsert(route);
  }

  /**
   * Resolves with the first observation of `uid` newer than `resourceVersion` (at once if one is held),
   * or undefined once the object is gone or the signal aborts. Event-driven: it waits on the table's
   * own changes, which the watch feeds.
   */
  awaitNewer(uid: string, resourceVersion: string, signal: AbortSignal): Promise<Route | undefined> {
    const check = (): { route: Route | undefined } | undefined => {
      const held = this.#byUid.get(uid);
      if (held === undefined) return { route: undefined };
      return isNewerVersion(held.resourceVersion, resourceVersion) ? { route: held } : undefined;
    };
    const now = check();
    if (now !== undefined || signal.aborted) return Promise.resolve(now?.route);
    return new Promise((resolve) => {
      const done = (route: Route | undefined) => {
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
        resolve(route);
      };
      const onAbort = () => done(undefined);
      const unsubscribe = this.subscribe(() => {
        const seen = check();
        if (seen !== undefined) done(seen.route);
      });
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent; done() removes the listener whichever way it ends
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  subscribe(listener: RouteListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  countByState(): Record<RouteState, number> {
    const counts = Object.fromEntries(ROUTE_STATES.map((s) => [s, 0])) as Record<RouteState, number>;
    for (const route of this.#byUid.values()) counts[route.state] += 1;
    return counts;
  }

  /** Makes `route` (whose observation is already stored) claim its ID. */
  #claim(route: Route): void {
    const { id, uid } = route;
    const claimants = this.#conflicts.get(id);
    if (claimants !== undefined) {
      if (!claimants.has(uid)) {
        claimants.add(uid);
        this.#reportConflict(id, claimants);
      }
      return;
    }
    const held = this.#byId.get(id);
    if (held === undefined || held.uid === uid) {
      this.#byId.set(id, route);
      this.#emit(id, route);
      return;
    }
    // A second live object claims the ID: serve neither.
    this.#byId.delete(id);
    const both = new Set([held.uid, uid]);
    this.#conflicts.set(id, both);
    this.#reportConflict(id, both);
    this.#emit(id, undefined);
  }

  /** The object `uid` no longer claims `id` (it moved to another ID, or is gone). */
  #release(id: string, uid: string): void {
    const claimants = this.#conflicts.get(id);
    if (claimants !== undefined) {
      if (!claimants.delete(uid)) return;
      if (claimants.size > 1) {
        this.#reportConflict(id, claimants);
        return;
      }
      this.#conflicts.delete(id);
      const [remaining] = claimants;
      const route = remaining === undefined ? undefined : this.#byUid.get(remaining);
      this.#hooks.onConflict?.(id, []);
      if (route !== undefined) {
        this.#byId.set(id, route);
        this.#emit(id, route);
      }
      return;
    }
    if (this.#byId.get(id)?.uid !== uid) return;
    this.#byId.delete(id);
    this.#emit(id, undefined);
  }

  #reportConflict(id: string, uids: Set<string>): void {
    // Stryker disable next-line ConditionalExpression: equivalent; every claimant is held (a removal leaves the claimants first)
    const claimants = [...uids].map((uid) => this.#byUid.get(uid)).filter((r): r is Route => r !== undefined);
    this.#hooks.onConflict?.(id, claimants);
  }

  #fence(uid: string): void {
    this.#fenced.delete(uid);
    this.#fenced.set(uid, true);
    if (this.#fenced.size > FENCE_CAPACITY) {
      const oldest = this.#fenced.keys().next().value as string;
      this.#fenced.delete(oldest);
    }
  }

  #emit(id: string, route: Route | undefined): void {
    for (const listener of this.#listeners) {
      try {
        listener(id, route);
      } catch (error) {
        this.#hooks.onListenerError?.(error);
      }
    }
  }
}
