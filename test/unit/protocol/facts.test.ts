import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { factHeaderNames, readFacts } from '../../../src/protocol/facts.ts';

const names = { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port' };
const raw = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });

describe('readFacts', () => {
  it('reads raw_value, falling back to value', () => {
    const facts = readFacts([raw(':authority', 'h.example'), { key: 'e2b-sandbox-id', value: 'abc' }, raw('x-request-id', 'r1')], names);
    expect(facts).toEqual({ authority: 'h.example', sandboxId: 'abc', sandboxPort: undefined, accessToken: undefined, requestId: 'r1' });
  });

  it('joins a repeated routing header so it fails validation instead of picking one', () => {
    expect(readFacts([raw('e2b-sandbox-id', 'a'), raw('e2b-sandbox-id', 'b')], names).sandboxId).toBe('a,b');
  });

  it('keeps the first authority', () => {
    expect(readFacts([raw(':authority', 'first'), raw('host', 'second')], names).authority).toBe('first');
  });

  it('reads configured header names', () => {
    expect(readFacts([raw('x-sbx', 'id1'), raw('x-port', '80')], { sandboxIdHeader: 'x-sbx', sandboxPortHeader: 'x-port' })).toMatchObject({
      sandboxId: 'id1',
      sandboxPort: '80',
    });
  });

  it('handles a missing header list and non-UTF-8 bytes', () => {
    expect(readFacts(undefined, names).sandboxId).toBeUndefined();
    const facts = readFacts([{ key: 'e2b-sandbox-id', raw_value: Buffer.from([0xff, 0xfe, 0x41]) }], names);
    expect(facts.sandboxId).toContain('A');
  });
});

describe("readFacts: agent-sandbox's headers", () => {
  const both = { ...names, agentSandbox: true };
  const headers = [
    raw('x-sandbox-id', 'box'),
    raw('x-sandbox-namespace', 'team'),
    raw('x-sandbox-port', '8080'),
    raw('x-sandbox-pod-ip', '10.9.9.9'),
    raw('x-sandbox-uid', 'u-1'),
  ];

  it('reads x-sandbox-id, -namespace and -port when that convention is on; the pod IP only to check it, never the UID', () => {
    const facts = readFacts(headers, both);
    expect(facts).toMatchObject({ agentSandboxId: 'box', agentSandboxNamespace: 'team', agentSandboxPort: '8080' });
    // x-sandbox-pod-ip is kept apart, for its router's check only (identify): nothing routes on it.
    const { agentSandboxPodIP, ...rest } = facts;
    expect(agentSandboxPodIP).toBe('10.9.9.9');
    expect(JSON.stringify(rest)).not.toContain('10.9.9.9');
    expect(JSON.stringify(facts)).not.toContain('u-1');
  });

  it('reads Authorization under that convention only (its router consumes it)', () => {
    const withAuth = [...headers, raw('authorization', 'Bearer abc')];
    expect(readFacts(withAuth, both).authorization).toBe('Bearer abc');
    expect(readFacts(withAuth, names).authorization).toBeUndefined();
  });

  it('reads none of them when the convention is off', () => {
    expect(readFacts(headers, names)).toMatchObject({
      agentSandboxId: undefined,
      agentSandboxNamespace: undefined,
      agentSandboxPort: undefined,
    });
  });

  it('joins repeated ones, so they fail validation', () => {
    expect(readFacts([raw('x-sandbox-namespace', 'a'), raw('x-sandbox-namespace', 'b')], both).agentSandboxNamespace).toBe('a,b');
  });
});

// The same E2B facts whichever scan runs (the agent-sandbox one reads three headers more).
describe.each([
  ['E2B only', { ...names, trafficTokenHeader: 'x-traffic-token' }],
  ['with agent-sandbox', { ...names, trafficTokenHeader: 'x-traffic-token', agentSandbox: true }],
])('readFacts (%s): the E2B facts', (_scan, scanNames) => {
  it('reads every fact from its header, and nothing from others', () => {
    const facts = readFacts(
      [
        raw('host', 'h.example'),
        raw('e2b-sandbox-id', 'abc'),
        raw('e2b-sandbox-port', '8080'),
        raw('x-access-token', 'tok'),
        raw('x-other', 'noise'),
        raw('x-request-id', 'r1'),
        raw(':path', '/kruise/abc/80/x'),
        raw('x-traffic-token', 'jwt'),
      ],
      scanNames,
    );
    expect(facts).toMatchObject({
      authority: 'h.example',
      sandboxId: 'abc',
      sandboxPort: '8080',
      accessToken: 'tok',
      requestId: 'r1',
      path: '/kruise/abc/80/x',
      trafficToken: 'jwt',
    });
  });

  it('keeps the first authority and the first request ID, and joins repeated routing headers and tokens', () => {
    const facts = readFacts(
      [
        raw(':authority', 'first'),
        raw('host', 'second'),
        raw('x-request-id', 'r1'),
        raw('x-request-id', 'r2'),
        raw('e2b-sandbox-port', '1'),
        raw('e2b-sandbox-port', '2'),
        raw('x-access-token', 'a'),
        raw('x-access-token', 'b'),
        raw(':path', '/first'),
        raw(':path', '/second'),
        raw('x-traffic-token', 'j1'),
        raw('x-traffic-token', 'j2'),
      ],
      scanNames,
    );
    expect(facts).toMatchObject({
      authority: 'first',
      requestId: 'r1',
      sandboxPort: '1,2',
      accessToken: 'a,b',
      path: '/first',
      trafficToken: 'j1,j2',
    });
  });

  it('falls back to value when raw_value is empty, and reads a header with neither as empty', () => {
    expect(readFacts([{ key: 'e2b-sandbox-id', raw_value: Buffer.alloc(0), value: 'legacy' }], scanNames).sandboxId).toBe('legacy');
    expect(readFacts([{ key: 'e2b-sandbox-id' }], scanNames).sandboxId).toBe('');
    expect(readFacts([{ key: ':authority', value: 'v.example' }], scanNames).authority).toBe('v.example');
    expect(readFacts([{ key: ':path', raw_value: Buffer.alloc(0), value: '/legacy' }], scanNames).path).toBe('/legacy');
    expect(readFacts([{ key: ':path' }], scanNames).path).toBe('');
  });
});

describe('factHeaderNames: the headers the request path keeps', () => {
  const known = [':authority', 'host', ':path', 'e2b-sandbox-id', 'e2b-sandbox-port', 'x-access-token', 'x-request-id', 'x-traffic'];
  const agent = ['x-sandbox-id', 'x-sandbox-namespace', 'x-sandbox-port', 'x-sandbox-pod-ip', 'x-sandbox-uid', 'authorization'];
  const header = fc.record({
    key: fc.oneof(fc.constantFrom(...known, ...agent, 'user-agent', 'accept'), fc.string({ maxLength: 8 })),
    raw_value: fc.string({ maxLength: 8 }).map((v) => Buffer.from(v)),
  });
  const nameSets = fc.record({
    sandboxIdHeader: fc.constantFrom('e2b-sandbox-id', 'x-sbx'),
    sandboxPortHeader: fc.constantFrom('e2b-sandbox-port', 'x-port'),
    agentSandbox: fc.boolean(),
    trafficTokenHeader: fc.option(fc.constant('x-traffic'), { nil: undefined }),
  });

  it('gives readFacts the same facts from only those headers as from all of them', () => {
    fc.assert(
      fc.property(fc.array(header, { maxLength: 16 }), nameSets, (headers, n) => {
        const { trafficTokenHeader, ...rest } = n;
        const names = trafficTokenHeader === undefined ? rest : { ...rest, trafficTokenHeader };
        const kept = new Set(factHeaderNames(names));
        expect(
          readFacts(
            headers.filter((h) => kept.has(h.key)),
            names,
          ),
        ).toEqual(readFacts(headers, names));
      }),
      { numRuns: 2000 },
    );
  });

  it('names no header readFacts does not read', () => {
    const names = { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port' };
    expect(factHeaderNames(names)).not.toContain('x-sandbox-id');
    expect(factHeaderNames({ ...names, agentSandbox: true })).toContain('authorization');
    expect(factHeaderNames({ ...names, agentSandbox: true })).not.toContain('x-sandbox-uid');
  });
});
