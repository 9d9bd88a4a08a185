// The route table: sandbox ID -> Route. Sources (Kubernetes watch, file) write; the decision core reads.
// Ordering and fencing live here so every source gets them:
// - an update applies only when its resourceVersion is newer than the one held;
// - a deleted object's UID is fenced, so a late event for it can never bring its old IP back, and a
//   sandbox recreated under the same name only ever routes to the new object's IP.
import { ROUTE_STATES, type Route, type RouteState } from './route.ts';

export type RouteListener = (id: string, route: Route | undefined) => void;

/** The read side the request path needs (declared by its consumer, the decision core). */
export interface RouteLookup {
  get(id: string): Route | undefined;
  readonly ready: boolean;
}

const FENCE_CAPACITY = 65_536;

/**
 * Compares Kubernetes resourceVersions. They are opaque by contract but etcd revisions in practice:
 * numeric ones compare as integers; anything else counts as newer when it differs, so an unfamiliar
 * store degrades to "last write wins" rather than to "never update".
 */
export function isNewerVersion(candidate: string, held: string): boolean {
  if (/^[0-9]+$/.test(candidate) && /^[0-9]+$/.test(held)) {
    return candidate.length !== held.length ? candidate.length > held.length : candidate > held;
  }
  return candidate !== held;
}

export class RouteRegistry implements RouteLookup {
  readonly #routes = new Map<string, Route>();
  readonly #fenced = new Map<string, true>();
  readonly #listeners = new Set<RouteListener>();
  #ready = false;

  get ready(): boolean {
    return this.#ready;
  }

  get size(): number {
    return this.#routes.size;
  }

  get(id: string): Route | undefined {
    return this.#routes.get(id);
  }

  /** Marks the table loaded: the first full list (or file read) has been applied. */
  markReady(): void {
    this.#ready = true;
  }

  /** Applies an added/modified object. Returns whether the table changed. */
  upsert(route: Route): boolean {
    if (this.#fenced.has(route.uid)) return false;
    const held = this.#routes.get(route.id);
    if (held !== undefined && !isNewerVersion(route.resourceVersion, held.resourceVersion)) return false;
    this.#routes.set(route.id, route);
    this.#emit(route.id, route);
    return true;
  }

  /** Applies a deletion. Only the object with this UID is removed; its UID is fenced either way. */
  remove(id: string, uid: string): boolean {
    this.#fence(uid);
    const held = this.#routes.get(id);
    if (held === undefined || held.uid !== uid) return false;
    this.#routes.delete(id);
    this.#emit(id, undefined);
    return true;
  }

  /**
   * Applies a full list for one scope (a namespace, or all when undefined): every listed route is
   * upserted, and routes of that scope the list no longer holds are removed (deleted while the watch
   * was away). Routes the list still holds are never dropped, so traffic keeps flowing during a resync.
   */
  resync(namespace: string | undefined, routes: Iterable<Route>): void {
    const seen = new Set<string>();
    for (const route of routes) {
      seen.add(route.id);
      this.upsert(route);
    }
    for (const [id, held] of this.#routes) {
      if (seen.has(id) || (namespace !== undefined && held.namespace !== namespace)) continue;
      this.remove(id, held.uid);
    }
  }

  subscribe(listener: RouteListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  countByState(): Record<RouteState, number> {
    const counts = Object.fromEntries(ROUTE_STATES.map((s) => [s, 0])) as Record<RouteState, number>;
    for (const route of this.#routes.values()) counts[route.state] += 1;
    return counts;
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
    for (const listener of this.#listeners) listener(id, route);
  }
}
