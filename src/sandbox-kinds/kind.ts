// The seam between the service and one family of Sandbox CRDs. Everything specific to a CRD (its group,
// versions, field paths, state rules and resume patch) lives behind this interface; nothing else reads
// raw objects. Several kinds may run in one process, each with its own watch; a Route carries its kind,
// so whatever acts on a route (resume, activity, relist) dispatches on it.
//
// Route IDs never collide across kinds: OpenKruise IDs are E2B IDs, which never contain '/' (a label
// value or `<namespace>--<name>`), and agent-sandbox IDs are always `<namespace>/<name>`. A request
// names one or the other through its own convention (identification/identify.ts), so it can only ever
// reach a sandbox of the family its convention names.
import type { Route } from '../routes/route.ts';

export type SandboxKindName = 'openkruise' | 'agent-sandbox';

export const SANDBOX_KIND_NAMES: readonly SandboxKindName[] = ['openkruise', 'agent-sandbox'];

export interface SandboxKind {
  /** Name used in config (`--sandbox-kind`). */
  readonly name: SandboxKindName;
  readonly group: string;
  /** Versions this kind reads and writes, preferred first. */
  readonly versions: readonly string[];
  /**
   * The version listed, watched and patched: versions[0] until useVersion says otherwise. With more than
   * one version, the route source asks the API server (discovery) which are served before its first
   * list and picks the first served one.
   */
  readonly version: string;
  useVersion(version: string): void;
  readonly plural: string;
  /**
   * Reads the routing facts of one object; undefined when the object is not usable (no uid, say).
   * `previous` is the route last held for the same object (same UID), when there is one: a few facts
   * (a pod seen terminating, a resume under way) follow from the object's history, not its present.
   */
  toRoute(object: unknown, previous?: Route): Route | undefined;
  /**
   * The name of the pod to read before `route` may serve, when the object alone cannot say whether the
   * pod it reports is alive (undefined: serve as derived). The route source holds the route as not
   * serving until the pod is read, then serves it only if that pod is not terminating and has the
   * reported address (routes/pod-check.ts).
   */
  podToConfirm?(object: unknown, route: Route): string | undefined;
  /** The JSON merge patch that resumes this sandbox (with metadata.uid as a precondition). */
  resumePatch(route: Route, now: Date): Record<string, unknown>;
  /**
   * The timer that activity (requests, open streams) keeps pushing back, when this sandbox has one: it
   * pauses at `deadline` (epoch ms) unless pushed, and a push sets it to now + `timeoutMs`.
   */
  activityTimer(route: Route): ActivityTimer | undefined;
  /** The JSON merge patch recording activity at `now` (pushes the timer; tied to the object's UID). */
  activityPatch(route: Route, now: Date): Record<string, unknown>;
  /**
   * The JSON merge patch that suspends an idle sandbox (tied to its UID and resourceVersion), for kinds
   * that sandbox-extproc suspends itself (those whose routes have an idle timeout).
   */
  idleSuspendPatch?(route: Route, now: Date): Record<string, unknown>;
}

export interface ActivityTimer {
  readonly deadline: number;
  readonly timeoutMs: number;
}

/** The first of the kind's versions the API server serves, or undefined when it serves none of them. */
export function chooseVersion(kind: Pick<SandboxKind, 'versions'>, served: readonly string[]): string | undefined {
  return kind.versions.find((v) => served.includes(v));
}
