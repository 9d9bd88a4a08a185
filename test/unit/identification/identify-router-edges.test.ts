// agent-sandbox identification's exact answers: the reasons and IDs a refusal carries, the empty
// x-sandbox-id and x-sandbox-pod-ip headers, and the router path form's segment edges and escapes.
import { describe, expect, it } from 'vitest';
import { identify, type IdentityFacts } from '../../../src/identification/identify.ts';

const options = {
  domains: [],
  defaultPort: 49983,
  conventions: ['agent-sandbox' as const],
  agentSandbox: { defaultNamespace: 'default', defaultPort: 8888, namespaces: ['*'], pathPrefix: '/router' },
};
const run = (given: Partial<IdentityFacts>) =>
  identify({ authority: undefined, sandboxId: undefined, sandboxPort: undefined, ...given }, options);

describe('agent-sandbox header refusals', () => {
  it('refuses an empty x-sandbox-id as missing, with the router text', () => {
    expect(run({ agentSandboxId: '' })).toStrictEqual({
      kind: 'malformed',
      code: 'missing_sandbox',
      reason: 'x-sandbox-id is empty',
      detail: 'X-Sandbox-ID header is required.',
    });
  });

  it('refuses a special x-sandbox-pod-ip naming it and the sandbox, and ignores an empty one', () => {
    expect(run({ agentSandboxId: 'box', agentSandboxPodIP: '127.0.0.1' })).toStrictEqual({
      kind: 'malformed',
      code: 'invalid_pod_ip',
      reason: 'x-sandbox-pod-ip "127.0.0.1" is a loopback address',
      sandboxId: 'default/box',
      detail: 'Invalid target IP address.',
    });
    expect(run({ agentSandboxId: 'box', agentSandboxPodIP: '' })).toStrictEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
    expect(run({ agentSandboxId: 'box', agentSandboxPodIP: '10.1.2.3' })).toMatchObject({ kind: 'named' });
  });
});

describe('the router path form, exactly', () => {
  it('gives the reason for a path of the wrong form', () => {
    for (const path of ['/router/team', '/router/team/', '/router/a/b', '/router?x']) {
      expect(run({ path })).toStrictEqual({
        kind: 'malformed',
        code: 'invalid_path',
        reason: `path ${JSON.stringify(path)} is not /router/<namespace>/<name>/<port>/<rest>`,
        detail: 'Path-routed request must have the form <prefix>/<namespace>/<id>/<port>/...',
      });
    }
  });

  it('gives the reason for a bad escape, in any segment', () => {
    for (const path of ['/router/team/box/80%G0/', '/router/team/box/80%0', '/router/te%4/box/80/', '/router/team/b%x1/80/']) {
      expect(run({ path })).toStrictEqual({
        kind: 'malformed',
        code: 'invalid_path',
        reason: `path ${JSON.stringify(path)} has a malformed percent-encoding`,
        detail: 'Invalid percent-encoding in path.',
      });
    }
  });

  it('names the sandbox of a bad port', () => {
    expect(run({ path: '/router/team/box/0/x' })).toStrictEqual({
      kind: 'malformed',
      code: 'invalid_sandbox_port',
      reason: 'sandbox port "0" is not a number from 1 to 65535',
      sandboxId: 'team/box',
      detail: 'Invalid port format.',
    });
  });

  it('reads the port segment to the end of the path, or to the next slash', () => {
    expect(run({ path: '/router/team/box/8080' })).toStrictEqual({
      kind: 'named',
      sandboxId: 'team/box',
      port: 8080,
      path: '/',
      agentSandbox: true,
    });
    expect(run({ path: '/router/team/box/81/a/b' })).toMatchObject({ port: 81, path: '/a/b' });
    expect(run({ path: '/router/team/box/%38%31' })).toMatchObject({ port: 81, path: '/' });
  });
});
