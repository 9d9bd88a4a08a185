// The seam between the service and one family of Sandbox CRDs. Everything specific to a CRD (its group,
// field paths, state rules and resume patch) lives behind this interface; nothing else reads raw objects.
import type { Route } from '../routes/route.ts';

export interface SandboxKind {
  /** Name used in config (`--sandbox-kind`). */
  readonly name: string;
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** Reads the routing facts of one object; undefined when the object is not usable (no uid, say). */
  toRoute(object: unknown): Route | undefined;
  /** The JSON merge patch that resumes this sandbox. */
  resumePatch(route: Route, now: Date): Record<string, unknown>;
  /**
   * The timer that activity (requests, open streams) keeps pushing back, when this sandbox has one: it
   * pauses at `deadline` (epoch ms) unless pushed, and a push sets it to now + `timeoutMs`.
   */
  activityTimer(route: Route): ActivityTimer | undefined;
  /** The JSON merge patch recording activity at `now` (pushes the timer; tied to the object's UID). */
  activityPatch(route: Route, now: Date): Record<string, unknown>;
}

export interface ActivityTimer {
  readonly deadline: number;
  readonly timeoutMs: number;
}
