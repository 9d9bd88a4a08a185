// Renders envoy/envoy.yaml: the same file the Helm chart ships, with its ${TOKENS} filled in.
import { readFileSync } from 'node:fs';
import { REPO_ROOT } from './tools.ts';

export interface EnvoyValues {
  readonly ADMIN_PORT: number;
  readonly LISTEN_ADDRESS: string;
  readonly LISTEN_PORT: number;
  readonly EXTPROC_HOST: string;
  readonly EXTPROC_PORT: number;
  readonly MESSAGE_TIMEOUT: string;
  readonly MAX_MESSAGE_TIMEOUT: string;
}

export const ENVOY_TEMPLATE = `${REPO_ROOT}envoy/envoy.yaml`;

export function renderEnvoyConfig(values: EnvoyValues, template = readFileSync(ENVOY_TEMPLATE, 'utf8')): string {
  const rendered = template.replace(/\$\{([A-Z_]+)\}/g, (token, name: string) => {
    const value = (values as unknown as Record<string, string | number | undefined>)[name];
    if (value === undefined) throw new Error(`envoy template token ${token} has no value`);
    return String(value);
  });
  return rendered;
}
