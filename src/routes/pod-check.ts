// The pod read a kind asks for before a route may serve (SandboxKind.podToConfirm): the route is held as
// not serving (a resume under way, so requests that may wake wait for it) until the pod is read, then
// serves only if the pod is alive with the address the Sandbox reports. Otherwise that address is
// draining: the kind's own history rule keeps it unserved until the controller reports another.
import type { Route } from './route.ts';

/** What the check needs of a pod: its address and whether it is being deleted. */
export interface PodFacts {
  readonly ip: string;
  readonly terminating: boolean;
}

/** The outcome of one read, as counted in sandbox_extproc_pod_checks_total. */
export type PodCheckOutcome = 'serving' | 'terminating' | 'gone' | 'other_address' | 'error';

/** The route while its pod is read: not serving, a resume under way. */
export function awaitingPod(route: Route): Route {
  return { ...route, state: 'creating', podIP: '', resuming: true };
}

/** What a read says of the route: `pod` undefined means there is no pod by that name. */
export function podCheckOutcome(route: Route, pod: PodFacts | undefined): PodCheckOutcome {
  if (pod === undefined) return 'gone';
  if (pod.terminating) return 'terminating';
  return pod.ip === route.podIP ? 'serving' : 'other_address';
}

/** The route once its pod is read: as derived when the pod serves, else held with its address draining. */
export function confirmedByPod(route: Route, outcome: PodCheckOutcome): Route {
  return outcome === 'serving' ? route : { ...awaitingPod(route), drainingIP: route.podIP };
}
