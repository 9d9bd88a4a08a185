// gRPC's wire rules at their edges (src/server/grpc-wire.ts), each case found by mutation testing
// (docs/testing.md): every grpc-timeout unit, the size limit to the byte, a prefix split anywhere, what
// the reader does after an error or once disposed, and the header values the transport checks.
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../../src/server/byte-budget.ts';
import {
  encodeGrpcMessage,
  frame,
  isAcceptedEncoding,
  isGrpcContentType,
  MAX_TIMER_MS,
  MessageReader,
  parseGrpcTimeout,
  Status,
} from '../../../src/server/grpc-wire.ts';
import { grpcMessage } from '../../support/h2-frames.ts';

// Framed by the tests' own framer, not the module's `frame`: a reader checked against the writer it
// is tested with would share its bugs.
const framed = grpcMessage;

describe('grpc-timeout', () => {
  it.each([
    ['2H', 7_200_000],
    ['3M', 180_000],
    ['5S', 5_000],
    ['250m', 250],
    ['1500u', 1.5],
    ['2500000n', 2.5],
    ['99999999m', 99_999_999],
  ])('reads %s as %d ms', (value, ms) => {
    expect(parseGrpcTimeout(value)).toBeCloseTo(ms, 9);
  });

  it.each([undefined, '', '5', 'S', '5s', '5 S', ' 5S', '5S ', 'x5S', '5Sx', '-5S', '1.5S', '123456789m'])(
    'reads %j as no timeout',
    (value) => {
      expect(parseGrpcTimeout(value)).toBeUndefined();
    },
  );

  it('caps at the longest delay a Node timer takes, 2^31 - 1 ms', () => {
    expect(MAX_TIMER_MS).toBe(2_147_483_647);
    expect(parseGrpcTimeout('35791M')).toBe(2_147_460_000);
    expect(parseGrpcTimeout('35792M')).toBeUndefined();
  });
});

describe('MessageReader, to its edges', () => {
  it('is fed what frame writes: flag 0, the length big-endian, the bytes', () => {
    const message = Buffer.alloc(0x01_02_03, 9);
    expect(frame(message)).toEqual(grpcMessage(message));
    expect(frame(Buffer.alloc(0))).toEqual(Buffer.from([0, 0, 0, 0, 0]));
  });

  it('accepts a message of exactly the limit, refuses one byte more, and says why', () => {
    const got: Buffer[] = [];
    expect(new MessageReader(10).push(framed(Buffer.alloc(10, 1)), (m) => got.push(m))).toBeUndefined();
    expect(got).toHaveLength(1);
    expect(new MessageReader(10).push(framed(Buffer.alloc(11)), () => undefined)).toEqual({
      code: Status.RESOURCE_EXHAUSTED,
      details: 'message of 11 bytes is larger than 10',
    });
    expect(new MessageReader(10).push(framed(Buffer.alloc(1), 1), () => undefined)).toEqual({
      code: Status.INTERNAL,
      details: 'compressed-flag set but no grpc-encoding was negotiated',
    });
    const full = new ByteBudget(100);
    expect(new MessageReader(1000, full).push(framed(Buffer.alloc(500)).subarray(0, 20), () => undefined)).toEqual({
      code: Status.RESOURCE_EXHAUSTED,
      details: "no room for a message of 500 bytes: this connection's or the server's buffers are full",
    });
  });

  it('reads a length of any size from a prefix fed one byte at a time', () => {
    const message = Buffer.alloc(70_000, 9);
    const reader = new MessageReader(100_000);
    const got: Buffer[] = [];
    const bytes = framed(message);
    for (let i = 0; i < 5; i += 1) expect(reader.push(bytes.subarray(i, i + 1), (m) => got.push(Buffer.from(m)))).toBeUndefined();
    expect(reader.incomplete).toBe(true);
    reader.push(bytes.subarray(5), (m) => got.push(Buffer.from(m)));
    expect(got).toEqual([message]);
    expect(reader.incomplete).toBe(false);
  });

  it('knows it holds part of a message: part of a prefix, or part of a body', () => {
    const bytes = framed(Buffer.from('hello'));
    const prefix = new MessageReader(100);
    prefix.push(bytes.subarray(0, 3), () => undefined);
    expect(prefix.incomplete).toBe(true);
    const body = new MessageReader(100);
    body.push(bytes.subarray(0, 7), () => undefined);
    expect(body.incomplete).toBe(true);
    body.push(bytes.subarray(7), () => undefined);
    expect(body.incomplete).toBe(false);
  });

  it('reads nothing more after an error, nor once disposed', () => {
    const got: Buffer[] = [];
    const failed = new MessageReader(100);
    expect(failed.push(framed(Buffer.from('x'), 1), (m) => got.push(m))).toBeDefined();
    expect(failed.push(framed(Buffer.from('y')), (m) => got.push(m))).toBeUndefined();
    const disposed = new MessageReader(100);
    disposed.dispose();
    expect(disposed.push(framed(Buffer.from('z')), (m) => got.push(m))).toBeUndefined();
    expect(got).toEqual([]);
  });

  it('gives back to the budget exactly what it took, disposed after complete messages or mid-message', () => {
    const budget = new ByteBudget(1_000);
    const reader = new MessageReader(1_000, budget);
    const bytes = framed(Buffer.alloc(300, 1));
    reader.push(bytes.subarray(0, 100), () => undefined);
    expect(budget.used).toBe(300);
    reader.push(bytes.subarray(100), () => undefined);
    expect(budget.used).toBe(0);
    reader.dispose();
    expect(budget.used).toBe(0);
  });
});

describe('grpc-message', () => {
  it.each([
    ['not found: a b', 'not found: a b'],
    ['~!@#$&()*+,-./:;<=>?[]^_`{|}', '~!@#$&()*+,-./:;<=>?[]^_`{|}'],
    ['100%', '100%25'],
    ['café', 'caf%C3%A9'],
    ['line\nbreak', 'line%0Abreak'],
    ['é at the start', '%C3%A9%20at%20the%20start'],
  ])('sends %j as %j (printable ASCII as is, anything else percent-encoded)', (details, sent) => {
    expect(encodeGrpcMessage(details)).toBe(sent);
  });
});

describe('the header values the transport checks', () => {
  it.each([
    ['application/grpc', true],
    ['application/grpc+proto', true],
    ['application/grpc;charset=utf-8', true],
    ['application/grpcx', false],
    ['application/json', false],
    ['text/application/grpc+', false],
    ['text/application/grpc;', false],
    ['', false],
    [undefined, false],
  ])('content-type %j is gRPC: %s', (value, grpc) => {
    expect(isGrpcContentType(value)).toBe(grpc);
  });

  it.each([
    [undefined, true],
    ['identity', true],
    ['gzip', false],
    ['', false],
    [['identity', 'gzip'], false],
  ])('grpc-encoding %j is accepted: %s', (value, accepted) => {
    expect(isAcceptedEncoding(value)).toBe(accepted);
  });
});
