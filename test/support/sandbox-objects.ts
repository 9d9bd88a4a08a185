// Sandbox objects with the status the families' real controllers write, for the few places that put
// objects straight into the API server to measure the service itself, where no controller's behaviour
// is under test and a real one would only add its own timing: the scale benchmark (100,000 objects),
// the wake benchmark (which times the service's share of a wake from the exact moment "running" is
// written) and the image's start-up measurement. The statuses are those OpenKruise agents 0b72c83 and
// agent-sandbox v1.0.1 write here (recorded against this project's test cluster: see
// test/support/openkruise.ts and agent-sandbox.ts); every scenario that depends on what a controller
// does runs against the real one.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';

export const OPENKRUISE = { group: 'agents.kruise.io', version: 'v1alpha1', plural: 'sandboxes' } as const;
export const AGENT_SANDBOX = { group: 'agents.x-k8s.io', version: 'v1beta1', plural: 'sandboxes' } as const;

type Obj = Record<string, unknown>;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const condition = (type: string, status: string, reason: string, message = '') => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: now(),
});

/** OpenKruise, running: phase Running, Ready=True (PodReady), the pod's IP in podInfo and sandboxIp. */
export function openKruiseRunning(ip: string): Obj {
  return {
    phase: 'Running',
    podInfo: { podIP: ip, nodeName: 'node' },
    sandboxIp: ip,
    nodeName: 'node',
    conditions: [condition('Ready', 'True', 'PodReady'), condition('InplaceUpdate', 'True', 'Succeeded')],
  };
}

/** OpenKruise, paused and its pod gone: SandboxPaused=True; podInfo keeps the old pod's IP, as the controller leaves it. */
export function openKruisePaused(lastIP = ''): Obj {
  return {
    phase: 'Paused',
    podInfo: { podIP: lastIP },
    conditions: [condition('Ready', 'False', 'PodReady'), condition('SandboxPaused', 'True', 'StopPauseSucceed')],
  };
}

/** agent-sandbox, serving: Ready=True (DependenciesReady) with status.podIPs. */
export function agentSandboxRunning(ip: string): Obj {
  return {
    podIPs: [ip],
    conditions: [
      condition('Suspended', 'False', 'NotSuspended', 'Sandbox is not suspended'),
      condition('PodScheduled', 'True', 'PodScheduled'),
      condition('Ready', 'True', 'DependenciesReady', 'Pod is Ready'),
    ],
  };
}

/** agent-sandbox, suspended and its pod gone: Suspended=True (PodTerminated), no podIPs. */
export function agentSandboxSuspended(): Obj {
  return {
    podIPs: null,
    conditions: [
      condition('Suspended', 'True', 'PodTerminated', 'Pod has been terminated. Sandbox is suspended'),
      condition('Ready', 'False', 'SandboxSuspended', 'Sandbox is suspended'),
    ],
  };
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export interface WrittenSandbox {
  readonly family: 'openkruise' | 'agent-sandbox';
  readonly namespace: string;
  readonly name: string;
  /** Running at this IP, or paused (suspended). */
  readonly state: { running: string } | 'paused';
  /** Opted in to wake on traffic (OpenKruise: autoPausePolicy; agent-sandbox: our annotation). */
  readonly wake?: boolean;
}

/** Creates the object and writes its status as the family's controller would have left it. */
export async function writeSandbox(admin: KubeConfig, sandbox: WrittenSandbox): Promise<void> {
  const api = admin.makeApiClient(CustomObjectsApi);
  const kruise = sandbox.family === 'openkruise';
  const target = kruise ? OPENKRUISE : AGENT_SANDBOX;
  const paused = sandbox.state === 'paused';
  const template = { spec: { containers: [{ name: 'sandbox', image: 'sandbox:measured' }] } };
  const body = kruise
    ? {
        apiVersion: `${target.group}/${target.version}`,
        kind: 'Sandbox',
        metadata: { name: sandbox.name },
        spec: { paused, template, ...(sandbox.wake ? { autoPausePolicy: { resume: { onIngressTraffic: {} } } } : {}) },
      }
    : {
        apiVersion: `${target.group}/${target.version}`,
        kind: 'Sandbox',
        metadata: { name: sandbox.name, annotations: sandbox.wake ? { 'sandbox-extproc.io/wake-on-traffic': 'true' } : {} },
        spec: { podTemplate: template, operatingMode: paused ? 'Suspended' : 'Running' },
      };
  await api.createNamespacedCustomObject({ ...target, namespace: sandbox.namespace, body });
  const status =
    sandbox.state === 'paused'
      ? kruise
        ? openKruisePaused()
        : agentSandboxSuspended()
      : kruise
        ? openKruiseRunning(sandbox.state.running)
        : agentSandboxRunning(sandbox.state.running);
  await api.patchNamespacedCustomObjectStatus(
    { ...target, namespace: sandbox.namespace, name: sandbox.name, body: { status } },
    mergePatch,
  );
}
