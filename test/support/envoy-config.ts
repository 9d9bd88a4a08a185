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
  /** The edge listener's limits; the chart's defaults when not given (charts/sandbox-extproc/values.yaml). */
  readonly REQUEST_HEADERS_TIMEOUT?: string;
  readonly STREAM_IDLE_TIMEOUT?: string;
  readonly WEBSOCKET_IDLE_TIMEOUT?: string;
  readonly MAX_CONNECTIONS?: number;
  readonly XFF_NUM_TRUSTED_HOPS?: number;
}

/** The chart's defaults for the edge listener's limits. */
export const EDGE_DEFAULTS = {
  REQUEST_HEADERS_TIMEOUT: '10s',
  STREAM_IDLE_TIMEOUT: '330s',
  WEBSOCKET_IDLE_TIMEOUT: '3600s',
  MAX_CONNECTIONS: 50000,
  XFF_NUM_TRUSTED_HOPS: 0,
} as const;

export const ENVOY_TEMPLATE = `${REPO_ROOT}envoy/envoy.yaml`;

export function renderEnvoyConfig(values: EnvoyValues, template = readFileSync(ENVOY_TEMPLATE, 'utf8')): string {
  const all: Record<string, string | number | undefined> = { ...EDGE_DEFAULTS, ...values };
  const rendered = template.replace(/\$\{([A-Z_]+)\}/g, (token, name: string) => {
    const value = all[name];
    if (value === undefined) throw new Error(`envoy template token ${token} has no value`);
    return String(value);
  });
  return rendered;
}
