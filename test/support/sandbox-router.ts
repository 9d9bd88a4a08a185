// kubernetes-sigs/agent-sandbox's own router (sandbox-router/cmd of the module sigs.k8s.io/agent-sandbox
// v1.0.1, built by scripts/provision.sh controllers), run against the test control plane as its users
// run it: a reverse proxy that names a sandbox by X-Sandbox-ID / X-Sandbox-Namespace / X-Sandbox-Port,
// with its Pod-IP cache on (--cache-enabled: an informer on sandbox-owned Pods, resolved by namespace
// and name), with the identity and rights its own deploy/rbac.yaml gives it (get, list and watch Pods).
// Every other setting is its default (access log on, dial retries 200/400/800 ms). The benchmarks put
// it side by side with Envoy + sandbox-extproc (test/bench/router.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import type { ControlPlane } from './controlplane.ts';
import { TestProcess } from './process.ts';
import { toolPath } from './tools.ts';

const NAMESPACE = 'default';
const NAME = 'sandbox-router';

export interface RunningRouter {
  readonly process: TestProcess;
  readonly port: number;
  readonly url: string;
  /** Resident memory, in bytes (from /proc). */
  rss(): number;
  stop(): Promise<void>;
}

/** The router's own identity: its ServiceAccount, bound to its ClusterRole (deploy/rbac.yaml). */
export async function routerIdentity(plane: ControlPlane): Promise<string> {
  const core = plane.admin.makeApiClient(CoreV1Api);
  const rbac = plane.admin.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: NAMESPACE, body: { metadata: { name: NAME } } });
  await rbac.createClusterRole({
    body: { metadata: { name: NAME }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }] },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: NAME },
      subjects: [{ kind: 'ServiceAccount', name: NAME, namespace: NAMESPACE }],
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: NAME },
    },
  });
  return plane.kubeconfigFor(NAMESPACE, NAME);
}

/**
 * Starts the router with its cache on; resolves once its informer has synced (it blocks readiness on
 * the initial list) and its proxy listener is up. `cpu`: pin it to one CPU.
 */
export function startRouter(kubeconfig: string, options: { cpu?: number; syncTimeoutMs?: number } = {}): Promise<RunningRouter> {
  return launch(['--cache-enabled', `--kubeconfig=${kubeconfig}`], { ...options, synced: true });
}

/**
 * The router as the parity tests run it (test/integration/agent-sandbox-router.test.ts): the reference a
 * test compares against, same request to both, same status and the same `detail`. Without its Pod-IP
 * cache it routes by DNS (<name>.<namespace>.svc.cluster.local), which names nothing here: what it is
 * asked is answered before any dial (validation, authorization) or is its dial failure (502).
 */
export function startTheirRouter(args: readonly string[] = []): Promise<RunningRouter> {
  return launch(['--access-log=false', ...args], { synced: false });
}

async function launch(args: readonly string[], options: { cpu?: number; syncTimeoutMs?: number; synced: boolean }): Promise<RunningRouter> {
  const command = [
    join(toolPath('SBX_AGENT_SANDBOX'), 'bin', 'sandbox-router'),
    '--http-bind-address=127.0.0.1:0',
    '--metrics-bind-address=127.0.0.1:0',
    '--health-probe-bind-address=127.0.0.1:0',
    ...args,
  ];
  const [file, ...rest] = options.cpu === undefined ? command : ['taskset', '-c', String(options.cpu), ...command];
  const router = new TestProcess('sandbox-router', file as string, rest);
  try {
    if (options.synced) await router.waitForLine(/"pod cache synced"/, options.syncTimeoutMs ?? 60_000);
    const line = await router.waitForLine(/"msg":"listening".*"name":"proxy-http"/, 30_000);
    const { addr } = JSON.parse(line) as { addr: string };
    const port = Number(addr.slice(addr.lastIndexOf(':') + 1));
    return {
      process: router,
      port,
      url: `http://127.0.0.1:${port}`,
      rss: () => rssOf(router.child.pid),
      stop: () => router.stop(),
    };
  } catch (error) {
    await router.stop();
    throw error;
  }
}

/** A process's resident memory, in bytes, from /proc. */
export function rssOf(pid: number | undefined): number {
  // Read synchronously: a figure taken at one moment.
  const status = readStatus(pid);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

function readStatus(pid: number | undefined): string {
  if (pid === undefined) return '';
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}
