// Regression guard for issue #12: an exception while applying a watch event must not lose the event.
// The Kubernetes source runs against the real API server with a kind whose toRoute throws on one
// event; the source re-watches from the last applied resourceVersion and the event is applied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { KubernetesRouteSource } from '../../src/routes/kubernetes-source.ts';
import { RouteRegistry } from '../../src/routes/registry.ts';
import { RouteScreen } from '../../src/routes/screen.ts';
import { UpstreamAddressPolicy } from '../../src/routes/upstream-address.ts';
import { createOpenKruiseKind } from '../../src/sandbox-kinds/openkruise.ts';
import type { SandboxKind } from '../../src/sandbox-kinds/kind.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { SandboxController } from '../support/sandbox-controller.ts';

const NS = 'resilience';
let plane: ControlPlane;
let controller: SandboxController;

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  controller = new SandboxController(plane.admin);
  await controller.start();
});

afterAll(async () => {
  controller?.stop();
  await plane?.stop();
});

describe('a bug while applying a watch event', () => {
  it('does not lose the event: the watch resumes from the last applied version and applies it', async () => {
    const real = createOpenKruiseKind();
    let throwOn: string | undefined;
    const failures: string[] = [];
    // Throws once, on the first observation of the named IP.
    const flaky: SandboxKind = {
      ...real,
      toRoute(object) {
        const route = real.toRoute(object);
        if (route !== undefined && route.podIP === throwOn) {
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
      kubeConfig: plane.admin,
      kind: flaky,
      namespaces: [NS],
      labelSelector: '',
      resyncIntervalMs: 3_600_000,
      watchIdleTimeoutMs: 60_000,
      registry,
      screen: new RouteScreen(new UpstreamAddressPolicy(), logger),
      logger,
      metrics,
    });
    source.start();
    try {
      await controller.create({ namespace: NS, name: 'box', podIP: '10.1.0.1' });
      await waitForRoute(registry, `${NS}--box`, (r) => r?.podIP === '10.1.0.1');
      throwOn = '10.1.0.2';
      await controller.setPodIP(NS, 'box', '10.1.0.2');
      await waitForRoute(registry, `${NS}--box`, (r) => r?.podIP === '10.1.0.2', 15_000);
      expect(failures).toHaveLength(1);
      expect(await metrics.registry.getSingleMetricAsString('sandbox_extproc_watch_restarts_total')).toContain('reason="error"} 1');
    } finally {
      await source.stop();
    }
  });
});
