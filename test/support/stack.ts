// The real stack most integration and chaos tests run on: kube-apiserver + etcd with the families' own
// CRDs, kube-controller-manager's garbage collector and kwok for pods (test/support/cluster.ts), the
// real controller of each Sandbox family the service runs (OpenKruise's always; agent-sandbox's when
// that kind is on), test upstreams on every address of the pods' CIDR, sandbox-extproc as its own
// least-privilege ServiceAccount, and Envoy in front. Started once per file; stop() tears it all down.
import { AgentSandboxController, AgentSandboxes, type NewAgentSandbox } from './agent-sandbox.ts';
import { addressesOf, Cluster, DEFAULT_POD_CIDR } from './cluster.ts';
import { ControlPlane } from './controlplane.ts';
import { startEnvoy, type EnvoyOptions, type RunningEnvoy } from './envoy.ts';
import { httpGet, type HttpResult } from './http.ts';
import { OpenKruiseController, OpenKruiseSandboxes, type NewSandbox } from './openkruise.ts';
import { UpstreamPool } from './sandboxes.ts';
import { startService, type RunningService } from './service.ts';

export type FamilyName = 'openkruise' | 'agent-sandbox';

export interface StackOptions {
  readonly namespaces: readonly string[];
  /** Sandboxes to create (and wait for) before the service starts, so its first list holds them. */
  readonly sandboxes?: readonly NewSandbox[];
  /** Extra service flags. */
  readonly serviceArgs?: readonly string[];
  readonly envoy?: Omit<EnvoyOptions, 'extprocPort'>;
  /** Sandbox families the service runs (--sandbox-kind); default: OpenKruise only, flag not passed. */
  readonly kinds?: readonly FamilyName[];
  /** agent-sandbox Sandboxes to create before the service starts. */
  readonly agentSandboxes?: readonly NewAgentSandbox[];
  /** The pods' CIDR (kwok's node), where the upstreams listen: one upstream per address. */
  readonly podCIDR?: string;
  /** OpenKruise's --recycle-grace-period. */
  readonly recycleGracePeriod?: string;
  /** CRDs installed at start instead of the families' own (a suite that installs another CRD itself). */
  readonly crds?: readonly (string | object)[];
  /**
   * Whether agent-sandbox's real controller runs when that kind is on (default true). Off only where it
   * cannot: v1.0.1 serves v1beta1 alone, so the v1alpha1 suite brings its own stand-in (stack.agent is
   * then undefined).
   */
  readonly agentSandboxController?: boolean;
  /** Receives the service's log lines (see ServiceOptions.logs): for a test that reads them. */
  readonly serviceLogs?: (line: string) => void;
}

export interface Stack {
  readonly plane: ControlPlane;
  readonly cluster: Cluster;
  /** OpenKruise Sandboxes, driven by its real controller. */
  readonly openkruise: OpenKruiseSandboxes;
  readonly openkruiseController: OpenKruiseController;
  /** agent-sandbox Sandboxes, driven by its real controller, when that kind is on. */
  readonly agent: AgentSandboxes | undefined;
  readonly pool: UpstreamPool;
  readonly service: RunningService;
  readonly envoy: RunningEnvoy;
  /** The kubeconfig of the service's ServiceAccount. */
  readonly kubeconfig: string;
  /** GET through Envoy naming a sandbox by ID, on the upstreams' port. */
  get(id: string, headers?: Record<string, string>): Promise<HttpResult>;
  /** GET through Envoy naming an agent-sandbox Sandbox by its router's headers, on the upstreams' port. */
  getAgent(namespace: string, name: string, headers?: Record<string, string>): Promise<HttpResult>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const kinds = options.kinds ?? ['openkruise'];
  const agentOn = kinds.includes('agent-sandbox') && options.agentSandboxController !== false;
  const ownCrds: readonly (string | object)[] = [
    ...(OpenKruiseController.crds() as object[]),
    ...(agentOn ? AgentSandboxController.crds() : []),
  ];
  const plane = await ControlPlane.start({ crds: options.crds ?? ownCrds });
  const parts: {
    cluster?: Cluster;
    controllers: { stop(): Promise<void> }[];
    pool?: UpstreamPool;
    service?: RunningService;
    envoy?: RunningEnvoy;
  } = { controllers: [] };
  const stop = async () => {
    await parts.envoy?.stop();
    await parts.service?.stop();
    await Promise.all(parts.controllers.map((c) => c.stop()));
    await parts.cluster?.stop();
    await parts.pool?.close();
    await plane.stop();
  };
  try {
    const podCIDR = options.podCIDR ?? DEFAULT_POD_CIDR;
    const [cluster, pool] = await Promise.all([Cluster.start(plane, { podCIDR }), UpstreamPool.start(addressesOf(podCIDR))]);
    parts.cluster = cluster;
    parts.pool = pool;
    for (const ns of options.namespaces) await plane.ensureNamespace(ns);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', options.namespaces, kinds);
    const openkruiseController = await OpenKruiseController.start(plane, {
      ...(options.recycleGracePeriod === undefined ? {} : { recycleGracePeriod: options.recycleGracePeriod }),
    });
    parts.controllers.push(openkruiseController);
    if (agentOn) parts.controllers.push(await AgentSandboxController.start(plane));
    const openkruise = new OpenKruiseSandboxes(plane, cluster);
    const agent = agentOn ? new AgentSandboxes(plane, cluster) : undefined;
    await Promise.all([
      ...(options.sandboxes ?? []).map((s) => openkruise.create(s)),
      ...(options.agentSandboxes ?? []).map((s) => (agent as AgentSandboxes).create(s)),
    ]);
    const service = (parts.service = await startService(
      [
        '--kubeconfig',
        kubeconfig,
        '--namespaces',
        options.namespaces.join(','),
        ...(options.kinds === undefined ? [] : ['--sandbox-kind', kinds.join(',')]),
        ...(options.serviceArgs ?? []),
      ],
      {},
      options.serviceLogs === undefined ? {} : { logs: options.serviceLogs },
    ));
    const envoy = (parts.envoy = await startEnvoy({ ...options.envoy, extprocPort: service.listening.grpcPort as number }));
    const get = (id: string, headers: Record<string, string> = {}) =>
      httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port), ...headers }, 30_000);
    const getAgent = (namespace: string, name: string, headers: Record<string, string> = {}) =>
      httpGet(
        `${envoy.url}/`,
        { 'x-sandbox-id': name, 'x-sandbox-namespace': namespace, 'x-sandbox-port': String(pool.port), ...headers },
        30_000,
      );
    return { plane, cluster, openkruise, openkruiseController, agent, pool, service, envoy, kubeconfig, get, getAgent, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
