// Waits on the service's own route table: resolves when a route change satisfies the predicate.
import type { RouteRegistry } from '../../src/routes/registry.ts';
import type { WakeCoordinator } from '../../src/wake/coordinator.ts';
import type { Route } from '../../src/routes/route.ts';

export function waitForRoute(
  registry: RouteRegistry,
  id: string,
  predicate: (route: Route | undefined) => boolean,
  timeoutMs = 15_000,
): Promise<Route | undefined> {
  const current = registry.get(id);
  if (predicate(current)) return Promise.resolve(current);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(
        new Error(`route ${id} did not reach the expected state within ${timeoutMs} ms (now ${JSON.stringify(registry.get(id)?.state)})`),
      );
    }, timeoutMs);
    const unsubscribe = registry.subscribe((changed, route) => {
      if (changed === id && predicate(route)) {
        clearTimeout(timer);
        unsubscribe();
        resolve(route);
      }
    });
  });
}

/**
 * Resolves the first time the number of requests the service holds for wakes satisfies the predicate
 * (now included), from the coordinator's own count: `untilWaiting(wakes, (n) => n === 3)`.
 */
export function untilWaiting(wakes: WakeCoordinator, predicate: (waiting: number) => boolean): Promise<void> {
  if (predicate(wakes.waiting)) return Promise.resolve();
  return new Promise((resolve) => {
    const off = wakes.onWaitersChange((n) => {
      if (!predicate(n)) return;
      off();
      resolve();
    });
  });
}
