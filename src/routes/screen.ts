// Admits observations into the route table: a route whose pod IP may not be routed to (see
// upstream-address.ts) is kept, so requests get a clear answer, but as a dead route with no address.
import type { Logger } from '../observability/logger.ts';
import type { Route } from './route.ts';
import type { UpstreamAddressPolicy } from './upstream-address.ts';

export class RouteScreen {
  readonly #policy: UpstreamAddressPolicy;
  readonly #log: Logger;
  readonly #onRefused: () => void;
  /** The last refused address logged per object, so a resync does not repeat the warning. */
  readonly #warned = new Map<string, string>();

  constructor(policy: UpstreamAddressPolicy, logger: Logger, onRefused: () => void = () => undefined) {
    this.#policy = policy;
    this.#log = logger;
    this.#onRefused = onRefused;
  }

  admit(route: Route): Route {
    if (route.podIP === '') return route;
    const refusal = this.#policy.refusal(route.podIP);
    if (refusal === undefined) return route;
    this.#onRefused();
    if (this.#warned.get(route.uid) !== route.podIP) {
      if (this.#warned.size >= 10_000) this.#warned.clear();
      this.#warned.set(route.uid, route.podIP);
      this.#log.warn(
        { sandboxId: route.id, namespace: route.namespace, name: route.name, podIP: route.podIP, refusal },
        'sandbox reports a pod IP that may not be routed to; it is answered as not running',
      );
    }
    return { ...route, podIP: '', state: 'dead' };
  }
}
