// kubernetes-sigs/agent-sandbox's Sandbox (agents.x-k8s.io, v1beta1 or the deprecated v1alpha1): field
// paths, routing-state rules read from its API types and controller, and the resume patch. Facts (see
// their api/v1beta1/sandbox_types.go and controllers/sandbox_controller.go):
// - spec.operatingMode Running|Suspended (v1beta1) or spec.replicas 1|0 (v1alpha1) is the desired state;
// - condition Ready is the authority on serving: True (reason DependenciesReady) only when the pod runs,
//   is Ready and has an IP; False with a reason otherwise (DependenciesNotReady, SandboxSuspended,
//   SandboxExpired, PodSucceeded, PodFailed, ReconcilerError, MultiplePods). There is no Running
//   condition, and the Suspended condition may linger after a resume, so it is never read here;
// - status.podIPs (primary first) is cleared while no pod exists (suspended, not yet created);
// - spec.shutdownTime expires the sandbox (then Ready=False SandboxExpired, or the object is deleted);
// - a SandboxWarmPool's unclaimed members carry the agents.x-k8s.io/warm-pool-sandbox label, which a
//   SandboxClaim's adoption removes: until then they are never routable by name (their router, too,
//   keeps unclaimed pool pods out of its name index).
// There is no wake opt-in field: sandbox-extproc's own annotations (annotations.ts) provide it.
import type { Route, RouteState, WakePolicy } from '../routes/route.ts';
import {
  accessTokenDigest,
  IDLE_SUSPENDED_AT_ANNOTATION,
  IDLE_TIMEOUT_ANNOTATION,
  LAST_ACTIVITY_ANNOTATION,
  MIN_IDLE_TIMEOUT_SECONDS,
  wakeDeadlineSeconds,
  WAKE_ON_TRAFFIC_ANNOTATION,
} from './annotations.ts';
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
import type { ActivityTimer, SandboxKind } from './kind.ts';

export const AGENT_SANDBOX_GROUP = 'agents.x-k8s.io';
/** Label of an unclaimed warm-pool member (removed when a SandboxClaim adopts it). */
export const WARM_POOL_LABEL = 'agents.x-k8s.io/warm-pool-sandbox';

/** The sandbox ID of an agent-sandbox Sandbox: always contains '/', which no OpenKruise ID does. */
export const agentSandboxId = (namespace: string, name: string) => `${namespace}/${name}`;

/** Annotation naming the Sandbox's pod when it is not the Sandbox's own name (a warm-pool pod adopted). */
export const POD_NAME_ANNOTATION = 'agents.x-k8s.io/pod-name';

/** Ready=False reasons after which the sandbox will not serve again by itself. */
const TERMINAL_REASONS = new Set(['SandboxExpired', 'PodSucceeded', 'PodFailed', 'MultiplePods']);

/**
 * The pod is terminating: asked to suspend and the controller reports Suspended=False PodTerminating
 * (computeSuspendedCondition). Asked to run again meanwhile, the controller reports NotSuspended, and
 * Ready=True for that same pod: only the route's history tells it apart from a new one.
 */
function podTerminating(spec: Obj | undefined, status: Obj | undefined): boolean {
  const suspended = findCondition(status, 'Suspended');
  return suspendRequested(spec) && suspended?.['status'] !== 'True' && suspended?.['reason'] === 'PodTerminating';
}

/** Whether the object asks to be suspended: operatingMode Suspended (v1beta1) or replicas 0 (v1alpha1). */
function suspendRequested(spec: Obj | undefined): boolean {
  return spec?.['operatingMode'] === 'Suspended' || spec?.['replicas'] === 0;
}

function pooled(meta: Obj): boolean {
  const labels = asObj(meta['labels']);
  if (labels !== undefined && asStr(labels[WARM_POOL_LABEL]) !== undefined) return true;
  const owners = meta['ownerReferences'];
  return Array.isArray(owners) && owners.some((o) => asObj(o)?.['kind'] === 'SandboxWarmPool' && asObj(o)?.['controller'] === true);
}

/**
 * The routing state, in order: deleted or terminal -> dead; an unclaimed pool member -> available;
 * asked to suspend -> paused; Ready with an IP -> running; Ready=False SandboxSuspended while asked to
 * run -> paused (a resume the controller has not acted on yet); anything else not Ready -> creating.
 */
export function deriveAgentSandboxState(meta: Obj, spec: Obj | undefined, status: Obj | undefined, podIP: string): RouteState {
  if (asStr(meta['deletionTimestamp']) !== undefined) return 'dead';
  const ready = findCondition(status, 'Ready');
  // Stryker disable next-line StringLiteral: equivalent; no reason and any reason that is not a known one read the same
  const reason = asStr(ready?.['reason']) ?? '';
  if (conditionTrue(status, 'Finished') || (ready?.['status'] !== 'True' && TERMINAL_REASONS.has(reason))) return 'dead';
  if (pooled(meta)) return 'available';
  if (suspendRequested(spec)) return 'paused';
  if (ready?.['status'] === 'True') return podIP === '' ? 'creating' : 'running';
  if (reason === 'SandboxSuspended') return 'paused';
  return 'creating';
}

export interface AgentSandboxOptions {
  /** Idle timeout (seconds) of wake-opted-in Sandboxes in idleNamespaces that name none (0: none). */
  readonly idleTimeoutSeconds?: number;
  /** Namespaces where idleTimeoutSeconds applies; '*' for all. */
  readonly idleNamespaces?: readonly string[];
}

/**
 * The idle timeout of a Sandbox, in ms (0: never suspended for idleness). Only a Sandbox that may be
 * woken by traffic is ever suspended for idleness: otherwise nothing would bring it back.
 */
function idleTimeoutMs(namespace: string, annotations: Obj | undefined, optedIn: boolean, options: AgentSandboxOptions): number {
  if (!optedIn) return 0;
  const text = asStr(annotations?.[IDLE_TIMEOUT_ANNOTATION]);
  const own = text === undefined ? undefined : parseGoDurationSeconds(text);
  // Stryker disable next-line ArrayDeclaration: equivalent; no namespace can be named "Stryker was here" (not a DNS label)
  const namespaces = options.idleNamespaces ?? [];
  const seconds = own ?? (namespaces.includes('*') || namespaces.includes(namespace) ? (options.idleTimeoutSeconds ?? 0) : 0);
  return seconds > 0 ? Math.max(seconds, MIN_IDLE_TIMEOUT_SECONDS) * 1000 : 0;
}

/** A new agent-sandbox kind; each instance keeps its own shared-value tables and chosen version. */
export function createAgentSandboxKind(options: AgentSandboxOptions = {}): SandboxKind {
  const namespaces = new Interner<string>();
  const policies = new Interner<WakePolicy>();
  const phases = new Interner<string>();
  let version = 'v1beta1';
  const kind: SandboxKind = {
    name: 'agent-sandbox',
    group: AGENT_SANDBOX_GROUP,
    versions: ['v1beta1', 'v1alpha1'],
    get version() {
      return version;
    },
    useVersion(chosen: string): void {
      if (!kind.versions.includes(chosen)) throw new Error(`agent-sandbox has no version ${JSON.stringify(chosen)}`);
      version = chosen;
    },
    plural: 'sandboxes',

    toRoute(object: unknown, previous?: Route): Route | undefined {
      const parts = objectParts(object);
      if (parts === undefined) return undefined;
      const { meta, name, namespace, uid, spec, status, annotations } = parts;
      const podIPs = status?.['podIPs'];
      const firstIP = Array.isArray(podIPs) ? (asStr(podIPs[0]) ?? '') : '';
      let state = deriveAgentSandboxState(meta, spec, status, firstIP);
      const history = previous?.uid === uid ? previous : undefined;
      // A pod seen terminating stays "draining" for as long as the object still reports its address:
      // resumed during the grace period, the controller reuses that pod and reports it Ready with its
      // IP. Once the pod is gone the controller reports no address (the reconcile that sees it gone
      // creates the new pod, which has none yet); from then on an address is a new pod's, even the
      // same one handed out again.
      const drainingIP = podTerminating(spec, status) || firstIP === history?.drainingIP ? firstIP : '';
      if (state === 'running' && drainingIP !== '') state = 'creating';
      // The address reported while asked to suspend may be a pod the controller has deleted without
      // saying so yet: kept while still reported, and read before it is served (podToConfirm).
      const suspendedIP = suspendRequested(spec) || firstIP === history?.suspendedIP ? firstIP : '';
      const asked = !suspendRequested(spec);
      // Asked to run again after a suspension and not serving yet: the resume is under way.
      const resuming =
        asked &&
        state !== 'running' &&
        state !== 'dead' &&
        (drainingIP !== '' || history?.state === 'paused' || history?.resuming === true);
      const token = accessTokenDigest(annotations);
      // A digest that cannot be read must never mean "no token needed": such a sandbox does not wake.
      const optedIn = asStr(annotations?.[WAKE_ON_TRAFFIC_ANNOTATION]) === 'true' && token.kind !== 'malformed';
      const timeoutSeconds = wakeDeadlineSeconds(annotations);
      const readiness = findCondition(status, 'Ready');
      const phase = `Ready=${asStr(readiness?.['status']) ?? 'Unknown'}/${asStr(readiness?.['reason']) ?? ''}`;
      return {
        id: agentSandboxId(namespace, name),
        uid,
        namespace: namespaces.get(namespace, () => namespace),
        name,
        resourceVersion: asStr(meta['resourceVersion']) ?? '',
        state,
        // Only a serving sandbox has an address worth keeping (a suspending pod may still report one).
        podIP: state === 'running' ? firstIP : '',
        pauseRequested: suspendRequested(spec),
        // The controller accepts a resume at any point of a suspension (it recreates the pod once the
        // old one is gone, or reuses it: see drainingIP), so there is never a pause to wait for.
        pausing: false,
        resuming,
        drainingIP,
        suspendedIP,
        phase: phases.get(phase, () => phase),
        shutdownAt: parseTime(asStr(spec?.['shutdownTime'])),
        pauseAt: undefined,
        activityAt: parseTime(asStr(annotations?.[LAST_ACTIVITY_ANNOTATION])),
        idleMs: idleTimeoutMs(namespace, annotations, optedIn, options),
        readySince: readiness?.['status'] === 'True' ? parseTime(asStr(readiness['lastTransitionTime'])) : undefined,
        idleSuspendedAt: parseTime(asStr(annotations?.[IDLE_SUSPENDED_AT_ANNOTATION])),
        deleting: asStr(meta['deletionTimestamp']) !== undefined,
        // No pause timer to re-arm: agent-sandbox suspends only when asked.
        wake: optedIn ? policies.get(String(timeoutSeconds), () => Object.freeze({ pauseAfterSeconds: 0, timeoutSeconds })) : undefined,
        accessTokenDigest: token.kind === 'digest' ? token.digest : undefined,
        trafficAuth: false,
        kind,
      };
    },

    /**
     * A Sandbox that serves, after a suspension, at the address it reported while asked to suspend may
     * report a pod the controller has deleted: it reuses whatever pod exists when asked to run (no
     * deletionTimestamp check in v1.0.1's reconcilePod) and reports it Ready. The object says so
     * (Suspended=False PodTerminating, see drainingIP) only when the controller's status write after the
     * deletion lands; a resume written first makes that write conflict, and no version ever says the pod
     * is dying. So that pod is read, by the name the controller resolves (resolvePodName: the pod-name
     * annotation, else the Sandbox's name). A resume of a Sandbox whose pod is gone (it reported no
     * address since) reads nothing: its new pod cannot be the deleted one.
     */
    podToConfirm(object: unknown, route: Route): string | undefined {
      // Only a serving route has an address (podIP is '' otherwise).
      if (route.podIP === '' || route.podIP !== route.suspendedIP) return undefined;
      const annotations = objectParts(object)?.annotations;
      return asStr(annotations?.[POD_NAME_ANNOTATION]) || route.name;
    },

    /**
     * Asks for the desired running state in the served version's own field. metadata.uid makes the
     * patch a precondition: the API server refuses it (422, uid immutable) if the name now belongs to a
     * recreated object.
     */
    resumePatch(route: Route): Record<string, unknown> {
      const spec = version === 'v1alpha1' ? { replicas: 1 } : { operatingMode: 'Running' };
      return { metadata: { uid: route.uid }, spec };
    },

    /**
     * agent-sandbox has no idle suspension of its own; sandbox-extproc's (src/idle/) reads the record of
     * activity, so the record is kept only for Sandboxes that opted in to it: its "timer" runs out one
     * idle timeout after the last recorded use (or after the sandbox turned Ready), and it is refreshed
     * by the activity writer's rule, as OpenKruise's pause timer is pushed.
     */
    activityTimer(route: Route): ActivityTimer | undefined {
      if (route.idleMs === 0 || route.state !== 'running') return undefined;
      return { deadline: Math.max(route.activityAt ?? 0, route.readySince ?? 0) + route.idleMs, timeoutMs: route.idleMs };
    },

    activityPatch(route: Route, now: Date): Record<string, unknown> {
      return { metadata: { uid: route.uid, annotations: { [LAST_ACTIVITY_ANNOTATION]: rfc3339(now.getTime()) } } };
    },

    /**
     * Suspends an idle sandbox in the served version's own field, recording when (a wake soon after is a
     * flap). Locked on the resourceVersion it was decided on: any change since (a newer activity
     * record, a resume) makes the API server refuse it, and the decision is made again.
     */
    idleSuspendPatch(route: Route, now: Date): Record<string, unknown> {
      const spec = version === 'v1alpha1' ? { replicas: 0 } : { operatingMode: 'Suspended' };
      return {
        metadata: {
          uid: route.uid,
          resourceVersion: route.resourceVersion,
          annotations: { [IDLE_SUSPENDED_AT_ANNOTATION]: rfc3339(now.getTime()) },
        },
        spec,
      };
    },
  };
  return kind;
}
