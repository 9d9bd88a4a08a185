// Loads the Kubernetes client configuration, and refuses at start-up one that cannot work. Without this,
// client-node falls back to http://localhost:8080 when it finds nothing (no --kubeconfig, $KUBECONFIG,
// ~/.kube/config nor in-cluster token), and every list then fails with "HTTP protocol is not allowed
// when skipTLSVerify is not set or false", retried forever: a service that never gets ready and never
// says why.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';
const SETTING = '--kubeconfig (SANDBOX_EXTPROC_KUBECONFIG)';

export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

export interface KubeConfigSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The in-cluster token's path (a test points it elsewhere). */
  readonly serviceAccountToken?: string;
  readonly home?: string;
}

export function loadKubeConfig(path: string, sources: KubeConfigSources): KubeConfig {
  const kc = new KubeConfig();
  const env = sources.env;
  let from: string;
  try {
    if (path !== '') {
      from = path;
      kc.loadFromFile(path);
    } else if ((env['KUBECONFIG'] ?? '') !== '') {
      from = `$KUBECONFIG (${env['KUBECONFIG']})`;
      kc.loadFromDefault();
    } else if (existsSync(join(sources.home ?? homedir(), '.kube', 'config'))) {
      from = '~/.kube/config';
      kc.loadFromDefault();
    } else if (existsSync(sources.serviceAccountToken ?? SERVICE_ACCOUNT_TOKEN)) {
      from = 'the in-cluster service account';
      if ((env['KUBERNETES_SERVICE_HOST'] ?? '') === '' || (env['KUBERNETES_SERVICE_PORT'] ?? '') === '') {
        throw new KubeConfigError(
          `no usable Kubernetes configuration: a service account token is mounted but KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set; set ${SETTING} or $KUBECONFIG`,
        );
      }
      kc.loadFromCluster();
    } else {
      throw new KubeConfigError(
        `no Kubernetes configuration found: set ${SETTING} or $KUBECONFIG, provide ~/.kube/config, or run in a cluster with a service account token (or use --route-source file)`,
      );
    }
  } catch (error) {
    if (error instanceof KubeConfigError) throw error;
    throw new KubeConfigError(
      `cannot load the Kubernetes configuration from ${path || 'the default locations'}: ${(error as Error).message}; check ${SETTING}`,
    );
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null) {
    throw new KubeConfigError(`no usable Kubernetes configuration in ${from}: its current context names no cluster; check ${SETTING}`);
  }
  let server: URL;
  try {
    server = new URL(cluster.server);
  } catch {
    throw new KubeConfigError(
      `no usable Kubernetes configuration in ${from}: cluster ${cluster.name} has no valid server URL (${JSON.stringify(cluster.server)})`,
    );
  }
  if (server.protocol === 'http:' && cluster.skipTLSVerify !== true) {
    // client-node's own rule, checked here so that it stops start-up rather than every request.
    throw new KubeConfigError(
      `no usable Kubernetes configuration in ${from}: cluster ${cluster.name} is served over plain http (${cluster.server}), which the Kubernetes client allows only with insecure-skip-tls-verify; use https, or check ${SETTING}`,
    );
  }
  return kc;
}
