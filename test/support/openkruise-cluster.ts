// The cluster part of the stack without the service or Envoy: a control plane with OpenKruise's own
// CRDs, the garbage collector and kwok (test/support/cluster.ts), and OpenKruise's own controller. For
// tests that run the service's parts themselves (the route source alone, services behind a faulty
// network) on Sandboxes the real controller made and runs.
import { Cluster } from './cluster.ts';
import { ControlPlane } from './controlplane.ts';
import { OpenKruiseController, OpenKruiseSandboxes } from './openkruise.ts';

export interface OpenKruiseCluster {
  readonly plane: ControlPlane;
  readonly cluster: Cluster;
  readonly controller: OpenKruiseController;
  /** The calls users make of Sandboxes, as an admin (create, pause, patch, delete, waitFor, ...). */
  readonly sandboxes: OpenKruiseSandboxes;
  stop(): Promise<void>;
}

export async function startOpenKruiseCluster(options: { namespaces?: readonly string[] } = {}): Promise<OpenKruiseCluster> {
  const plane = await ControlPlane.start({ crds: OpenKruiseController.crds() });
  let cluster: Cluster | undefined;
  let controller: OpenKruiseController | undefined;
  const stop = async () => {
    await controller?.stop();
    await cluster?.stop();
    await plane.stop();
  };
  try {
    cluster = await Cluster.start(plane);
    controller = await OpenKruiseController.start(plane);
    for (const ns of options.namespaces ?? []) await plane.ensureNamespace(ns);
    return { plane, cluster, controller, sandboxes: new OpenKruiseSandboxes(plane, cluster), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
