import { describe, expect, it } from 'vitest';
import { readFacts } from '../../../src/protocol/facts.ts';

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
