// The gRPC message reader: any split of any messages into chunks gives back the same messages, in
// order; a message inside one chunk is handed on without a copy; one spread over chunks is charged to
// the budget until complete, and given back however the call ends. And grpc-timeout's range.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../../src/server/byte-budget.ts';
import { MAX_TIMER_MS, MessageReader, parseGrpcTimeout, Status } from '../../../src/server/grpc-wire.ts';
import { grpcMessage } from '../../support/h2-frames.ts';

/** Splits `bytes` at the given cut points (sorted, deduplicated, within range). */
const split = (bytes: Buffer, cuts: number[]) => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  return chunks;
};

describe('MessageReader', () => {
  it('gives back the messages, in order, however the bytes are split into chunks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (messages, cuts) => {
          const budget = new ByteBudget(1 << 20);
          const reader = new MessageReader(1024, budget);
          const got: Buffer[] = [];
          const bytes = Buffer.concat(messages.map((m) => grpcMessage(Buffer.from(m))));
          for (const chunk of split(bytes, cuts)) expect(reader.push(chunk, (m) => got.push(Buffer.from(m)))).toBeUndefined();
          expect(got.map((m) => [...m])).toEqual(messages.map((m) => [...m]));
          expect(reader.incomplete).toBe(false);
          expect(budget.used).toBe(0);
        },
      ),
    );
  });

  it('hands on a message inside one chunk as a view of that chunk (no copy)', () => {
    const chunk = Buffer.concat([grpcMessage(Buffer.from('one')), grpcMessage(Buffer.from('two'))]);
    const got: Buffer[] = [];
    new MessageReader(1024).push(chunk, (m) => got.push(m));
    expect(got.map((m) => m.buffer === chunk.buffer)).toEqual([true, true]);
  });

  it('charges a message spread over chunks at its announced size until it is complete, and gives it back when the call ends', () => {
    const budget = new ByteBudget(1 << 20);
    const reader = new MessageReader(1024, budget);
    const bytes = grpcMessage(Buffer.alloc(1000, 7));
    reader.push(bytes.subarray(0, 10), () => undefined);
    expect(budget.used).toBe(1000);
    expect(reader.incomplete).toBe(true);
    reader.dispose();
    expect(budget.used).toBe(0);
  });

  it('refuses a message above the limit (RESOURCE_EXHAUSTED), a set compressed flag (INTERNAL), and one the budget cannot hold (RESOURCE_EXHAUSTED)', () => {
    expect(new MessageReader(10).push(grpcMessage(Buffer.alloc(11)), () => undefined)?.code).toBe(Status.RESOURCE_EXHAUSTED);
    expect(new MessageReader(10).push(grpcMessage(Buffer.alloc(1), 1), () => undefined)?.code).toBe(Status.INTERNAL);
    const full = new ByteBudget(100);
    expect(new MessageReader(1000, full).push(grpcMessage(Buffer.alloc(500)).subarray(0, 20), () => undefined)?.code).toBe(
      Status.RESOURCE_EXHAUSTED,
    );
    expect(full.used).toBe(0);
  });
});

describe('ByteBudget', () => {
  it('takes from a connection only what the server also has room for', () => {
    const server = new ByteBudget(100);
    const a = new ByteBudget(80, server);
    const b = new ByteBudget(80, server);
    expect(a.reserve(60)).toBe(true);
    expect(b.reserve(60)).toBe(false);
    expect(b.used).toBe(0);
    expect(b.reserve(40)).toBe(true);
    a.release(60);
    expect(server.used).toBe(40);
  });
});

describe('parseGrpcTimeout', () => {
  it('reads the units, and treats a deadline past what a timer can hold as none (no TimeoutOverflowWarning)', () => {
    expect(parseGrpcTimeout('300m')).toBe(300);
    expect(parseGrpcTimeout('5S')).toBe(5000);
    expect(parseGrpcTimeout('2H')).toBe(7_200_000);
    expect(parseGrpcTimeout('596H')).toBeLessThanOrEqual(MAX_TIMER_MS);
    expect(parseGrpcTimeout('597H')).toBeUndefined();
    expect(parseGrpcTimeout('99999999H')).toBeUndefined();
    expect(parseGrpcTimeout('1x')).toBeUndefined();
  });
});
