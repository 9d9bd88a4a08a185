// OpenKruise agents' Sandbox (agents.kruise.io/v1alpha1): field paths, the routing-state rules of the
// reference gateway, and the resume patch. See ../../../shared/reference.md section 1.
import { createHash } from 'node:crypto';
import type { Route, RouteState, WakePolicy } from '../routes/route.ts';
import { wakeDeadlineSeconds } from './annotations.ts';
import {
  asObj,
  asStr,
  conditionTrue,
  findCondition,
  Interner,
  objectParts,
  parseGoDurationSeconds,
  parseTime,
  rfc3339,
  type Obj,
} from './fields.ts';

export { parseGoDurationSeconds } from './fields.ts';
import type { ActivityTimer, SandboxKind } from './kind.ts';

const SANDBOX_ID_LABEL = 'agents.kruise.io/sandbox-id';
const WAKE_ANNOTATION = 'agents.kruise.io/wake-on-traffic';
const WAKE_TIMEOUT_ANNOTATION = 'agents.kruise.io/wake-timeout-seconds';
const TOKEN_ANNOTATION = 'agents.kruise.io/runtime-access-token';
/** The older annotation of the same token, read when the newer one is absent or empty (as upstream's GetAccessToken). */
const LEGACY_TOKEN_ANNOTATION = 'e2b.agents.kruise.io/envd-access-token';
/** Exactly "true": requests need a traffic access token (JWT) bound to this sandbox (upstream's IsAccessTokenRequested). */
const JWT_AUTH_ANNOTATION = 'security.agents.kruise.io/enable-jwt-auth';
/** The reference gateway never re-arms a pause timer sooner than this after a wake. */
export const DEFAULT_PAUSE_FLOOR_SECONDS = 300;

/** The legacy annotation's re-arm timeout when it names none (the reference gateway's default). */
const LEGACY_PAUSE_TIMEOUT_SECONDS = 60;

function wakePolicy(
  spec: Obj | undefined,
  annotations: Obj | undefined,
  policies: Interner<WakePolicy>,
  floorSeconds: number,
): WakePolicy | undefined {
  const onTraffic = asObj(asObj(asObj(spec?.['autoPausePolicy'])?.['resume'])?.['onIngressTraffic']);
  const annotated = asStr(annotations?.[WAKE_ANNOTATION]) === 'true';
  if (onTraffic === undefined && !annotated) return undefined;
  let pauseSeconds: number;
  if (onTraffic !== undefined) {
    const pauseTimeout = asStr(onTraffic['pauseTimeout']);
    pauseSeconds = pauseTimeout === undefined ? 0 : (parseGoDurationSeconds(pauseTimeout) ?? 0);
  } else {
    // Legacy opt-in: upstream reads wake-timeout-seconds as the re-arm pause timeout, not a deadline.
    const text = asStr(annotations?.[WAKE_TIMEOUT_ANNOTATION]);
    pauseSeconds = text !== undefined && /^[0-9]{1,7}$/.test(text) ? Number(text) : LEGACY_PAUSE_TIMEOUT_SECONDS;
  }
  const pauseAfterSeconds = pauseSeconds > 0 ? Math.max(Math.ceil(pauseSeconds), floorSeconds) : 0;
  const timeoutSeconds = wakeDeadlineSeconds(annotations);
  return policies.get(`${pauseAfterSeconds}/${timeoutSeconds}`, () => Object.freeze({ pauseAfterSeconds, timeoutSeconds }));
}

/**
 * Whether the object shows a resume the controller is carrying out: phase Paused asked to run, phase
 * Resuming, or phase Running with the post-resume runtime initialisation not done yet
 * (RuntimeInitialized present and not True: the controller sets it Pending when the new pod runs).
 */
function resumeUnderWay(phase: string, status: Obj | undefined): boolean {
  if (phase === 'Paused' || phase === 'Resuming') return true;
  const initialised = findCondition(status, 'RuntimeInitialized');
  return phase === 'Running' && initialised !== undefined && initialised['status'] !== 'True';
}

/**
 * The reference gateway's classification, in its order, with one difference: phase Running without
 * Ready is a sandbox coming up ('creating'), where the gateway says dead. The real controller shows
 * exactly that after every resume (the new pod runs, then Ready=True only once the runtime is
 * initialised), and its own resume waits through it; so do wakes here, and other requests get 503
 * with Retry-After rather than 502.
 */
export function deriveState(meta: Obj, spec: Obj | undefined, status: Obj | undefined, podIP: string): RouteState {
  if (asStr(meta['deletionTimestamp']) !== undefined) return 'dead';
  const phase = asStr(status?.['phase']) ?? '';
  if (phase === 'Pending' || phase === '') return 'creating';
  if (phase === 'Succeeded' || phase === 'Failed' || phase === 'Terminating') return 'dead';
  const ready = conditionTrue(status, 'Ready');
  const owners = meta['ownerReferences'];
  const pooled = Array.isArray(owners) && owners.some((o) => asObj(o)?.['kind'] === 'SandboxSet');
  let state: RouteState;
  if (pooled) state = ready ? 'available' : 'creating';
  else if (phase === 'Running') state = spec?.['paused'] === true ? 'paused' : ready ? 'running' : 'creating';
  else state = 'paused';
  // A sandbox that should serve but has no address yet is still coming up.
  if ((state === 'running' || state === 'available') && podIP === '') return 'creating';
  return state;
}

export interface OpenKruiseOptions {
  /** Least pause timeout a wake or activity sets (the reference gateway's 300 s). */
  readonly pauseFloorSeconds?: number;
}

/** A new OpenKruise kind; each instance keeps its own shared-value tables. */
export function createOpenKruiseKind(options: OpenKruiseOptions = {}): SandboxKind {
  const floorSeconds = options.pauseFloorSeconds ?? DEFAULT_PAUSE_FLOOR_SECONDS;
  const namespaces = new Interner<string>();
  const policies = new Interner<WakePolicy>();
  const phases = new Interner<string>();
  const kind: SandboxKind = {
    name: 'openkruise',
    group: 'agents.kruise.io',
    versions: ['v1alpha1'],
    version: 'v1alpha1',
    useVersion(): void {
      // One version only.
    },
    plural: 'sandboxes',

    toRoute(object: unknown): Route | undefined {
      const parts = objectParts(object);
      if (parts === undefined) return undefined;
      const { meta, name, namespace, uid, spec, status, annotations } = parts;
      const labels = asObj(meta['labels']);
      const podIP = asStr(asObj(status?.['podInfo'])?.['podIP']) || asStr(status?.['sandboxIp']) || '';
      const phase = asStr(status?.['phase']) ?? '';
      const token = asStr(annotations?.[TOKEN_ANNOTATION]) || asStr(annotations?.[LEGACY_TOKEN_ANNOTATION]);
      const pauseRequested = spec?.['paused'] === true;
      const label = asStr(labels?.[SANDBOX_ID_LABEL]);
      const state = deriveState(meta, spec, status, podIP);
      return {
        // Never a '/' (the API server refuses one in a label value anyway): '/' marks agent-sandbox IDs.
        id: label && !label.includes('/') ? label : `${namespace}--${name}`,
        uid,
        namespace: namespaces.get(namespace, () => namespace),
        name,
        resourceVersion: asStr(meta['resourceVersion']) ?? '',
        state,
        // Only a serving sandbox has an address worth keeping: paused, the controller keeps reporting
        // the old pod's IP, which may already belong to another pod.
        podIP: state === 'running' ? podIP : '',
        pauseRequested,
        pausing: (phase === 'Running' && pauseRequested) || (phase === 'Paused' && !conditionTrue(status, 'SandboxPaused')),
        resuming: !pauseRequested && state !== 'running' && state !== 'dead' && resumeUnderWay(phase, status),
        // The controller never resumes while the old pod terminates ("still in the terminating state").
        drainingIP: '',
        suspendedIP: '',
        phase: phases.get(phase, () => phase),
        shutdownAt: parseTime(asStr(spec?.['shutdownTime'])),
        pauseAt: parseTime(asStr(spec?.['pauseTime'])),
        activityAt: undefined,
        // Idle pauses are OpenKruise's own (spec.pauseTime), which activity pushes.
        idleMs: 0,
        readySince: undefined,
        idleSuspendedAt: undefined,
        deleting: asStr(meta['deletionTimestamp']) !== undefined,
        wake: wakePolicy(spec, annotations, policies, floorSeconds),
        accessTokenDigest: token === undefined || token === '' ? undefined : createHash('sha256').update(token).digest(),
        trafficAuth: asStr(annotations?.[JWT_AUTH_ANNOTATION]) === 'true',
        kind,
      };
    },

    /**
     * The reference gateway's resume: spec.paused=false; when the sandbox has a pause timer, re-arm it
     * (now + the pause timeout, floored at 300 s) or clear it when no timeout is configured, so the
     * controller does not pause it again at once for a pauseTime already passed; and push a shutdownTime
     * 100 years out (E2B's auto-pause sets both timers). metadata.uid makes the patch a precondition: the
     * API server refuses it (422, uid immutable) if the name now belongs to a recreated object.
     */
    resumePatch(route: Route, now: Date): Record<string, unknown> {
      const spec: Record<string, unknown> = { paused: false };
      if (route.pauseAt !== undefined) {
        const after = route.wake?.pauseAfterSeconds ?? 0;
        spec['pauseTime'] = after > 0 ? rfc3339(now.getTime() + after * 1000) : null;
        if (route.shutdownAt !== undefined) {
          const far = new Date(now.getTime());
          far.setUTCFullYear(far.getUTCFullYear() + 100);
          spec['shutdownTime'] = rfc3339(far.getTime());
        }
      }
      return { metadata: { uid: route.uid }, spec };
    },

    /** spec.pauseTime, pushed by the same rule as the wake's re-arm (a sandbox with a pause timeout only). */
    activityTimer(route: Route): ActivityTimer | undefined {
      const timeoutSeconds = route.wake?.pauseAfterSeconds ?? 0;
      if (route.pauseAt === undefined || timeoutSeconds <= 0 || route.state !== 'running') return undefined;
      return { deadline: route.pauseAt, timeoutMs: timeoutSeconds * 1000 };
    },

    /**
     * Pushes spec.pauseTime to now + the pause timeout. When the sandbox also has a shutdownTime, it moves
     * by the same amount: E2B's auto-pause sets shutdownTime = pauseTime + the paused retention, and the
     * controller deletes a running sandbox once shutdownTime passes (unless pauseTime has passed too,
     * which activity prevents), so a sandbox in continuous use would otherwise be deleted.
     */
    activityPatch(route: Route, now: Date): Record<string, unknown> {
      const timeoutSeconds = route.wake?.pauseAfterSeconds ?? 0;
      const pauseAt = Date.parse(rfc3339(now.getTime() + timeoutSeconds * 1000));
      const spec: Record<string, unknown> = { pauseTime: rfc3339(pauseAt) };
      if (route.shutdownAt !== undefined && route.pauseAt !== undefined)
        spec['shutdownTime'] = rfc3339(route.shutdownAt + (pauseAt - route.pauseAt));
      return { metadata: { uid: route.uid }, spec };
    },
  };
  return kind;
}
