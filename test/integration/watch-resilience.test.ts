// Regression guard for issue #12: an exception while applying a watch event must not lose the event.
// The Kubernetes source runs against the real API server, on a Sandbox OpenKruise's own controller
// runs, with a kind whose toRoute throws on one event (the sandbox-id label set, as E2B's
// sandbox-manager sets it when it hands a sandbox out); the source re-watches from the last applied
// resourceVersion and that very event is applied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { KubernetesRouteSource } from '../../src/routes/kubernetes-source.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { RouteScreen } from '../../src/routes/screen.ts';
import { parseCidr, UpstreamAddressPolicy } from '../../src/routes/upstream-address.ts';
import { createOpenKruiseKind } from '../../src/sandbox-kinds/openkruise.ts';
import type { SandboxKind } from '../../src/sandbox-kinds/kind.ts';
import { DEFAULT_POD_CIDR } from '../support/cluster.ts';
import { podIP, SANDBOX_ID_LABEL } from '../support/openkruise.ts';
import { startOpenKruiseCluster, type OpenKruiseCluster } from '../support/openkruise-cluster.ts';
import { waitForRoute } from '../support/registry-events.ts';

const NS = 'resilience';
let kruise: OpenKruiseCluster;

beforeAll(async () => {
  kruise = await startOpenKruiseCluster({ namespaces: [NS] });
});

afterAll(async () => {
  await kruise?.stop();
});

describe('a bug while applying a watch event', () => {
  it('does not lose the event: the watch resumes from the last applied version and applies it', async () => {
    const real = createOpenKruiseKind();
    let throwOn: string | undefined;
    const failures: string[] = [];
    // Throws once, on the first observation under the named ID.
    const flaky: SandboxKind = {
      ...real,
      toRoute(object) {
        const route = real.toRoute(object);
        if (route !== undefined && route.id === throwOn) {
          throwOn = undefined;
          failures.push(route.resourceVersion);
          throw new Error('a bug in event handling');
        }
        return route;
      },
    };
    const registry = new RouteRegistry();
    const metrics = createMetrics(() => registry.countByState());
    const logger = createLogger('silent');
    const source = new KubernetesRouteSource({
      kubeConfig: kruise.plane.admin,
      kind: flaky,
      namespaces: [NS],
      labelSelector: '',
      resyncIntervalMs: 3_600_000,
      watchIdleTimeoutMs: 60_000,
      registry,
      // The pods' addresses (kwok's, on loopback) are the cluster's pod CIDR: --upstream-cidrs.
      screen: new RouteScreen(new UpstreamAddressPolicy([parseCidr(DEFAULT_POD_CIDR)]), logger),
      logger,
      metrics,
    });
    source.start();
    try {
      const box = await kruise.sandboxes.create({ namespace: NS, name: 'box' });
      await waitForRoute(registry, `${NS}--box`, (r) => r?.state === 'running' && r.podIP === podIP(box));
      throwOn = 'box-claimed';
      const labelled = await kruise.sandboxes.patch(NS, 'box', { metadata: { labels: { [SANDBOX_ID_LABEL]: 'box-claimed' } } });
      const version = labelled.metadata.resourceVersion as string;
      // The very event that threw is applied (its version), not only some later one.
      await waitForRoute(registry, 'box-claimed', (r) => r?.resourceVersion === version, 15_000);
      expect(registry.get('box-claimed')?.podIP).toBe(podIP(box));
      expect(failures).toEqual([version]);
      expect(await metrics.registry.getSingleMetricAsString('sandbox_extproc_watch_restarts_total')).toContain('reason="error"} 1');
    } finally {
      await source.stop();
    }
  });
});
