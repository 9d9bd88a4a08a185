// Builds the frozen Config from argv and the environment: a flag beats its variable, which beats the
// default. Any bad value, unknown flag or impossible combination throws a ConfigError naming the setting.
import { parseArgs } from 'node:util';
import type { Convention } from '../identification/identify.ts';
import { SETTINGS, type Config, type SettingKey } from './settings.ts';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type LoadResult = { readonly kind: 'help'; readonly text: string } | { readonly kind: 'config'; readonly config: Config };

const KEYS = Object.keys(SETTINGS) as SettingKey[];

export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): LoadResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(KEYS.map((k) => [SETTINGS[k].flag, { type: 'string' as const }]));
    values = parseArgs({
      args: [...argv],
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values['help'] === true) return { kind: 'help', text: helpText() };

  const config: Record<string, unknown> = {};
  for (const key of KEYS) {
    const s = SETTINGS[key];
    const fromFlag = values[s.flag];
    const text = typeof fromFlag === 'string' ? fromFlag : (env[s.env] ?? s.default);
    try {
      config[key] = s.parse(text);
    } catch (error) {
      throw new ConfigError(`invalid --${s.flag} (${s.env}) ${JSON.stringify(text)}: ${(error as Error).message}`);
    }
  }
  const result = Object.freeze(config) as Config;
  checkCombinations(result);
  return { kind: 'config', config: result };
}

function checkCombinations(config: Config): void {
  if (!config.grpcTcp && config.grpcSocket === '') {
    throw new ConfigError('invalid --grpc-tcp (SANDBOX_EXTPROC_GRPC_TCP) "false": no --grpc-socket is set either, so nothing would listen');
  }
  if (config.routeSource === 'file' && config.routesFile === '') {
    throw new ConfigError('missing --routes-file (SANDBOX_EXTPROC_ROUTES_FILE): required when --route-source is file');
  }
  if ((config.grpcTlsCert === '') !== (config.grpcTlsKey === '')) {
    throw new ConfigError('invalid --grpc-tls-cert / --grpc-tls-key (SANDBOX_EXTPROC_GRPC_TLS_CERT / _KEY): set both or neither');
  }
  if (config.grpcTlsClientCa !== '' && config.grpcTlsCert === '') {
    throw new ConfigError(
      'invalid --grpc-tls-client-ca (SANDBOX_EXTPROC_GRPC_TLS_CLIENT_CA): mTLS needs --grpc-tls-cert and --grpc-tls-key',
    );
  }
  if (config.wakeTimeout + 1000 > config.maxMessageTimeout) {
    throw new ConfigError(
      'invalid --wake-timeout (SANDBOX_EXTPROC_WAKE_TIMEOUT): it must be at least 1s shorter than --max-message-timeout, or Envoy would time held requests out first',
    );
  }
  if (config.trafficTokenHeader === 'x-access-token') {
    throw new ConfigError('invalid --traffic-token-header (SANDBOX_EXTPROC_TRAFFIC_TOKEN_HEADER): it must differ from x-access-token');
  }
  if (config.trafficTokenDiscoveryUrl !== '' && config.trafficTokenJwksFile !== '') {
    throw new ConfigError(
      'invalid --traffic-token-jwks-file (SANDBOX_EXTPROC_TRAFFIC_TOKEN_JWKS_FILE): set it or --traffic-token-discovery-url, not both',
    );
  }
  if (config.trafficTokenJwksFile !== '' && config.trafficTokenIssuer === '') {
    throw new ConfigError(
      'missing --traffic-token-issuer (SANDBOX_EXTPROC_TRAFFIC_TOKEN_ISSUER): required with --traffic-token-jwks-file (discovery names its own)',
    );
  }
  if (config.sandboxIdHeader === config.sandboxPortHeader) {
    throw new ConfigError('invalid --sandbox-port-header (SANDBOX_EXTPROC_SANDBOX_PORT_HEADER): it must differ from --sandbox-id-header');
  }
  const conventions = conventionsOf(config);
  if (conventions.includes('e2b') && config.routeSource === 'kubernetes' && !config.sandboxKind.includes('openkruise')) {
    throw new ConfigError(
      'invalid --identify-by (SANDBOX_EXTPROC_IDENTIFY_BY): the e2b convention names OpenKruise Sandboxes (or file routes), so it needs --sandbox-kind openkruise',
    );
  }
  const prefix = config.agentSandboxPathPrefix;
  if ((prefix !== '' || config.agentSandboxAuthzMode !== 'allow-all') && !conventions.includes('agent-sandbox')) {
    throw new ConfigError(
      `invalid --${prefix !== '' ? 'agent-sandbox-path-prefix' : 'agent-sandbox-authz-mode'}: it applies to agent-sandbox requests, so it needs the agent-sandbox convention (--sandbox-kind agent-sandbox)`,
    );
  }
  if (prefix !== '' && config.kruisePathRouting && conventions.includes('e2b') && (prefix === '/kruise' || prefix.startsWith('/kruise/'))) {
    throw new ConfigError(
      `invalid --agent-sandbox-path-prefix (SANDBOX_EXTPROC_AGENT_SANDBOX_PATH_PREFIX) ${JSON.stringify(prefix)}: OpenKruise's path form claims /kruise (--kruise-path-routing)`,
    );
  }
  if (config.agentSandboxAuthzMode === 'scoped-token' && config.agentSandboxAuthzScopedTokenSecretFile === '') {
    throw new ConfigError(
      'missing --agent-sandbox-authz-scoped-token-secret-file (SANDBOX_EXTPROC_AGENT_SANDBOX_AUTHZ_SCOPED_TOKEN_SECRET_FILE): required with --agent-sandbox-authz-mode scoped-token',
    );
  }
  if (conventions.includes('agent-sandbox')) {
    if (config.routeSource !== 'kubernetes' || !config.sandboxKind.includes('agent-sandbox')) {
      throw new ConfigError(
        'invalid --identify-by (SANDBOX_EXTPROC_IDENTIFY_BY): the agent-sandbox convention names agent-sandbox Sandboxes, so it needs --sandbox-kind agent-sandbox and --route-source kubernetes',
      );
    }
    for (const [flag, header] of [
      ['sandbox-id-header', config.sandboxIdHeader],
      ['sandbox-port-header', config.sandboxPortHeader],
    ] as const) {
      if (header.startsWith('x-sandbox-')) {
        throw new ConfigError(
          `invalid --${flag} (SANDBOX_EXTPROC_${flag.toUpperCase().replaceAll('-', '_')}) ${JSON.stringify(header)}: x-sandbox-* headers belong to the agent-sandbox convention`,
        );
      }
    }
  }
}

/**
 * The request conventions in force, in the order tried: --identify-by, or else those of the enabled
 * sandbox kinds in their order (E2B's for OpenKruise and for file routes, agent-sandbox's own).
 */
export function conventionsOf(config: Pick<Config, 'identifyBy' | 'sandboxKind' | 'routeSource'>): readonly Convention[] {
  if (config.identifyBy.length > 0) return config.identifyBy;
  if (config.routeSource === 'file') return ['e2b'];
  return config.sandboxKind.map((kind): Convention => (kind === 'openkruise' ? 'e2b' : 'agent-sandbox'));
}

export function helpText(): string {
  const lines = ['Usage: sandbox-extproc [options]', '', 'Every option can also be set by its environment variable.', ''];
  for (const key of KEYS) {
    const s = SETTINGS[key];
    lines.push(`  --${s.flag} <value>   (${s.env}, default ${JSON.stringify(s.default)})`, `      ${s.help}`);
  }
  lines.push('  -h, --help', '      Show this help.');
  return lines.join('\n');
}
