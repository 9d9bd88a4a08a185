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
