// Sandboxes of both families in the kind cluster, made as their users make them and driven by each
// family's own controller (test/support/kind-controllers.ts): every sandbox is a real pod from its pod
// template, a small HTTP server run from the project's image under the chart's restrictions. Pausing a
// sandbox deletes its pod; resuming it makes a new pod, with a new IP (the CNI's host-local IPAM hands
// out addresses in order, so a new pod does not get the old one back).
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { AS_GROUP, AS_PLURAL, AS_VERSION, isServing, isSuspended, podIPOf, type AgentSandboxObject } from './agent-sandbox.ts';
import { waitForObject } from './controlplane.ts';
import { GROUP, isPaused, isRunning, PLURAL, podIP, VERSION, type SandboxObject } from './openkruise.ts';

/** The E2B agent port, where every sandbox's server listens. */
export const SANDBOX_PORT = 49983;

/**
 * The server: answers with the pod it runs in (its hostname is the pod's name), the address the request
 * reached (the pod IP), and what was asked. It exits on SIGTERM, as a server should when its pod is
 * deleted (as PID 1 it would otherwise ignore the signal until the grace period's SIGKILL).
 */
const SERVER =
  "process.on('SIGTERM',()=>process.exit(0));" +
  "require('http').createServer((q,s)=>{s.setHeader('content-type','application/json');" +
  "s.end(JSON.stringify({pod:require('os').hostname(),ip:q.socket.localAddress,path:q.url,host:q.headers.host}))}).listen(" +
  String(SANDBOX_PORT) +
  ",'0.0.0.0')";

type AnyObject = SandboxObject | AgentSandboxObject;

/** What differs between the two families, for a test that runs the same steps on both. */
export interface Family {
  readonly name: 'openkruise' | 'agent-sandbox';
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** A new Sandbox from this pod template, opted in to wake on traffic when asked. */
  body(name: string, template: object, wake: boolean): object;
  /** The merge patch that pauses (OpenKruise) or suspends (agent-sandbox) it. */
  readonly pausePatch: object;
  /** The controller reports it serving: Ready with a pod IP. */
  serving(o: AnyObject): boolean;
  /** The controller reports the pause complete: its pod is gone. */
  paused(o: AnyObject): boolean;
  /** The pod IP the controller reports. */
  ip(o: AnyObject): string;
  /** Request headers naming it, by its own clients' convention. */
  headers(namespace: string, name: string): Record<string, string>;
}

export const OPENKRUISE: Family = {
  name: 'openkruise',
  group: GROUP,
  version: VERSION,
  plural: PLURAL,
  body: (name, template, wake) => ({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'Sandbox',
    metadata: { name },
    spec: { template, ...(wake ? { autoPausePolicy: { resume: { onIngressTraffic: {} } } } : {}) },
  }),
  pausePatch: { spec: { paused: true } },
  serving: (o) => isRunning(o as SandboxObject),
  paused: (o) => isPaused(o as SandboxObject),
  ip: (o) => podIP(o as SandboxObject),
  headers: (namespace, name) => ({ 'e2b-sandbox-id': `${namespace}--${name}` }),
};

export const AGENT_SANDBOX: Family = {
  name: 'agent-sandbox',
  group: AS_GROUP,
  version: AS_VERSION,
  plural: AS_PLURAL,
  body: (name, template, wake) => ({
    apiVersion: `${AS_GROUP}/${AS_VERSION}`,
    kind: 'Sandbox',
    metadata: { name, annotations: wake ? { 'sandbox-extproc.io/wake-on-traffic': 'true' } : {} },
    spec: { podTemplate: template },
  }),
  pausePatch: { spec: { operatingMode: 'Suspended' } },
  serving: (o) => isServing(o as AgentSandboxObject),
  paused: (o) => isSuspended(o as AgentSandboxObject),
  ip: (o) => podIPOf(o as AgentSandboxObject),
  headers: (namespace, name) => ({ 'x-sandbox-id': name, 'x-sandbox-namespace': namespace, 'x-sandbox-port': String(SANDBOX_PORT) }),
};

export class KindSandboxes {
  readonly #admin: KubeConfig;
  readonly #namespace: string;
  readonly #image: string;
  readonly #api: CustomObjectsApi;
  readonly #core: CoreV1Api;

  constructor(admin: KubeConfig, namespace: string, image: string) {
    this.#admin = admin;
    this.#namespace = namespace;
    this.#image = image;
    this.#api = admin.makeApiClient(CustomObjectsApi);
    this.#core = admin.makeApiClient(CoreV1Api);
  }

  /** The pod template of every sandbox: the server, with its readiness probed on its port. */
  #template(): object {
    return {
      metadata: { labels: { app: 'sandbox' } },
      spec: {
        containers: [
          {
            name: 'sandbox',
            image: this.#image,
            imagePullPolicy: 'Never',
            command: ['node', '-e', SERVER],
            ports: [{ containerPort: SANDBOX_PORT }],
            readinessProbe: { tcpSocket: { port: SANDBOX_PORT }, periodSeconds: 1 },
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ['ALL'] },
            },
          },
        ],
      },
    };
  }

  /** Creates the Sandbox; its controller then brings it up (waitFor). */
  async create(family: Family, name: string, options: { wake?: boolean } = {}): Promise<void> {
    await this.#api.createNamespacedCustomObject({
      group: family.group,
      version: family.version,
      plural: family.plural,
      namespace: this.#namespace,
      body: family.body(name, this.#template(), options.wake ?? false),
    });
  }

  /** Asks for a pause (OpenKruise) or a suspension (agent-sandbox), as its users do; the controller does it. */
  async pause(family: Family, name: string): Promise<void> {
    await this.#api.patchNamespacedCustomObject(
      { group: family.group, version: family.version, plural: family.plural, namespace: this.#namespace, name, body: family.pausePatch },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  get(family: Family, name: string): Promise<AnyObject> {
    return this.#api.getNamespacedCustomObject({
      group: family.group,
      version: family.version,
      plural: family.plural,
      namespace: this.#namespace,
      name,
    }) as Promise<AnyObject>;
  }

  /** Resolves with the sandbox once (already, or on a later watch event) the predicate accepts it. */
  waitFor(family: Family, name: string, predicate: (o: AnyObject) => boolean, timeoutMs: number, what: string): Promise<AnyObject> {
    return waitForObject(
      this.#admin,
      `/apis/${family.group}/${family.version}/namespaces/${this.#namespace}/${family.plural}`,
      { fieldSelector: `metadata.name=${name}` },
      (o) => predicate(o as AnyObject),
      timeoutMs,
      `${family.name} sandbox ${this.#namespace}/${name} ${what}`,
    ) as Promise<AnyObject>;
  }

  /** The sandbox's pod (both controllers name it after the Sandbox), if one exists. */
  async pod(name: string): Promise<V1Pod | undefined> {
    const pods = await this.#core.listNamespacedPod({ namespace: this.#namespace, fieldSelector: `metadata.name=${name}` });
    return pods.items[0];
  }
}
