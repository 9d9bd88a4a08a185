// The real stack most integration and chaos tests run on: kube-apiserver + etcd with the Sandbox CRDs,
// the test controllers (OpenKruise's always; agent-sandbox's when that kind is on), stand-in sandboxes on
// loopback IPs, sandbox-extproc as its own least-privilege ServiceAccount, and Envoy in front. Started
// once per file; stop() tears it all down.
import { AgentSandboxController, type AgentControllerOptions, type NewAgentSandbox } from './agent-sandbox-controller.ts';
import { ControlPlane } from './controlplane.ts';
import { startEnvoy, type EnvoyOptions, type RunningEnvoy } from './envoy.ts';
import { httpGet, type HttpResult } from './http.ts';
import { SandboxController, type ControllerOptions, type NewSandbox } from './sandbox-controller.ts';
import { UpstreamPool } from './sandboxes.ts';
import { startService, type RunningService } from './service.ts';

export interface StackOptions {
  readonly namespaces: readonly string[];
  /** Pod IPs of the stand-in sandboxes (loopback addresses). */
  readonly ips: readonly string[];
  /** Sandboxes to create before the service starts (so its first list holds them). */
  readonly sandboxes?: readonly NewSandbox[];
  readonly controller?: ControllerOptions;
  /** Extra service flags. */
  readonly serviceArgs?: readonly string[];
  readonly envoy?: Omit<EnvoyOptions, 'extprocPort'>;
  /** Sandbox families the service runs (--sandbox-kind); default: OpenKruise only, flag not passed. */
  readonly kinds?: readonly ('openkruise' | 'agent-sandbox')[];
  /** CRD fixtures to install (default: ControlPlane's). */
  readonly crds?: readonly string[];
  /** agent-sandbox Sandboxes to create before the service starts. */
  readonly agentSandboxes?: readonly NewAgentSandbox[];
  readonly agentController?: AgentControllerOptions;
}

export interface Stack {
  readonly plane: ControlPlane;
  readonly controller: SandboxController;
  /** agent-sandbox's test controller, when that kind is on. */
  readonly agentController: AgentSandboxController | undefined;
  readonly pool: UpstreamPool;
  readonly service: RunningService;
  readonly envoy: RunningEnvoy;
  /** The kubeconfig of the service's ServiceAccount. */
  readonly kubeconfig: string;
  /** GET through Envoy naming a sandbox by ID, on the stand-ins' port. */
  get(id: string, headers?: Record<string, string>): Promise<HttpResult>;
  /** GET through Envoy naming an agent-sandbox Sandbox by its router's headers, on the stand-ins' port. */
  getAgent(namespace: string, name: string, headers?: Record<string, string>): Promise<HttpResult>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const plane = await ControlPlane.start(options.crds === undefined ? {} : { crds: options.crds });
  const parts: {
    controller?: SandboxController;
    agentController?: AgentSandboxController;
    pool?: UpstreamPool;
    service?: RunningService;
    envoy?: RunningEnvoy;
  } = {};
  const kinds = options.kinds ?? ['openkruise'];
  const stop = async () => {
    parts.controller?.stop();
    parts.agentController?.stop();
    await parts.envoy?.stop();
    await parts.service?.stop();
    await parts.pool?.close();
    await plane.stop();
  };
  try {
    for (const ns of options.namespaces) await plane.ensureNamespace(ns);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', options.namespaces, kinds);
    const controller = (parts.controller = new SandboxController(plane.admin, options.controller));
    await controller.start();
    let agentController: AgentSandboxController | undefined;
    if (kinds.includes('agent-sandbox')) {
      agentController = parts.agentController = new AgentSandboxController(plane.admin, options.agentController);
      await agentController.start();
    }
    const pool = (parts.pool = await UpstreamPool.start(options.ips));
    for (const sandbox of options.sandboxes ?? []) await controller.create(sandbox);
    for (const sandbox of options.agentSandboxes ?? []) await (agentController as AgentSandboxController).create(sandbox);
    const service = (parts.service = await startService([
      '--kubeconfig',
      kubeconfig,
      '--namespaces',
      options.namespaces.join(','),
      ...(options.kinds === undefined ? [] : ['--sandbox-kind', kinds.join(',')]),
      ...(options.serviceArgs ?? []),
    ]));
    const envoy = (parts.envoy = await startEnvoy({ ...options.envoy, extprocPort: service.listening.grpcPort as number }));
    const get = (id: string, headers: Record<string, string> = {}) =>
      httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port), ...headers }, 30_000);
    const getAgent = (namespace: string, name: string, headers: Record<string, string> = {}) =>
      httpGet(
        `${envoy.url}/`,
        { 'x-sandbox-id': name, 'x-sandbox-namespace': namespace, 'x-sandbox-port': String(pool.port), ...headers },
        30_000,
      );
    return { plane, controller, agentController, pool, service, envoy, kubeconfig, get, getAgent, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
