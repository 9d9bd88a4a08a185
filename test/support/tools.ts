// Paths of the real tools the project provisions (scripts/provision.sh). A missing tool is an error,
// never a reason to skip: integration tests fail when the real parts are not there.
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

let provisioned: Record<string, string> | undefined;

export function provisionedPaths(): Record<string, string> {
  if (provisioned !== undefined) return provisioned;
  const text = execFileSync('bash', [`${REPO_ROOT}scripts/provision.sh`, 'env'], { encoding: 'utf8' });
  provisioned = {};
  for (const match of text.matchAll(/^export (SBX_[A-Z_]+)="([^"]*)"$/gm)) provisioned[match[1] as string] = match[2] as string;
  return provisioned;
}

export type Tool =
  | 'SBX_ENVOY'
  | 'SBX_KUBE_APISERVER'
  | 'SBX_ETCD'
  | 'SBX_HELM'
  | 'SBX_KIND'
  | 'SBX_GHZ'
  | 'SBX_VEGETA'
  | 'SBX_BARE_GO'
  | 'SBX_PROMTOOL'
  | 'SBX_KUBE_CONTROLLER_MANAGER'
  | 'SBX_KWOK'
  | 'SBX_OPENKRUISE'
  | 'SBX_AGENT_SANDBOX'
  | 'SBX_H2SPEC'
  | 'SBX_SYFT'
  | 'SBX_OTELCOL'
  | 'SBX_ENVOY_GATEWAY'
  | 'SBX_KUBE_ROUTER';

export function toolPath(variable: Tool): string {
  const path = process.env[variable] ?? provisionedPaths()[variable];
  if (path === undefined || !existsSync(path)) {
    throw new Error(`${variable}: the real tool is missing (${path ?? 'no path'}); run scripts/provision.sh all`);
  }
  return path;
}

/**
 * A value `scripts/provision.sh env` exports that is not a path (an image reference, say): the
 * environment's, else the provisioned one.
 */
export function provisionedValue(
  variable: 'SBX_OPENKRUISE_IMAGE' | 'SBX_AGENT_SANDBOX_IMAGE' | 'SBX_ENVOY_GATEWAY_IMAGE' | 'SBX_KUBE_ROUTER_IMAGE',
): string {
  const value = process.env[variable] ?? provisionedPaths()[variable];
  if (value === undefined || value === '') throw new Error(`${variable}: not provisioned; run scripts/provision.sh kind`);
  return value;
}
