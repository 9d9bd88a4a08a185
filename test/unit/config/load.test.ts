import { describe, expect, it } from 'vitest';
import { ConfigError, conventionsOf, loadConfig, helpText } from '../../../src/config/load.ts';
import { SETTINGS } from '../../../src/config/settings.ts';

const config = (argv: string[] = [], env: Record<string, string> = {}) => {
  const result = loadConfig(argv, env);
  if (result.kind !== 'config') throw new Error('expected a config');
  return result.config;
};

describe('loadConfig', () => {
  it('has a valid default for every setting', () => {
    const c = config();
    expect(c.grpcPort).toBe(9002);
    expect(c.defaultPort).toBe(49983);
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
