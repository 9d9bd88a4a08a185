// Builds the frozen Config from argv, the environment and an optional YAML file (--config): a flag beats
// its variable, which beats the file, which beats the default. Any bad value, unknown flag, unknown
// SANDBOX_EXTPROC_* variable, unknown key in the file or impossible combination throws a ConfigError
// naming the setting. Variables the kubelet injects for a Service named sandbox-extproc(-*) (service
// links) are not settings and are let through (config/service-links.ts).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import type { Convention } from '../identification/identify.ts';
import { isServiceLink, serviceLinkHint } from './service-links.ts';
import { envOf, SETTINGS, type Config, type SettingKey } from './settings.ts';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export type LoadResult =
  { readonly kind: 'help'; readonly text: string } | { readonly kind: 'version' } | { readonly kind: 'config'; readonly config: Config };

const KEYS = Object.keys(SETTINGS) as SettingKey[];
const ENV_PREFIX = 'SANDBOX_EXTPROC_';
/** Every variable that names a setting (aliases included): any other SANDBOX_EXTPROC_* is a typo. */
const KNOWN_ENV = new Set(KEYS.flatMap((k) => [SETTINGS[k].env, ...SETTINGS[k].aliases.map(envOf)]));
/** Config file keys: flag names and their aliases, to the setting (the file cannot name another file). */
const FILE_KEYS = new Map(
  KEYS.filter((k) => k !== 'config').flatMap((k) => [SETTINGS[k].flag, ...SETTINGS[k].aliases].map((name) => [name, k] as const)),
);

export type ReadFile = (path: string) => string;

export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  readFile: ReadFile = (path) => readFileSync(path, 'utf8'),
): LoadResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    const names = KEYS.flatMap((k) => [SETTINGS[k].flag, ...SETTINGS[k].aliases]);
    const options = Object.fromEntries(names.map((name) => [name, { type: 'string' as const }]));
    values = parseArgs({
      args: [...argv],
      options: { ...options, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (values['help'] === true) return { kind: 'help', text: helpText() };
  if (values['version'] === true) return { kind: 'version' };
  checkEnvironment(env);

  const flagOf = (key: SettingKey) =>
    pick(
      key,
      (name) => values[name],
      (name) => `--${name}`,
    );
  const envValueOf = (key: SettingKey) => pick(key, (name) => env[envOf(name)], envOf);
  const fileText = flagOf('config')?.text ?? envValueOf('config')?.text ?? '';
  const file = fileText === '' ? undefined : readConfigFile(fileText, readFile);

  const config: Record<string, unknown> = {};
  for (const key of KEYS) {
    const s = SETTINGS[key];
    const flag = flagOf(key);
    const given = flag ?? envValueOf(key);
    const text = given?.text ?? file?.values.get(key) ?? s.default;
    try {
      config[key] = s.parse(text);
    } catch (error) {
      const where =
        given === undefined && file?.values.has(key)
          ? `${s.flag} in ${file.path}`
          : given !== undefined && given.name !== s.flag
            ? `--${given.name} (${envOf(given.name)}, alias of --${s.flag})`
            : `--${s.flag} (${s.env})`;
      const hint = flag === undefined && given !== undefined ? serviceLinkHint(envOf(given.name), text) : '';
      throw new ConfigError(`invalid ${where} ${JSON.stringify(text)}: ${(error as Error).message}${hint}`);
    }
  }
  const result = Object.freeze(config) as Config;
  checkCombinations(result);
  return { kind: 'config', config: result };
}

/**
 * The value a setting is given under its own name or one of its aliases (never both: a value given
 * twice under two names is refused rather than one silently chosen).
 */
function pick(
  key: SettingKey,
  valueOf: (name: string) => unknown,
  label: (name: string) => string,
): { readonly name: string; readonly text: string } | undefined {
  const s = SETTINGS[key];
  let found: { name: string; text: string } | undefined;
  for (const name of [s.flag, ...s.aliases]) {
    const value = valueOf(name);
    if (typeof value !== 'string') continue;
    if (found !== undefined) throw new ConfigError(`${label(found.name)} and ${label(name)} name the same setting: give one`);
    found = { name, text: value };
  }
  return found;
}

/**
 * Refuses SANDBOX_EXTPROC_* variables that name no setting: a typo would otherwise be ignored. Those the
 * kubelet injects for a Service named sandbox-extproc(-*) are no typo (a setting's own name is never
 * taken for one: it is read, and checked, as the setting).
 */
function checkEnvironment(env: Readonly<Record<string, string | undefined>>): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || KNOWN_ENV.has(name) || value === undefined || isServiceLink(name, value)) continue;
    const near = closest(name, KNOWN_ENV);
    throw new ConfigError(
      `unknown environment variable ${name}: no setting has that name${near === undefined ? '' : ` (did you mean ${near}?)`}; see --help`,
    );
  }
}

interface ConfigFile {
  readonly path: string;
  /** Setting key to its value as text, as a flag would give it. */
  readonly values: ReadonlyMap<SettingKey, string>;
}

/** Reads the YAML config file: a mapping of flag names to scalars (lists for list settings). */
function readConfigFile(path: string, readFile: ReadFile): ConfigFile {
  let document: unknown;
  try {
    document = parseYaml(readFile(path));
  } catch (error) {
    throw new ConfigError(`cannot read --config (SANDBOX_EXTPROC_CONFIG) ${path}: ${(error as Error).message}`);
  }
  if (document === null || document === undefined) return { path, values: new Map() };
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`invalid --config ${path}: expected a mapping of setting names (as flags, without --) to values`);
  }
  const values = new Map<SettingKey, string>();
  const named = new Map<SettingKey, string>();
  for (const [name, value] of Object.entries(document)) {
    const key = FILE_KEYS.get(name);
    if (key === undefined) {
      const near = closest(name, FILE_KEYS.keys());
      throw new ConfigError(`unknown setting "${name}" in ${path}${near === undefined ? '' : ` (did you mean ${near}?)`}; see --help`);
    }
    const earlier = named.get(key);
    if (earlier !== undefined) throw new ConfigError(`${earlier} and ${name} in ${path} name the same setting: give one`);
    named.set(key, name);
    values.set(key, scalarText(value, name, path));
  }
  return { path, values };
}

function scalarText(value: unknown, name: string, path: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value) && value.every((item) => typeof item === 'string' || typeof item === 'number')) return value.join(',');
  throw new ConfigError(`invalid ${name} in ${path}: expected a string, number, boolean or list of strings`);
}

/** The candidate nearest to a misspelt name (edit distance at most 3), for the error message. */
function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance <= 3 && (best === undefined || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length] as number;
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
  const lines = [
    'Usage: sandbox-extproc [options]',
    '',
    'Every option can also be set by its environment variable, or in the --config file by its name (without --).',
    'A flag beats its variable, which beats the file.',
    '',
  ];
  for (const key of KEYS) {
    const s = SETTINGS[key];
    const choices = s.parse.choices === undefined ? '' : `; one of: ${s.parse.choices.join(', ')}`;
    lines.push(`  --${s.flag} <value>   (${s.env}, default ${JSON.stringify(s.default)}${choices})`, `      ${s.help}`);
    for (const alias of s.aliases) lines.push(`  --${alias} <value>   (${envOf(alias)}): alias of --${s.flag}`);
  }
  lines.push('  --version', '      Show the version, commit and Node.js version, and exit.', '  -h, --help', '      Show this help.');
  return lines.join('\n');
}
