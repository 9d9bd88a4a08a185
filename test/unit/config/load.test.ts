import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ConfigError, conventionsOf, loadConfig, helpText } from '../../../src/config/load.ts';
import { envOf, SETTINGS } from '../../../src/config/settings.ts';
import { TEST_LEASE_ENV, TEST_UPSTREAM_ENV } from '../../support/service.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const readRepoFile = (path: string) => readFileSync(join(ROOT, path), 'utf8');
/** Every file under a directory of the repository, as a path from its root. */
const filesUnder = (dir: string): string[] =>
  readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(ROOT.length));
const variablesIn = (path: string) => [...readRepoFile(path).matchAll(/\bSANDBOX_EXTPROC_[A-Z0-9_]+/g)].map((m) => m[0]);
const KNOWN = new Set(Object.values(SETTINGS).flatMap((s) => [s.env, ...s.aliases.map(envOf)]));

const config = (argv: string[] = [], env: Record<string, string> = {}) => {
  const result = loadConfig(argv, env);
  if (result.kind !== 'config') throw new Error('expected a config');
  return result.config;
};

describe('loadConfig', () => {
  it('has a valid default for every setting', () => {
    const c = config();
    expect(c.grpcPort).toBe(9002);
    expect(c.e2bDefaultPort).toBe(49983);
    expect(c.domains).toEqual([]);
    // Headers that let a client pick the upstream (Envoy's; agent-sandbox's router's) never pass.
    expect(c.stripHeaders).toEqual(['x-envoy-original-dst-host', 'x-sandbox-pod-ip', 'x-sandbox-uid']);
    expect(c.sandboxKind).toEqual(['openkruise']);
    expect(conventionsOf(c)).toEqual(['e2b']);
    expect(c.agentSandboxDefaultNamespace).toBe('default');
    expect(c.agentSandboxDefaultPort).toBe(8888);
    expect(c.agentSandboxNamespaces).toEqual([]);
    expect(c.wakeTimeout).toBe(60_000);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('parses byte sizes in binary units, and bounds the gRPC transport by default (issue 24)', () => {
    const c = config(['--grpc-max-ext-proc-message', '512Ki', '--grpc-connection-buffer', '1048576']);
    expect(c.grpcMaxExtProcMessage).toBe(512 * 1024);
    expect(c.grpcConnectionBuffer).toBe(1024 * 1024);
    const d = config();
    expect([d.grpcMaxExtProcMessage, d.grpcMaxAccessLogMessage, d.grpcConnectionBuffer, d.grpcBuffer]).toEqual([
      256 * 1024,
      1024 * 1024,
      16 * 1024 * 1024,
      256 * 1024 * 1024,
    ]);
    expect([d.grpcMaxConnections, d.grpcEmptyStreamLimit, d.grpcFirstMessageTimeout, d.grpcKeepaliveInterval]).toEqual([
      1000, 100, 10_000, 30_000,
    ]);
    expect(() => config(['--grpc-buffer', '16MB'])).toThrow(/--grpc-buffer.*256Ki/);
    expect(() => config(['--grpc-max-ext-proc-message', '1'])).toThrow(ConfigError);
  });

  it('takes a flag over its environment variable over the default', () => {
    expect(config([], { SANDBOX_EXTPROC_GRPC_PORT: '7000' }).grpcPort).toBe(7000);
    expect(config(['--grpc-port', '7001'], { SANDBOX_EXTPROC_GRPC_PORT: '7000' }).grpcPort).toBe(7001);
    expect(config(['--grpc-port=7002']).grpcPort).toBe(7002);
  });

  it('parses lists, durations, booleans and choices', () => {
    const c = config([
      '--namespaces',
      'a, b',
      '--wake-timeout',
      '90s',
      '--wake',
      'false',
      '--unnamed-requests',
      'pass',
      '--shutdown-grace',
      '250ms',
    ]);
    expect(c.namespaces).toEqual(['a', 'b']);
    expect(c.wakeTimeout).toBe(90_000);
    expect(c.wake).toBe(false);
    expect(c.unnamedRequests).toBe('pass');
    expect(c.shutdownGrace).toBe(250);
  });

  it.each([
    [['--grpc-port', 'abc'], '--grpc-port (SANDBOX_EXTPROC_GRPC_PORT)'],
    [['--grpc-port', '70000'], '--grpc-port'],
    [['--wake-timeout', '10'], '--wake-timeout'],
    [['--wake', 'maybe'], '--wake'],
    [['--route-source', 'etcd'], '--route-source'],
    [['--namespaces', 'Bad_NS'], '--namespaces'],
    [['--sandbox-id-header', 'Not A Header'], '--sandbox-id-header'],
    [['--grpc-socket-mode', '999'], '--grpc-socket-mode'],
    [['--route-source', 'file'], '--routes-file'],
    [['--grpc-tcp', 'false'], '--grpc-tcp'],
    [['--sandbox-port-header', 'e2b-sandbox-id'], '--sandbox-port-header'],
    [['--sandbox-kind', ''], '--sandbox-kind'],
    [['--sandbox-kind', 'kruise'], '--sandbox-kind'],
    [['--sandbox-kind', 'openkruise,openkruise'], '--sandbox-kind'],
    [['--identify-by', 'e2b,e2b'], '--identify-by'],
    [['--identify-by', 'agent-sandbox'], '--identify-by'],
    [
      ['--sandbox-kind', 'agent-sandbox', '--route-source', 'file', '--routes-file', 'r.yaml', '--identify-by', 'agent-sandbox'],
      '--identify-by',
    ],
    [['--sandbox-kind', 'agent-sandbox', '--sandbox-id-header', 'x-sandbox-id'], '--sandbox-id-header'],
    [['--sandbox-kind', 'agent-sandbox', '--identify-by', 'e2b,agent-sandbox'], '--identify-by'],
    [['--agent-sandbox-namespaces', 'team-a,Team_B'], '--agent-sandbox-namespaces'],
    [['--agent-sandbox-default-namespace', 'a.b'], '--agent-sandbox-default-namespace'],
    [['--no-such-flag', 'x'], 'no-such-flag'],
    [['--access-token-check', 'never'], '--access-token-check'],
    [['--traffic-token-header', 'x-access-token'], '--traffic-token-header'],
    [['--traffic-token-discovery-url', 'http://idp.example/.well-known/openid-configuration'], '--traffic-token-discovery-url'],
    [['--traffic-token-jwks-file', 'keys.json'], '--traffic-token-issuer'],
    [
      ['--traffic-token-jwks-file', 'k.json', '--traffic-token-issuer', 'i', '--traffic-token-discovery-url', 'https://i/d'],
      '--traffic-token-jwks-file',
    ],
  ])('stops on %j naming the setting', (argv, named) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(named);
  });

  it('takes several sandbox kinds, and by default their conventions in the same order', () => {
    const both = config(['--sandbox-kind', 'agent-sandbox, openkruise']);
    expect(both.sandboxKind).toEqual(['agent-sandbox', 'openkruise']);
    expect(conventionsOf(both)).toEqual(['agent-sandbox', 'e2b']);
    expect(conventionsOf(config(['--sandbox-kind', 'agent-sandbox,openkruise', '--identify-by', 'e2b,agent-sandbox']))).toEqual([
      'e2b',
      'agent-sandbox',
    ]);
    expect(conventionsOf(config(['--route-source', 'file', '--routes-file', 'r.yaml']))).toEqual(['e2b']);
    expect(config(['--agent-sandbox-namespaces', 'team-a,*']).agentSandboxNamespaces).toEqual(['team-a', '*']);
  });

  it('names the environment variable when the bad value came from there', () => {
    expect(() => loadConfig([], { SANDBOX_EXTPROC_LOG_LEVEL: 'loud' })).toThrow('SANDBOX_EXTPROC_LOG_LEVEL');
  });

  it('shows help listing every setting', () => {
    const result = loadConfig(['--help'], {});
    expect(result.kind).toBe('help');
    for (const s of Object.values(SETTINGS)) {
      expect(helpText()).toContain(`--${s.flag}`);
      expect(helpText()).toContain(s.env);
    }
  });
});

describe('operators conventions (issue 28)', () => {
  const file = (text: string) => (path: string) => {
    if (path !== '/etc/sandbox-extproc.yaml') throw new Error(`ENOENT: no such file, open '${path}'`);
    return text;
  };
  const load = (argv: string[], env: Record<string, string> = {}, text = '') => {
    const result = loadConfig(argv, env, file(text));
    if (result.kind !== 'config') throw new Error('expected a config');
    return result.config;
  };

  it('refuses an unknown SANDBOX_EXTPROC_* variable, naming it and the setting it may mean', () => {
    expect(() => config([], { SANDBOX_EXTPROC_WAKE_TIMOUT: '90s' })).toThrow(
      /unknown environment variable SANDBOX_EXTPROC_WAKE_TIMOUT: .*did you mean SANDBOX_EXTPROC_WAKE_TIMEOUT\?/,
    );
    expect(() => config([], { SANDBOX_EXTPROC_ENVOY: '/usr/bin/envoy' })).toThrow(/SANDBOX_EXTPROC_ENVOY/);
    // Other variables are not the service's business.
    expect(config([], { PATH: '/bin', SANDBOX_EXTPROCX: '1', OTEL_SERVICE_NAME: 'x' }).grpcPort).toBe(9002);
  });

  // The variables the kubelet gives a pod for Services of its namespace (pkg/kubelet/envvars), with
  // service links on: here a release named sandbox-extproc (Service sandbox-extproc, ports http 80,
  // http-metrics 9003) and a Service sandbox-extproc-metrics on an IPv6 cluster IP.
  const SERVICE_LINKS = {
    SANDBOX_EXTPROC_SERVICE_HOST: '10.96.12.34',
    SANDBOX_EXTPROC_SERVICE_PORT: '80',
    SANDBOX_EXTPROC_SERVICE_PORT_HTTP: '80',
    SANDBOX_EXTPROC_SERVICE_PORT_HTTP_METRICS: '9003',
    SANDBOX_EXTPROC_PORT: 'tcp://10.96.12.34:80',
    SANDBOX_EXTPROC_PORT_80_TCP: 'tcp://10.96.12.34:80',
    SANDBOX_EXTPROC_PORT_80_TCP_PROTO: 'tcp',
    SANDBOX_EXTPROC_PORT_80_TCP_PORT: '80',
    SANDBOX_EXTPROC_PORT_80_TCP_ADDR: '10.96.12.34',
    SANDBOX_EXTPROC_PORT_9003_TCP: 'tcp://10.96.12.34:9003',
    SANDBOX_EXTPROC_PORT_9003_TCP_PROTO: 'tcp',
    SANDBOX_EXTPROC_PORT_9003_TCP_PORT: '9003',
    SANDBOX_EXTPROC_PORT_9003_TCP_ADDR: '10.96.12.34',
    SANDBOX_EXTPROC_METRICS_SERVICE_HOST: 'fd00:10:96::1f',
    SANDBOX_EXTPROC_METRICS_SERVICE_PORT: '9003',
    SANDBOX_EXTPROC_METRICS_SERVICE_PORT_HTTP_METRICS: '9003',
    SANDBOX_EXTPROC_METRICS_PORT: 'tcp://[fd00:10:96::1f]:9003',
    SANDBOX_EXTPROC_METRICS_PORT_9003_TCP: 'tcp://[fd00:10:96::1f]:9003',
    SANDBOX_EXTPROC_METRICS_PORT_9003_TCP_PROTO: 'tcp',
    SANDBOX_EXTPROC_METRICS_PORT_9003_TCP_PORT: '9003',
    SANDBOX_EXTPROC_METRICS_PORT_9003_TCP_ADDR: 'fd00:10:96::1f',
  };

  it('starts beside the variables Kubernetes service links inject for a Service named sandbox-extproc(-*)', () => {
    expect(config([], SERVICE_LINKS).grpcPort).toBe(9002);
    expect(config([], { ...SERVICE_LINKS, SANDBOX_EXTPROC_GRPC_PORT: '7000' }).grpcPort).toBe(7000);
  });

  it('still refuses a typo or a value a service link would not have under a service link’s name', () => {
    // Same names, values the kubelet never writes there.
    for (const [name, value] of [
      ['SANDBOX_EXTPROC_SERVICE_HOST', 'extproc.local'],
      ['SANDBOX_EXTPROC_SERVICE_PORT', '80s'],
      ['SANDBOX_EXTPROC_PORT', '9002'],
      ['SANDBOX_EXTPROC_PORT_80_TCP', 'tcp://10.96.12.34:81'],
      ['SANDBOX_EXTPROC_PORT_80_TCP_PROTO', 'udp'],
      ['SANDBOX_EXTPROC_PORT_80_TCP_PORT', '8080'],
      ['SANDBOX_EXTPROC_PORT_80_TCP_ADDR', 'localhost'],
      // A typo of the gRPC port setting: a number, not the tcp://address:port a link has.
      ['SANDBOX_EXTPROC_GRCP_PORT', '7000'],
    ] as const) {
      expect(() => config([], { [name]: value }), `${name}=${value}`).toThrow(`unknown environment variable ${name}`);
    }
  });

  it('reads a setting whose name a Service’s link could have as the setting, saying where a link-shaped value comes from', () => {
    // A Service named sandbox-extproc-grpc would inject SANDBOX_EXTPROC_GRPC_PORT=tcp://...: still --grpc-port.
    expect(() => config([], { SANDBOX_EXTPROC_GRPC_PORT: 'tcp://10.96.0.7:9002' })).toThrow(
      /invalid --grpc-port \(SANDBOX_EXTPROC_GRPC_PORT\) "tcp:\/\/10.96.0.7:9002": .*a Service named sandbox-extproc-grpc .*enableServiceLinks: false/,
    );
    expect(() => config([], { SANDBOX_EXTPROC_HTTP_PORT: 'tcp://10.96.0.7:9003' })).toThrow(/--http-port.*sandbox-extproc-http/);
  });

  it('knows every variable the chart and the tests set', () => {
    // The chart: each name its templates write, and each its config.<name> values map to.
    const chartNames = [
      ...filesUnder('charts/sandbox-extproc/templates').flatMap(variablesIn),
      ...Object.values(parseYaml(readRepoFile('charts/sandbox-extproc/files/settings-env.yaml')) as Record<string, string>),
    ];
    expect(chartNames).toEqual(expect.arrayContaining(['SANDBOX_EXTPROC_GRPC_HOST', 'SANDBOX_EXTPROC_UPSTREAM_CIDRS']));
    expect(chartNames.length).toBeGreaterThan(Object.keys(SETTINGS).length - 10);
    // The test harness, the suites that run the image and the scripts: every name they mention.
    const harnessNames = ['test/support', 'test/e2e', 'test/bench', 'test/chaos', 'test/soak', 'scripts'].flatMap((dir) =>
      filesUnder(dir).flatMap(variablesIn),
    );
    expect(harnessNames).toEqual(expect.arrayContaining(['SANDBOX_EXTPROC_LEASE_NAMESPACE', 'SANDBOX_EXTPROC_UPSTREAM_CIDRS']));
    expect([...new Set([...chartNames, ...harnessNames])].filter((name) => !KNOWN.has(name))).toEqual([]);
    // And the values the harness gives them are accepted.
    expect(config([], { ...TEST_UPSTREAM_ENV, ...TEST_LEASE_ENV }).upstreamCidrs.length).toBe(3);
  });

  it('takes --e2b-default-port, and --default-port as its alias, but not both', () => {
    expect(config(['--e2b-default-port', '8080']).e2bDefaultPort).toBe(8080);
    expect(config(['--default-port', '8081']).e2bDefaultPort).toBe(8081);
    expect(config([], { SANDBOX_EXTPROC_DEFAULT_PORT: '8082' }).e2bDefaultPort).toBe(8082);
    expect(config(['--e2b-default-port', '8083'], { SANDBOX_EXTPROC_DEFAULT_PORT: '8082' }).e2bDefaultPort).toBe(8083);
    expect(() => config(['--e2b-default-port', '1', '--default-port', '2'])).toThrow(
      '--e2b-default-port and --default-port name the same setting: give one',
    );
  });

  it('reads a YAML config file by flag names; env and flags override it', () => {
    const text = 'wake-timeout: 90s\nnamespaces: [team-a, team-b]\nwake: false\ngrpc-port: 7000\n';
    const c = load(['--config', '/etc/sandbox-extproc.yaml'], {}, text);
    expect([c.wakeTimeout, c.namespaces, c.wake, c.grpcPort]).toEqual([90_000, ['team-a', 'team-b'], false, 7000]);
    const d = load(['--grpc-port', '7001'], { SANDBOX_EXTPROC_CONFIG: '/etc/sandbox-extproc.yaml', SANDBOX_EXTPROC_WAKE: 'true' }, text);
    expect([d.grpcPort, d.wake, d.wakeTimeout]).toEqual([7001, true, 90_000]);
  });

  it('refuses what the config file gets wrong, naming the file and the setting', () => {
    const at = '/etc/sandbox-extproc.yaml';
    expect(() => load(['--config', at], {}, 'wake-timout: 90s\n')).toThrow(
      `unknown setting "wake-timout" in ${at} (did you mean wake-timeout?)`,
    );
    expect(() => load(['--config', at], {}, 'wake-timeout: soon\n')).toThrow(`invalid wake-timeout in ${at} "soon"`);
    expect(() => load(['--config', at], {}, 'wake-timeout: { a: 1 }\n')).toThrow(`invalid wake-timeout in ${at}: expected a string`);
    expect(() => load(['--config', at], {}, '- a\n')).toThrow('expected a mapping');
    expect(() => load(['--config', at], {}, 'a: 1\na: 2\n')).toThrow(/cannot read .*Map keys must be unique/);
    expect(() => load(['--config', at], {}, 'config: other.yaml\n')).toThrow('unknown setting "config"');
    expect(() => load(['--config', at], {}, 'default-port: 1\ne2b-default-port: 2\n')).toThrow('name the same setting');
    expect(() => load(['--config', '/nonexistent.yaml'])).toThrow(/cannot read --config .*\/nonexistent.yaml: ENOENT/);
  });

  it('answers --version', () => {
    expect(loadConfig(['--version'], {})).toEqual({ kind: 'version' });
  });

  it('lists the allowed values of every enumerated setting in --help, and the aliases', () => {
    const help = helpText();
    expect(help).toContain('one of: kubernetes, file');
    expect(help).toContain('one of: openkruise, agent-sandbox');
    expect(help).toContain('one of: fatal, error, warn, info, debug, trace, silent');
    expect(help).toContain('one of: every-request, wake-only');
    expect(help).toContain('--default-port <value>   (SANDBOX_EXTPROC_DEFAULT_PORT): alias of --e2b-default-port');
    expect(help).toContain('--version');
    for (const s of Object.values(SETTINGS)) if (s.parse.choices !== undefined) expect(help).toContain(s.parse.choices.join(', '));
  });
});
