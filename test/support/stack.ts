// The real stack most integration and chaos tests run on: kube-apiserver + etcd with the Sandbox CRD,
// the test controller, stand-in sandboxes on loopback IPs, sandbox-extproc as its own least-privilege
// ServiceAccount, and Envoy in front. Started once per file; stop() tears it all down.
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
}

export interface Stack {
  readonly plane: ControlPlane;
  readonly controller: SandboxController;
  readonly pool: UpstreamPool;
  readonly service: RunningService;
  readonly envoy: RunningEnvoy;
  /** The kubeconfig of the service's ServiceAccount. */
  readonly kubeconfig: string;
  /** GET through Envoy naming a sandbox by ID, on the stand-ins' port. */
  get(id: string, headers?: Record<string, string>): Promise<HttpResult>;
  stop(): Promise<void>;
}

export async function startStack(options: StackOptions): Promise<Stack> {
  const plane = await ControlPlane.start();
  const parts: { controller?: SandboxController; pool?: UpstreamPool; service?: RunningService; envoy?: RunningEnvoy } = {};
  const stop = async () => {
    parts.controller?.stop();
    await parts.envoy?.stop();
    await parts.service?.stop();
    await parts.pool?.close();
    await plane.stop();
  };
  try {
    for (const ns of options.namespaces) await plane.ensureNamespace(ns);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', options.namespaces);
    const controller = (parts.controller = new SandboxController(plane.admin, options.controller));
    await controller.start();
    const pool = (parts.pool = await UpstreamPool.start(options.ips));
    for (const sandbox of options.sandboxes ?? []) await controller.create(sandbox);
    const service = (parts.service = await startService([
      '--kubeconfig',
      kubeconfig,
      '--namespaces',
      options.namespaces.join(','),
      ...(options.serviceArgs ?? []),
    ]));
    const envoy = (parts.envoy = await startEnvoy({ ...options.envoy, extprocPort: service.listening.grpcPort as number }));
    const get = (id: string, headers: Record<string, string> = {}) =>
      httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port), ...headers }, 30_000);
    return { plane, controller, pool, service, envoy, kubeconfig, get, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
