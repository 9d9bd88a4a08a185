// What the service keeps of a sandbox: only the facts routing and waking need, never the whole object.
// Routes are immutable; an update replaces the object, so answers prepared for one (see
// protocol/answers.ts) can be cached against its identity.
import type { SandboxKind } from '../sandbox-kinds/kind.ts';

/** Routing state, derived from the sandbox object by its kind's rules (see sandbox-kinds/). */
export type RouteState = 'running' | 'paused' | 'creating' | 'available' | 'dead';

export const ROUTE_STATES: readonly RouteState[] = ['running', 'paused', 'creating', 'available', 'dead'];

export interface WakePolicy {
  /**
   * The sandbox's pause timeout in seconds, as its kind defines it (0: none configured). A wake re-arms
   * the sandbox's pause timer from it (see the kind's resume patch).
   */
  readonly pauseAfterSeconds: number;
  /** Per-sandbox wake deadline in seconds, overriding the global one (0: use the global). */
  readonly timeoutSeconds: number;
}

export interface Route {
  /**
   * The sandbox ID requests name. Unique across kinds by construction: OpenKruise IDs (E2B IDs) never
   * contain '/', agent-sandbox IDs are always `<namespace>/<name>` (see sandbox-kinds/kind.ts).
   */
  readonly id: string;
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
  readonly state: RouteState;
  /** Pod IP, '' when the sandbox has none (or reported one that may not be routed to). */
  readonly podIP: string;
  /** spec.paused as last seen: false while paused means a resume is already under way. */
  readonly pauseRequested: boolean;
  /** The controller is still pausing; a resume now would be refused. */
  readonly pausing: boolean;
  /**
   * A resume is under way: asked to run again after a pause, not serving yet (the controller is bringing
   * up the new pod). Requests for a sandbox that may be woken wait for it, as they would for a wake.
   */
  readonly resuming: boolean;
  /**
   * The address of a pod that is going away (terminating) and must never be routed to, though the
   * controller may report it as serving ('' when none): agent-sandbox reuses a terminating pod when
   * resumed during its grace period, and reports it Ready.
   */
  readonly drainingIP: string;
  /**
   * The address the Sandbox reported while asked to suspend (its pod being deleted, or about to be),
   * kept while the Sandbox still reports it ('' otherwise, and once a read of that pod found it
   * serving): agent-sandbox's controller may report that pod Ready again after a resume without ever
   * saying it was deleted, so the pod is read before that address is served (routes/pod-check.ts).
   */
  readonly suspendedIP: string;
  /** The controller's own word for the object's state (its phase, or its Ready reason), for logs. */
  readonly phase: string;
  /** Epoch ms after which the sandbox is dead (spec.shutdownTime), or undefined. */
  readonly shutdownAt: number | undefined;
  /** Epoch ms at which the controller pauses the sandbox (spec.pauseTime), or undefined. */
  readonly pauseAt: number | undefined;
  /** Epoch ms of the last activity recorded on the object by this service (agent-sandbox), or undefined. */
  readonly activityAt: number | undefined;
  /**
   * Idle suspension (agent-sandbox): the sandbox is suspended after this long without traffic, in ms;
   * 0 when it never is.
   */
  readonly idleMs: number;
  /** Epoch ms since when the sandbox has served (its controller's Ready condition), or undefined. */
  readonly readySince: number | undefined;
  /** Epoch ms at which sandbox-extproc last suspended it for idleness (recorded on the object), or undefined. */
  readonly idleSuspendedAt: number | undefined;
  /** Being deleted. */
  readonly deleting: boolean;
  /** Present when the sandbox opted in to wake on traffic. */
  readonly wake: WakePolicy | undefined;
  /** SHA-256 of the sandbox's access token, when it has one: the token itself is never kept. */
  readonly accessTokenDigest: Buffer | undefined;
  /**
   * Requests must carry a traffic access token (a JWT) whose sandbox claims name this route's ID and UID,
   * in place of the access token (OpenKruise's security.agents.kruise.io/enable-jwt-auth). Absent: false.
   */
  readonly trafficAuth?: boolean;
  /**
   * The Sandbox family the object belongs to (one shared instance per process, so a pointer per route):
   * resumes, activity and relists dispatch on it. Undefined for file routes, which have no controller.
   */
  readonly kind: SandboxKind | undefined;
}

export function isResumable(route: Route, now: number): boolean {
  return !route.deleting && (route.shutdownAt === undefined || now < route.shutdownAt);
}
