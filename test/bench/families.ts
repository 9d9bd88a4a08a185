// The two Sandbox families as the benchmarks drive them: how an object is created opted in to wake,
// what a controller writes for running and paused, how the bench (playing the controller) recognises a
// resume patch, and how a request names the sandbox. The wake and scale scenarios run once per family;
// OpenKruise's figures keep their names, agent-sandbox's are prefixed "agent-sandbox: ".
import { agentSandboxRunning, agentSandboxSuspended, openKruisePaused, openKruiseRunning } from '../support/sandbox-objects.ts';

export type FamilyName = 'openkruise' | 'agent-sandbox';

export interface BenchFamily {
  readonly name: FamilyName;
  /** Prefix of the family's figure names. */
  readonly label: string;
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** Service flags that run this family (and let its requests name any namespace). */
  readonly serviceArgs: readonly string[];
  /** A running sandbox's object, opted in to wake, for a bulk create. */
  object(namespace: string, name: string, id: string): Record<string, unknown>;
  runningStatus(ip: string): Record<string, unknown>;
  /** What a pause writes: the spec first (a user, an idle policy), then the controller's status. */
  pauseSpec(): Record<string, unknown>;
  pausedStatus(): Record<string, unknown>;
  /** A status write that only moves the pod IP (the update-rate figure). */
  podIPStatus(ip: string): Record<string, unknown>;
  /** The service's resume patch has landed on a sandbox the controller still shows paused. */
  resumeAsked(object: Record<string, unknown>): boolean;
  /** The object's status shows it running. */
  running(object: Record<string, unknown>): boolean;
  /** The sandbox ID and the request headers (lower-case, as Envoy sends them) that name sandbox `name`. */
  sandboxId(namespace: string, name: string, id: string): string;
  headers(namespace: string, name: string, id: string, port?: number): Record<string, string>;
}

type Obj = Record<string, unknown>;
const spec = (o: Obj) => (o['spec'] ?? {}) as Obj;
const conditions = (o: Obj) => (((o['status'] ?? {}) as Obj)['conditions'] ?? []) as Obj[];

export const OPENKRUISE: BenchFamily = {
  name: 'openkruise',
  label: '',
  group: 'agents.kruise.io',
  version: 'v1alpha1',
  plural: 'sandboxes',
  serviceArgs: [],
  object: (_namespace, name, id) => ({
    apiVersion: 'agents.kruise.io/v1alpha1',
    kind: 'Sandbox',
    metadata: { name, labels: { 'agents.kruise.io/sandbox-id': id }, annotations: { 'agents.kruise.io/wake-on-traffic': 'true' } },
    spec: { paused: false },
  }),
  runningStatus: (ip) => openKruiseRunning(ip),
  pauseSpec: () => ({ paused: true }),
  pausedStatus: () => openKruisePaused(),
  podIPStatus: (ip) => ({ podInfo: { podIP: ip } }),
  resumeAsked: (o) => spec(o)['paused'] === false && ((o['status'] ?? {}) as Obj)['phase'] === 'Paused',
  running: (o) => ((o['status'] ?? {}) as Obj)['phase'] === 'Running',
  sandboxId: (_namespace, _name, id) => id,
  headers: (_namespace, _name, id, port) => ({ 'e2b-sandbox-id': id, ...(port === undefined ? {} : { 'e2b-sandbox-port': String(port) }) }),
};

export const AGENT_SANDBOX: BenchFamily = {
  name: 'agent-sandbox',
  label: 'agent-sandbox: ',
  group: 'agents.x-k8s.io',
  version: 'v1beta1',
  plural: 'sandboxes',
  serviceArgs: ['--sandbox-kind', 'agent-sandbox', '--agent-sandbox-namespaces', '*'],
  object: (_namespace, name) => ({
    apiVersion: 'agents.x-k8s.io/v1beta1',
    kind: 'Sandbox',
    metadata: { name, annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true' } },
    spec: { podTemplate: { spec: { containers: [{ name: 'sandbox', image: 'sandbox:bench' }] } }, operatingMode: 'Running' },
  }),
  runningStatus: (ip) => agentSandboxRunning(ip),
  pauseSpec: () => ({ operatingMode: 'Suspended' }),
  pausedStatus: () => agentSandboxSuspended(),
  podIPStatus: (ip) => ({ podIPs: [ip] }),
  resumeAsked: (o) =>
    spec(o)['operatingMode'] === 'Running' && conditions(o).some((c) => c['type'] === 'Ready' && c['reason'] === 'SandboxSuspended'),
  running: (o) => conditions(o).some((c) => c['type'] === 'Ready' && c['status'] === 'True'),
  sandboxId: (namespace, name) => `${namespace}/${name}`,
  headers: (namespace, name, _id, port) => ({
    'x-sandbox-id': name,
    'x-sandbox-namespace': namespace,
    ...(port === undefined ? {} : { 'x-sandbox-port': String(port) }),
  }),
};

export const FAMILIES: readonly BenchFamily[] = [OPENKRUISE, AGENT_SANDBOX];
