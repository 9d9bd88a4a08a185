import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  describe as quote,
  identify,
  isValidSandboxId,
  parsePort,
  type AgentSandboxIdentifyOptions,
  type IdentityFacts,
} from '../../../src/identification/identify.ts';
import { parseCidr, UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';

const anyDomain = { domains: [], defaultPort: 49983 };
const e2b = { domains: ['sandbox.example.com'], defaultPort: 49983 };
const agentDefaults = { defaultNamespace: 'default', defaultPort: 8888, namespaces: [] as string[] };
const facts = (f: Partial<IdentityFacts>): IdentityFacts => ({ authority: undefined, sandboxId: undefined, sandboxPort: undefined, ...f });

describe('identification by headers', () => {
  it('takes the ID and port from the headers', () => {
    expect(identify(facts({ sandboxId: 'sbx-1', sandboxPort: '8080' }), e2b)).toEqual({ kind: 'named', sandboxId: 'sbx-1', port: 8080 });
  });

  it('uses the default port when the port header is absent or empty', () => {
    expect(identify(facts({ sandboxId: 'sbx-1' }), e2b)).toEqual({ kind: 'named', sandboxId: 'sbx-1', port: 49983 });
    expect(identify(facts({ sandboxId: 'sbx-1', sandboxPort: '' }), e2b)).toEqual({ kind: 'named', sandboxId: 'sbx-1', port: 49983 });
  });

  it('prefers the headers over the host', () => {
    expect(identify(facts({ sandboxId: 'from-header', authority: '80-from-host.sandbox.example.com' }), e2b)).toMatchObject({
      sandboxId: 'from-header',
    });
  });

  it.each(['', 'a/b', '../etc', 'a..b', '-lead', 'trail-', 'sp ace', 'a'.repeat(319), 'x\u0000y', 'a,b'])(
    'rejects the malformed ID %j',
    (id) => {
      const result = identify(facts({ sandboxId: id }), e2b);
      expect(result).toMatchObject({ kind: 'malformed', code: 'invalid_sandbox_id' });
    },
  );

  it.each(['0', '65536', '-1', '+80', '80a', '1e3', ' 80', '999999', '080', '00080', '0x50'])('rejects the malformed port %j', (port) => {
    expect(identify(facts({ sandboxId: 'ok', sandboxPort: port }), e2b)).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_port',
      sandboxId: 'ok',
    });
  });

  // The case rule of each form (README, "Which sandbox a request names"): a header ID is the ID, case
  // included; only the host form folds case (hosts are case-insensitive).
  it('matches a header ID exactly, capitals included: an OpenKruise sandbox-id label may hold them', () => {
    for (const id of ['AbC', 'SBX-1', 'Team--Box', 'mixed.Case_ID-9']) {
      expect(identify(facts({ sandboxId: id, sandboxPort: '3000' }), e2b)).toEqual({ kind: 'named', sandboxId: id, port: 3000 });
      expect(identify(facts({ sandboxId: id }), anyDomain)).toEqual({ kind: 'named', sandboxId: id, port: 49983 });
    }
    expect(
      identify(facts({ sandboxId: 'AbC' }), { ...anyDomain, conventions: ['agent-sandbox', 'e2b'], agentSandbox: agentDefaults }),
    ).toEqual({ kind: 'named', sandboxId: 'AbC', port: 49983 });
  });

  it('bounds a huge value in the reason', () => {
    const result = identify(facts({ sandboxId: 'x/'.repeat(10_000) }), e2b);
    expect(result.kind === 'malformed' && result.reason.length).toBeLessThan(200);
  });
});

describe('identification by host', () => {
  it('reads <port>-<id>.<domain>', () => {
    expect(identify(facts({ authority: '3000-sbx-1.sandbox.example.com' }), e2b)).toEqual({
      kind: 'named',
      sandboxId: 'sbx-1',
      port: 3000,
    });
  });

  it('accepts a <namespace>--<name> ID and ignores the authority port and case of the domain', () => {
    expect(identify(facts({ authority: '3000-team--box.Sandbox.Example.COM:8443' }), e2b)).toEqual({
      kind: 'named',
      sandboxId: 'team--box',
      port: 3000,
    });
  });

  it('names no sandbox for a host outside the configured domains', () => {
    expect(identify(facts({ authority: '3000-sbx-1.other.org' }), e2b)).toEqual({ kind: 'none' });
  });

  it('answers a host under a configured domain that is not <port>-<id> as malformed', () => {
    expect(identify(facts({ authority: 'www.sandbox.example.com' }), e2b)).toMatchObject({ kind: 'malformed', code: 'invalid_host' });
  });

  it('with no domains configured, takes any <port>-<id> first label and ignores other hosts', () => {
    expect(identify(facts({ authority: '8080-abc.anything.test' }), anyDomain)).toMatchObject({
      kind: 'named',
      sandboxId: 'abc',
      port: 8080,
    });
    expect(identify(facts({ authority: 'api.example.org' }), anyDomain)).toEqual({ kind: 'none' });
    expect(identify(facts({ authority: 'localhost:8080' }), anyDomain)).toEqual({ kind: 'none' });
  });

  it('rejects an out-of-range port in the host', () => {
    expect(identify(facts({ authority: '70000-abc.sandbox.example.com' }), e2b)).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_port',
    });
  });

  it('rejects an ID with bad characters in the host', () => {
    expect(identify(facts({ authority: '80-a_b-.sandbox.example.com' }), e2b)).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_id',
    });
  });

  it('names no sandbox for an IPv6 literal host', () => {
    expect(identify(facts({ authority: '[::1]:8080' }), anyDomain)).toEqual({ kind: 'none' });
  });

  it('names no sandbox when there is neither header nor host', () => {
    expect(identify(facts({}), e2b)).toEqual({ kind: 'none' });
  });
});

describe('validators', () => {
  it('parsePort accepts 1..65535 only', () => {
    expect(parsePort('1')).toBe(1);
    expect(parsePort('65535')).toBe(65535);
    expect(parsePort('0')).toBeUndefined();
    expect(parsePort('65536')).toBeUndefined();
  });

  it('isValidSandboxId accepts label values and <namespace>--<name>', () => {
    expect(isValidSandboxId('A1_b.c-d')).toBe(true);
    expect(isValidSandboxId(`${'n'.repeat(63)}--${'m'.repeat(253)}`)).toBe(true);
  });
});

// Host form edge cases (issue #12): each decided and documented in the README.
describe('host form edge cases', () => {
  it('reads an absolute FQDN (trailing dot) as the same host', () => {
    expect(identify(facts({ authority: '3000-sbx-1.sandbox.example.com.' }), e2b)).toEqual({
      kind: 'named',
      sandboxId: 'sbx-1',
      port: 3000,
    });
    expect(identify(facts({ authority: '3000-sbx-1.sandbox.example.com.:443' }), e2b)).toMatchObject({ sandboxId: 'sbx-1' });
  });

  it('folds only ASCII case: a KELVIN SIGN (U+212A) never becomes the k of another sandbox', () => {
    expect(identify(facts({ authority: '3000-\u212Aey.sandbox.example.com' }), e2b)).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_id',
    });
    expect(identify(facts({ authority: '3000-key.sandbox.example.co\u212A' }), { ...e2b, domains: ['sandbox.example.cok'] })).toEqual({
      kind: 'none',
    });
    expect(identify(facts({ authority: '3000-KEY.SANDBOX.EXAMPLE.COM' }), e2b)).toMatchObject({ sandboxId: 'key' });
  });

  it('folds a host ID to lower case, so an ID with capitals is named only by header', () => {
    expect(identify(facts({ authority: '3000-AbC.sandbox.example.com' }), e2b)).toEqual({ kind: 'named', sandboxId: 'abc', port: 3000 });
    expect(identify(facts({ authority: '3000-AbC.Any.Domain' }), anyDomain)).toEqual({ kind: 'named', sandboxId: 'abc', port: 3000 });
  });

  it('refuses a leading-zero port in the host', () => {
    expect(identify(facts({ authority: '03000-sbx.sandbox.example.com' }), e2b)).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_port',
    });
  });

  it('takes the ID from the first label only: an ID containing a dot can be named by header, not by host', () => {
    expect(identify(facts({ sandboxId: 'my.box' }), e2b)).toMatchObject({ kind: 'named', sandboxId: 'my.box' });
    // Under a configured domain, the rest must be exactly that domain: "box.sandbox.example.com" is not.
    expect(identify(facts({ authority: '3000-my.box.sandbox.example.com' }), e2b)).toEqual({ kind: 'none' });
    // With any domain accepted, the first label names the sandbox "my".
    expect(identify(facts({ authority: '3000-my.box.example.com' }), anyDomain)).toMatchObject({ sandboxId: 'my' });
  });
});

describe('hostile input (property-based)', () => {
  const options = fc.constantFrom(anyDomain, e2b);
  const text = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.string({ maxLength: 5000 }),
    fc.constant('../..'),
    fc.constant('80-a.sandbox.example.com'),
  );

  it('never throws and always returns a defined answer', () => {
    fc.assert(
      fc.property(fc.option(text), fc.option(text), fc.option(text), options, (authority, id, port, opts) => {
        const result = identify({ authority: authority ?? undefined, sandboxId: id ?? undefined, sandboxPort: port ?? undefined }, opts);
        expect(['named', 'none', 'malformed']).toContain(result.kind);
        if (result.kind === 'named') {
          expect(isValidSandboxId(result.sandboxId)).toBe(true);
          expect(result.port).toBeGreaterThanOrEqual(1);
          expect(result.port).toBeLessThanOrEqual(65535);
          expect(result.sandboxId).not.toMatch(/[/\s]/);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe("identification by agent-sandbox's headers", () => {
  const agent: AgentSandboxIdentifyOptions = { defaultNamespace: 'default', defaultPort: 8888, namespaces: [] };
  const both = (over: Partial<typeof agent> = {}, conventions: ('e2b' | 'agent-sandbox')[] = ['agent-sandbox', 'e2b']) => ({
    ...anyDomain,
    conventions,
    agentSandbox: { ...agent, ...over },
  });

  it('names <namespace>/<name>, with the default namespace and port 8888 when none is sent', () => {
    expect(identify(facts({ agentSandboxId: 'box' }), both())).toEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
    expect(
      identify(facts({ agentSandboxId: 'box', agentSandboxNamespace: 'team', agentSandboxPort: '3000' }), both({ namespaces: ['team'] })),
    ).toEqual({
      kind: 'named',
      sandboxId: 'team/box',
      port: 3000,
      agentSandbox: true,
    });
  });

  it.each(['Box', 'a.b', 'a/b', '-x', 'x-', 'a'.repeat(64), 'x,y', '..'])(
    'refuses the malformed name %j (a DNS-1123 label), in its router words',
    (name) => {
      expect(identify(facts({ agentSandboxId: name }), both())).toMatchObject({
        kind: 'malformed',
        code: 'invalid_sandbox_id',
        detail: 'Invalid sandbox ID format.',
      });
    },
  );

  it('takes an empty x-sandbox-id for none sent, as its router does (X-Sandbox-ID header is required.)', () => {
    expect(identify(facts({ agentSandboxId: '' }), both())).toMatchObject({
      kind: 'malformed',
      code: 'missing_sandbox',
      detail: 'X-Sandbox-ID header is required.',
    });
  });

  it('lets a loopback x-sandbox-pod-ip through where --upstream-cidrs opts loopback in (their --allow-loopback-pod-ip)', () => {
    const optedIn = new UpstreamAddressPolicy([parseCidr('127.0.0.0/8')]);
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxPodIP: '127.1.0.9' }), both({ podIPs: optedIn }))).toMatchObject({
      kind: 'named',
    });
    // Only what is opted in: the allow-list itself is not a rule for this header.
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxPodIP: '169.254.1.1' }), both({ podIPs: optedIn }))).toMatchObject({
      code: 'invalid_pod_ip',
    });
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxPodIP: '10.9.9.9' }), both({ podIPs: optedIn }))).toMatchObject({
      kind: 'named',
    });
  });

  it.each(['10.0.0.1', '2001:db8::1', '::ffff:10.1.2.3'])('lets a valid x-sandbox-pod-ip %j through (never used to route)', (ip) => {
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxPodIP: ip }), both())).toEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
  });

  it.each(['169.254.169.254', '127.0.0.1', '::1', '0.0.0.0', '224.0.0.1', 'fe80::1', 'fe80::1%eth0', 'nope', '10.0.0.1,10.0.0.2'])(
    'refuses the x-sandbox-pod-ip %j its router refuses (Invalid target IP address.)',
    (ip) => {
      expect(identify(facts({ agentSandboxId: 'box', agentSandboxPodIP: ip }), both())).toMatchObject({
        kind: 'malformed',
        code: 'invalid_pod_ip',
        detail: 'Invalid target IP address.',
      });
    },
  );

  it('refuses capitals in the name and namespace, never folds them: DNS-1123 labels are lower case', () => {
    expect(identify(facts({ agentSandboxId: 'Box' }), both())).toMatchObject({ kind: 'malformed', code: 'invalid_sandbox_id' });
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxNamespace: 'Default' }), both({ namespaces: ['*'] }))).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_namespace',
    });
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxNamespace: 'default' }), both())).toEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
  });

  it.each(['Team', 'a.b', 'a/b', 'x,y', 'a'.repeat(64)])('refuses the malformed namespace %j', (namespace) => {
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxNamespace: namespace }), both({ namespaces: ['*'] }))).toMatchObject({
      kind: 'malformed',
      code: 'invalid_sandbox_namespace',
    });
  });

  it('refuses a namespace it may not name, before any lookup: only the default one unless allowed', () => {
    const other = facts({ agentSandboxId: 'box', agentSandboxNamespace: 'team-b' });
    expect(identify(other, both())).toMatchObject({ kind: 'malformed', code: 'namespace_not_allowed' });
    expect(identify(other, both({ namespaces: ['team-a'] }))).toMatchObject({ code: 'namespace_not_allowed' });
    expect(identify(other, both({ namespaces: ['team-a', 'team-b'] }))).toMatchObject({ kind: 'named', sandboxId: 'team-b/box' });
    expect(identify(other, both({ namespaces: ['*'] }))).toMatchObject({ kind: 'named', sandboxId: 'team-b/box' });
    // With a list, the default namespace is allowed only when listed.
    expect(identify(facts({ agentSandboxId: 'box' }), both({ namespaces: ['team-a'] }))).toMatchObject({ code: 'namespace_not_allowed' });
  });

  it.each(['0', '65536', '+80', '080', 'x'])('refuses the malformed port %j', (port) => {
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxPort: port }), both())).toMatchObject({ code: 'invalid_sandbox_port' });
  });

  it('with both conventions, takes the first in the configured order whose ID header the request carries; the E2B host form last', () => {
    const request = facts({ sandboxId: 'e2b-id', agentSandboxId: 'box', authority: '80-host-id.example.com' });
    expect(identify(request, both({}, ['agent-sandbox', 'e2b']))).toMatchObject({ sandboxId: 'default/box' });
    expect(identify(request, both({}, ['e2b', 'agent-sandbox']))).toMatchObject({ sandboxId: 'e2b-id' });
    // No E2B header: the agent-sandbox headers win over the host, whatever the order.
    expect(
      identify(facts({ agentSandboxId: 'box', authority: '80-host-id.example.com' }), both({}, ['e2b', 'agent-sandbox'])),
    ).toMatchObject({
      sandboxId: 'default/box',
    });
    expect(identify(facts({ authority: '80-host-id.example.com' }), both())).toMatchObject({ sandboxId: 'host-id' });
  });

  it('ignores a convention that is off', () => {
    expect(identify(facts({ agentSandboxId: 'box' }), anyDomain)).toEqual({ kind: 'none' });
    expect(identify(facts({ sandboxId: 'e2b-id', authority: '80-host-id.example.com' }), both({}, ['agent-sandbox']))).toEqual({
      kind: 'none',
    });
  });

  it('never names an ID an E2B request could name, and never throws (property-based)', () => {
    const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constant('default'), fc.constant('box'));
    fc.assert(
      fc.property(fc.option(text), fc.option(text), fc.option(text), (id, ns, port) => {
        const result = identify(
          facts({ agentSandboxId: id ?? undefined, agentSandboxNamespace: ns ?? undefined, agentSandboxPort: port ?? undefined }),
          both({ namespaces: ['*'] }, ['agent-sandbox']),
        );
        expect(['named', 'none', 'malformed']).toContain(result.kind);
        if (result.kind === 'named') {
          expect(result.sandboxId).toMatch(/^[a-z0-9-]+\/[a-z0-9-]+$/);
          expect(isValidSandboxId(result.sandboxId)).toBe(false);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

// Every malformed request gets a reason naming what was wrong, quoting the client's value (bounded).
describe('the reasons given for malformed requests', () => {
  const agent = { ...anyDomain, conventions: ['agent-sandbox' as const], agentSandbox: { ...agentDefaults, namespaces: ['*'] } };

  it.each([
    [facts({ sandboxId: 'a/b' }), e2b, { code: 'invalid_sandbox_id', reason: 'sandbox ID "a/b" is not a valid ID' }],
    [
      facts({ sandboxId: 'ok', sandboxPort: '0' }),
      e2b,
      { code: 'invalid_sandbox_port', reason: 'sandbox port "0" is not a number from 1 to 65535', sandboxId: 'ok' },
    ],
    [
      facts({ authority: 'www.sandbox.example.com' }),
      e2b,
      { code: 'invalid_host', reason: 'host "www.sandbox.example.com" is not <port>-<sandboxID>.sandbox.example.com' },
    ],
    [
      facts({ authority: '0-abc.sandbox.example.com' }),
      e2b,
      { code: 'invalid_sandbox_port', reason: 'host port "0" is not a number from 1 to 65535' },
    ],
    [
      facts({ authority: '80-a_.sandbox.example.com' }),
      e2b,
      { code: 'invalid_sandbox_id', reason: 'host sandbox ID "a_" is not a valid ID' },
    ],
    [
      facts({ agentSandboxId: 'Box' }),
      agent,
      { code: 'invalid_sandbox_id', reason: 'sandbox name "Box" is not a DNS-1123 label', detail: 'Invalid sandbox ID format.' },
    ],
    [
      facts({ agentSandboxId: 'box', agentSandboxNamespace: 'a.b' }),
      agent,
      { code: 'invalid_sandbox_namespace', reason: 'sandbox namespace "a.b" is not a DNS-1123 label', detail: 'Invalid namespace format.' },
    ],
    [
      facts({ agentSandboxId: 'box', agentSandboxNamespace: 'team' }),
      { ...agent, agentSandbox: agentDefaults },
      { code: 'namespace_not_allowed', reason: 'requests may not name sandboxes in namespace "team"' },
    ],
    [
      facts({ agentSandboxId: 'box', agentSandboxNamespace: 'team', agentSandboxPort: '080' }),
      agent,
      {
        code: 'invalid_sandbox_port',
        reason: 'sandbox port "080" is not a number from 1 to 65535',
        sandboxId: 'team/box',
        detail: 'Invalid port format.',
      },
    ],
  ])('%#: %j', (request, options, expected) => {
    expect(identify(request, options)).toStrictEqual({ kind: 'malformed', ...expected });
  });

  it('quotes at most 64 characters of a value, marking the cut', () => {
    expect(quote('x'.repeat(64))).toBe(JSON.stringify('x'.repeat(64)));
    expect(quote('y'.repeat(65))).toBe(JSON.stringify(`${'y'.repeat(64)}...`));
  });
});

describe('agent-sandbox headers sent empty', () => {
  const agent = { ...anyDomain, conventions: ['agent-sandbox' as const], agentSandbox: agentDefaults };

  it('reads an empty namespace or port header as absent: the default namespace and port', () => {
    expect(identify(facts({ agentSandboxId: 'box', agentSandboxNamespace: '', agentSandboxPort: '' }), agent)).toEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
  });
});

describe('the host label, matched whole', () => {
  it('refuses a first label that only contains <port>-<id> after other characters, or before a line break', () => {
    for (const host of ['x3000-sbx.sandbox.example.com', '3000-sbx\nevil.sandbox.example.com']) {
      expect(identify(facts({ authority: host }), e2b)).toMatchObject({ kind: 'malformed', code: 'invalid_host' });
    }
  });
});

describe('short names and empty labels', () => {
  it('accepts one-character agent-sandbox names and namespaces (DNS-1123 allows them)', () => {
    expect(
      identify(facts({ agentSandboxId: 'a', agentSandboxNamespace: 'x' }), {
        ...anyDomain,
        conventions: ['agent-sandbox'],
        agentSandbox: { ...agentDefaults, namespaces: ['x'] },
      }),
    ).toEqual({ kind: 'named', sandboxId: 'x/a', port: 8888, agentSandbox: true });
  });

  it('names no sandbox for a host whose first label is empty', () => {
    expect(identify(facts({ authority: '.sandbox.example.com' }), e2b)).toEqual({ kind: 'none' });
    expect(identify(facts({ authority: '.sandbox.example.com' }), anyDomain)).toEqual({ kind: 'none' });
  });
});

describe("agent-sandbox's router path form <prefix>/<namespace>/<name>/<port>/<rest>", () => {
  const options = (prefix = '/router', namespaces: string[] = ['*'], conventions: ('e2b' | 'agent-sandbox')[] = ['agent-sandbox']) => ({
    ...anyDomain,
    conventions,
    kruisePath: true,
    agentSandbox: { defaultNamespace: 'default', defaultPort: 8888, namespaces, pathPrefix: prefix },
  });
  const at = (path: string, extra: Parameters<typeof facts>[0] = {}) => facts({ path, ...extra });

  it('names the sandbox and gives it the rest of the path, byte for byte, with the query', () => {
    expect(identify(at('/router/team/box/8080/a/b%2Fc/%zz?x=%2F&y'), options())).toEqual({
      kind: 'named',
      sandboxId: 'team/box',
      port: 8080,
      path: '/a/b%2Fc/%zz?x=%2F&y',
      agentSandbox: true,
    });
    expect(identify(at('/router/team/box/8080'), options())).toMatchObject({ path: '/' });
    expect(identify(at('/router/team/box/8080/'), options())).toMatchObject({ path: '/' });
    expect(identify(at('/router/team/box/8080?q=1'), options())).toMatchObject({ path: '/?q=1' });
    expect(identify(at('/router/team/box/8080//x'), options())).toMatchObject({ path: '//x' });
  });

  it('decodes the namespace, name and port segments before checking them, as its ParsePathRoute does', () => {
    expect(identify(at('/router/te%61m/b%6Fx/80%38%30/z'), options())).toMatchObject({ sandboxId: 'team/box', port: 8080, path: '/z' });
    expect(identify(at('/router/team/b%2Fx/8080/'), options())).toMatchObject({
      code: 'invalid_sandbox_id',
      detail: 'Invalid sandbox ID format.',
    });
    expect(identify(at('/router/team/box%zz/8080/'), options())).toMatchObject({
      code: 'invalid_path',
      detail: 'Invalid percent-encoding in path.',
    });
  });

  it.each([
    ['/router', 'invalid_path'],
    ['/router?x=1', 'invalid_path'],
    ['/router/', 'invalid_path'],
    ['/router/team', 'invalid_path'],
    ['/router/team/box', 'invalid_path'],
    ['/router/team/box/', 'invalid_path'],
    ['/router//box/8080/', 'invalid_path'],
    ['/router/team//8080/', 'invalid_path'],
    ['/router/Team/box/8080/', 'invalid_sandbox_namespace'],
    ['/router/team/Box/8080/', 'invalid_sandbox_id'],
    ['/router/team/box/0/', 'invalid_sandbox_port'],
    ['/router/team/box/70000/', 'invalid_sandbox_port'],
    ['/router/team/box/http/', 'invalid_sandbox_port'],
  ])('claims its whole URL space: %j is refused (%s), never routed by the headers it also carries', (path, code) => {
    expect(
      identify(at(path, { agentSandboxId: 'other', sandboxId: 'e2b-id' }), options('/router', ['*'], ['e2b', 'agent-sandbox'])),
    ).toMatchObject({
      kind: 'malformed',
      code,
    });
  });

  it('leaves paths outside the prefix (/routerish/...) to the headers', () => {
    expect(identify(at('/routerish/team/box/8080/', { agentSandboxId: 'box' }), options())).toMatchObject({ sandboxId: 'default/box' });
    expect(identify(at('/other', { agentSandboxId: 'box' }), options())).toEqual({
      kind: 'named',
      sandboxId: 'default/box',
      port: 8888,
      agentSandbox: true,
    });
  });

  it('keeps the namespace allow-list: a path cannot name a namespace the headers may not', () => {
    expect(identify(at('/router/team/box/8080/'), options('/router', []))).toMatchObject({ code: 'namespace_not_allowed' });
    expect(identify(at('/router/default/box/8080/'), options('/router', []))).toMatchObject({ sandboxId: 'default/box' });
  });

  it('works with a deeper prefix and is off when no prefix is set', () => {
    expect(identify(at('/a/b/team/box/1/x'), options('/a/b'))).toMatchObject({ sandboxId: 'team/box', port: 1, path: '/x' });
    expect(identify(at('/router/team/box/8080/'), options(''))).toEqual({ kind: 'none' });
  });

  it('never throws and never routes outside its form (property-based)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ unit: 'binary' }), (a, b) => {
        for (const path of [`/router/${a}`, `/router${b}`, `/router/${a}/${b}/80/${a}`]) {
          const result = identify(at(path), options());
          expect(['named', 'none', 'malformed']).toContain(result.kind);
          if (result.kind === 'named') {
            expect(result.sandboxId).toMatch(/^[a-z0-9-]+\/[a-z0-9-]+$/);
            expect(path.endsWith(result.path as string) || (result.path as string).startsWith('/')).toBe(true);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("OpenKruise's gateway path form /kruise/<id>/<port>/<rest>", () => {
  const kruise = { ...e2b, kruisePath: true };
  const byPath = (path: string, more: Partial<IdentityFacts> = {}) => identify(facts({ path, ...more }), kruise);

  it.each([
    ['/kruise/sbx-1/3000/api/v1?x=1&y=%2F', 3000, '/api/v1?x=1&y=%2F'],
    ['/kruise/sbx-1/3000', 3000, '/'],
    ['/kruise/sbx-1/3000/', 3000, '/'],
    ['/kruise/sbx-1/3000?q=1', 3000, '/?q=1'],
    ['/kruise/sbx-1/49983//double/slash', 49983, '//double/slash'],
    ['/kruise/sbx-1/80/a%2Fb/%C3%A9', 80, '/a%2Fb/%C3%A9'],
  ])('names the sandbox in %j and gives it the rest of the path, byte for byte', (path, port, rest) => {
    expect(byPath(path)).toEqual({ kind: 'named', sandboxId: 'sbx-1', port, path: rest });
  });

  it('wins over the ID headers and the host, as in the gateway, whose adapter is chosen by the path first', () => {
    expect(byPath('/kruise/from-path/80/x', { sandboxId: 'from-header', authority: '81-from-host.sandbox.example.com' })).toEqual({
      kind: 'named',
      sandboxId: 'from-path',
      port: 80,
      path: '/x',
    });
    // With both conventions on, within the E2B convention too.
    const both = {
      ...kruise,
      conventions: ['e2b', 'agent-sandbox'] as const,
      agentSandbox: { defaultNamespace: 'default', defaultPort: 8888, namespaces: [] },
    };
    expect(identify(facts({ path: '/kruise/from-path/80', sandboxId: 'h' }), both)).toMatchObject({ sandboxId: 'from-path' });
  });

  it.each([
    ['/kruise', 'invalid_path'],
    ['/kruise/', 'invalid_path'],
    ['/kruise?x=1', 'invalid_path'],
    ['/kruise/sbx-1', 'invalid_path'],
    ['/kruise/sbx-1/', 'invalid_path'],
    ['/kruise/sbx-1/?x', 'invalid_path'],
    ['/kruise//80/x', 'invalid_sandbox_id'],
    ['/kruise/a..b/80', 'invalid_sandbox_id'],
    ['/kruise/%73bx/80', 'invalid_sandbox_id'],
    ['/kruise/sbx?x/80', 'invalid_sandbox_id'],
    ['/kruise/sbx-1/0080/x', 'invalid_sandbox_port'],
    ['/kruise/sbx-1/+80/x', 'invalid_sandbox_port'],
    ['/kruise/sbx-1/65536', 'invalid_sandbox_port'],
    ['/kruise/sbx-1/http/x', 'invalid_sandbox_port'],
  ])('refuses the malformed %j with %s, never routing it another way', (path, code) => {
    expect(byPath(path, { sandboxId: 'fallback' })).toMatchObject({ kind: 'malformed', code });
  });

  it('leaves other paths, /kruisefoo among them, to the headers and the host', () => {
    expect(byPath('/kruisefoo/80/x', { sandboxId: 'h' })).toEqual({ kind: 'named', sandboxId: 'h', port: 49983 });
    expect(byPath('/api/kruise/sbx/80', { authority: '80-h.sandbox.example.com' })).toEqual({ kind: 'named', sandboxId: 'h', port: 80 });
  });

  it('is not read when the path form is off', () => {
    expect(identify(facts({ path: '/kruise/sbx/80/x', sandboxId: 'h' }), e2b)).toEqual({ kind: 'named', sandboxId: 'h', port: 49983 });
  });
});

describe('the case rule of the path form', () => {
  it('matches an ID in the path exactly, capitals included, as a header ID', () => {
    expect(identify(facts({ path: '/kruise/AbC/80/x' }), { ...e2b, kruisePath: true })).toEqual({
      kind: 'named',
      sandboxId: 'AbC',
      port: 80,
      path: '/x',
    });
  });
});

describe('the path form, to its edges', () => {
  const kruise = { ...e2b, kruisePath: true };
  const both = (kruisePath: boolean) => ({
    ...e2b,
    kruisePath,
    conventions: ['e2b', 'agent-sandbox'] as const,
    agentSandbox: agentDefaults,
  });

  it('is not read with both conventions on when the path form is off', () => {
    expect(identify(facts({ path: '/kruise/p/80/x', sandboxId: 'h' }), both(false))).toEqual({
      kind: 'named',
      sandboxId: 'h',
      port: 49983,
    });
    expect(identify(facts({ path: '/api', sandboxId: 'h' }), both(true))).toEqual({ kind: 'named', sandboxId: 'h', port: 49983 });
  });

  it('needs a / right after /kruise: /kruise?a/80/x names nothing', () => {
    expect(identify(facts({ path: '/kruise?a/80/x' }), kruise)).toMatchObject({ kind: 'malformed', code: 'invalid_path' });
  });

  it.each([
    ['/kruise/sbx', { code: 'invalid_path', reason: 'path "/kruise/sbx" names no sandbox ID and port' }],
    ['/kruise/sbx/', { code: 'invalid_path', reason: 'path "/kruise/sbx/" names no port', sandboxId: 'sbx' }],
    ['/kruise/a..b/80', { code: 'invalid_sandbox_id', reason: 'sandbox ID "a..b" is not a valid ID' }],
    [
      '/kruise/sbx/0080/x',
      { code: 'invalid_sandbox_port', reason: 'sandbox port "0080" is not a number from 1 to 65535', sandboxId: 'sbx' },
    ],
  ])('says why %j is refused', (path, expected) => {
    expect(identify(facts({ path }), kruise)).toStrictEqual({ kind: 'malformed', ...expected });
  });
});
