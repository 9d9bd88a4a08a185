// The pod read a kind asks for before a route may serve (SandboxKind.podToConfirm): the route is held as
// not serving (a resume under way, so requests that may wake wait for it) until the pod is read, then
// serves only if the pod is alive with the address the Sandbox reports. A terminating pod's address is
// draining: the kind's own history rule keeps it unserved until the controller reports another. A pod
// that is gone, or has another address, means the Sandbox's report is stale: the route stays held, and
// the controller's next report (which it writes when its pod changes) is read again.
import type { Route } from './route.ts';

/** What the check needs of a pod: its address and whether it is being deleted. */
export interface PodFacts {
  readonly ip: string;
  readonly terminating: boolean;
}

/**
 * The outcome of one read, as counted in sandbox_extproc_pod_checks_total. `forbidden`: the identity
 * may not read pods (RBAC without the family's `get pods`); `error`: the read failed or timed out.
 */
export type PodCheckOutcome = 'serving' | 'terminating' | 'gone' | 'other_address' | 'forbidden' | 'error';

/** The route while its pod is read: not serving, a resume under way. */
export function awaitingPod(route: Route): Route {
  return { ...route, state: 'creating', podIP: '', resuming: true };
}

/** What a read says of the route: `pod` undefined means there is no pod by that name. */
export function podCheckOutcome(route: Route, pod: PodFacts | undefined): 'serving' | 'terminating' | 'gone' | 'other_address' {
  if (pod === undefined) return 'gone';
  if (pod.terminating) return 'terminating';
  return pod.ip === route.podIP ? 'serving' : 'other_address';
}

/**
 * The route once its pod is read: as derived (and no longer suspect) when the pod serves, or when pods
 * may not be read at all (what the service did before it read pods: a misconfigured RBAC must not stop
 * every resumed sandbox from serving; it is logged as an error); held with its address draining when
 * the pod is terminating; held when the report is stale (gone, another address).
 */
export function confirmedByPod(route: Route, outcome: Exclude<PodCheckOutcome, 'error'>): Route {
  if (outcome === 'serving' || outcome === 'forbidden') return { ...route, suspendedIP: '' };
  const held = awaitingPod(route);
  return outcome === 'terminating' ? { ...held, drainingIP: route.podIP } : held;
}
