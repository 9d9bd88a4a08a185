// The request path's ProcessingRequest reader against the full decoder (proto.ts): on any message the
// full decoder reads, it gives the same request kind, observability mode, end of stream and, of the
// headers, exactly the wanted ones in order with the same values; on bytes the full decoder refuses, it
// refuses too. Messages are generated (every member of the oneof, repeated fields and members,
// headers with value, raw_value, both or neither) and then corrupted (bytes flipped, cut short).
import fc from 'fast-check';
import protobuf from 'protobufjs/minimal.js';
import { describe, expect, it } from 'vitest';
import type { HeaderValue, ProcessingRequest } from '../../../src/protocol/messages.ts';
import { decodeRequest, encodeRequest } from '../../../src/protocol/proto.ts';
import { RequestReader } from '../../../src/protocol/request-reader.ts';

// '' among them: a header with an empty key is kept, one with no key at all never is.
const WANTED = [':authority', ':path', 'e2b-sandbox-id', 'e2b-sandbox-port', 'x-request-id', 'host', ''];
const reader = new RequestReader(WANTED);

/** What the reader must give: the full decoder's message, headers narrowed to the wanted ones. */
function narrowed(full: ProcessingRequest): ProcessingRequest {
  const {
    request_headers,
    response_headers: _h,
    request_body: _b,
    response_body: _rb,
    request_trailers: _t,
    response_trailers: _rt,
    ...rest
  } = full;
  if (request_headers === undefined) return rest;
  const map = request_headers.headers;
  return {
    ...rest,
    request_headers: {
      ...request_headers,
      ...(map === undefined
        ? {}
        : {
            headers: map.headers === undefined ? {} : { headers: map.headers.filter((h) => h.key !== undefined && WANTED.includes(h.key)) },
          }),
    },
  };
}

/** Buffers compared by their bytes (the reader's are views of the message, as the decoder's are). */
const plain = (message: ProcessingRequest) => JSON.parse(JSON.stringify(message)) as unknown;

const outcome = (read: () => ProcessingRequest) => {
  try {
    return { ok: true, message: read() } as const;
  } catch {
    return { ok: false } as const;
  }
};

const key = fc.oneof(
  fc.constantFrom(...WANTED, 'user-agent', 'accept', 'x-forwarded-proto', 'e2b-sandbox-idx', ''),
  fc.string({ maxLength: 16 }),
);
const header: fc.Arbitrary<HeaderValue> = fc.record(
  { key, value: fc.string({ maxLength: 20 }), raw_value: fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b)) },
  { requiredKeys: [] },
);
const headerMap = fc.record({ headers: fc.array(header, { maxLength: 12 }) }, { requiredKeys: [] });
const httpHeaders = fc.record({ headers: headerMap, end_of_stream: fc.boolean() }, { requiredKeys: [] });
const body = fc.record(
  { body: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)), end_of_stream: fc.boolean() },
  { requiredKeys: [] },
);
const trailers = fc.record({ trailers: headerMap }, { requiredKeys: [] });
/** One ProcessingRequest, encoded: at most one member of the oneof, as an encoder writes it. */
const single: fc.Arbitrary<Buffer> = fc
  .tuple(
    fc.oneof(
      httpHeaders.map((v) => ({ request_headers: v })),
      httpHeaders.map((v) => ({ response_headers: v })),
      body.map((v) => ({ request_body: v })),
      body.map((v) => ({ response_body: v })),
      trailers.map((v) => ({ request_trailers: v })),
      trailers.map((v) => ({ response_trailers: v })),
      fc.constant({}),
    ),
    fc.option(fc.boolean(), { nil: undefined }),
  )
  .map(([member, observability]) =>
    encodeRequest({ ...member, ...(observability === undefined ? {} : { observability_mode: observability }) } as ProcessingRequest),
  );
/** Several encoded messages back to back: repeated fields and members, as the wire allows. */
const message = fc.array(single, { minLength: 1, maxLength: 3 }).map((parts) => Buffer.concat(parts));

/** Protobuf wire bytes of any shape: any field number and wire type, nested messages and groups, lengths that lie. */
type Wire = { readonly field: number; readonly wire: number; readonly body: Buffer | readonly Wire[]; readonly lie: number };

const varint = (value: number) => {
  const out: number[] = [];
  let v = value >>> 0;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v >>>= 7;
  }
  out.push(v);
  return Buffer.from(out);
};

function encodeWire(fields: readonly Wire[]): Buffer {
  return Buffer.concat(
    fields.map(({ field, wire, body, lie }) => {
      const tag = varint((field << 3) | wire);
      const inner = Buffer.isBuffer(body) ? body : encodeWire(body);
      if (wire === 2) return Buffer.concat([tag, varint(Math.max(0, inner.length + lie)), inner]);
      // A group ends with its own end tag (unless the lie drops it: an unterminated group).
      if (wire === 3) return Buffer.concat([tag, inner, lie === 0 ? varint((field << 3) | 4) : Buffer.alloc(0)]);
      return Buffer.concat([tag, inner]);
    }),
  );
}

const wireField = (depth: number): fc.Arbitrary<Wire> =>
  fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({
      field: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 11, max: 40 })),
      wire: fc.constantFrom(0, 1, 5),
      body: fc
        .constantFrom(0, 1, 5)
        .chain((w) =>
          (w === 0 ? fc.nat().map(varint) : fc.uint8Array({ minLength: w === 1 ? 8 : 4, maxLength: w === 1 ? 8 : 4 })).map((b) =>
            Buffer.from(b),
          ),
        ),
      lie: fc.constant(0),
    }),
    fc.record({
      field: fc.integer({ min: 1, max: 12 }),
      wire: fc.constant(2),
      body:
        depth > 4
          ? fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b))
          : fc.oneof(
              fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
              fc.array(wireField(depth + 1), { maxLength: 3 }),
            ),
      lie: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
    }),
    fc.record({
      field: fc.integer({ min: 1, max: 12 }),
      wire: fc.constant(3),
      body: depth > 4 ? fc.constant([]) : fc.array(wireField(depth + 1), { maxLength: 2 }),
      lie: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constant(1) }),
    }),
  );
const anyWire = fc.array(wireField(0), { maxLength: 4 }).map(encodeWire);

describe('RequestReader', () => {
  it('agrees with the full decoder on wire bytes of any shape: wrong wire types, lying lengths, groups, any nesting limit', () => {
    const limit = protobuf.Reader.recursionLimit;
    try {
      fc.assert(
        fc.property(anyWire, fc.constantFrom(limit, 0, 1, 2, 3, 4), (bytes, recursionLimit) => {
          protobuf.Reader.recursionLimit = recursionLimit;
          const full = outcome(() => decodeRequest(bytes));
          const lean = outcome(() => reader.read(bytes));
          expect(lean.ok).toBe(full.ok);
          if (full.ok && lean.ok) expect(plain(lean.message)).toEqual(plain(narrowed(full.message)));
        }),
        { numRuns: 3000 },
      );
    } finally {
      protobuf.Reader.recursionLimit = limit;
    }
  });

  it('reads what the full decoder reads, keeping only the wanted headers, and refuses what it refuses at any nesting limit', () => {
    const limit = protobuf.Reader.recursionLimit;
    try {
      fc.assert(
        fc.property(message, fc.constantFrom(limit, limit, 0, 1, 2, 3, 4), (bytes, recursionLimit) => {
          protobuf.Reader.recursionLimit = recursionLimit;
          const full = outcome(() => decodeRequest(bytes));
          const lean = outcome(() => reader.read(bytes));
          expect(lean.ok).toBe(full.ok);
          if (full.ok && lean.ok) expect(plain(lean.message)).toEqual(plain(narrowed(full.message)));
          if (!lean.ok) expect(() => reader.read(bytes)).toThrow(/maximum nesting depth exceeded/);
        }),
        { numRuns: 3000 },
      );
    } finally {
      protobuf.Reader.recursionLimit = limit;
    }
  });

  it('refuses what the full decoder refuses, and reads the same from what it accepts, once corrupted', () => {
    fc.assert(
      fc.property(
        message,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(),
        (bytes, flips, cut) => {
          const corrupted = Buffer.from(bytes);
          for (const [at, value] of flips) if (corrupted.length > 0) corrupted[at % corrupted.length] = value;
          const damaged = corrupted.subarray(0, corrupted.length - (cut % 4));
          const full = outcome(() => decodeRequest(damaged));
          const lean = outcome(() => reader.read(damaged));
          expect(lean.ok).toBe(full.ok);
          if (full.ok && lean.ok) expect(plain(lean.message)).toEqual(plain(narrowed(full.message)));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('keeps the wanted headers as Envoy sends them, values as views of the message', () => {
    const bytes = encodeRequest({
      request_headers: {
        headers: {
          headers: [
            { key: ':authority', raw_value: Buffer.from('edge.example.com') },
            { key: 'user-agent', raw_value: Buffer.from('curl/8') },
            { key: 'e2b-sandbox-id', raw_value: Buffer.from('sbx-1') },
            { key: 'e2b-sandbox-id', raw_value: Buffer.from('sbx-2') },
            { key: 'x-request-id', value: 'legacy' },
          ],
        },
        end_of_stream: true,
      },
    });
    const read = reader.read(bytes);
    expect(read.request).toBe('request_headers');
    expect(read.request_headers?.end_of_stream).toBe(true);
    const headers = read.request_headers?.headers?.headers ?? [];
    expect(headers.map((h) => [h.key, h.raw_value?.toString() ?? h.value])).toEqual([
      [':authority', 'edge.example.com'],
      ['e2b-sandbox-id', 'sbx-1'],
      ['e2b-sandbox-id', 'sbx-2'],
      ['x-request-id', 'legacy'],
    ]);
    expect(headers[0]?.raw_value?.buffer).toBe(bytes.buffer);
  });

  it('tells the kind of a message that carries no headers, without reading its body', () => {
    expect(reader.read(encodeRequest({ request_body: { body: Buffer.alloc(1000, 1), end_of_stream: true } }))).toEqual({
      request: 'request_body',
    });
    expect(reader.read(encodeRequest({ observability_mode: true, response_trailers: {} }))).toEqual({
      request: 'response_trailers',
      observability_mode: true,
    });
    expect(reader.read(Buffer.alloc(0))).toStrictEqual({});
    // A submessage that runs past the message is refused as the full decoder refuses it.
    expect(() => reader.read(Buffer.from([0x12, 0x05, 0x0a]))).toThrow('index out of range');
    // A submessage whose last varint runs past its end (read on into the next bytes) is refused too.
    // A known field of a member with another wire type than its own is read as its own type, as the
    // full decoder reads it: body (bytes) sent as a varint here.
    const body = Buffer.from([0x22, 0x04, 0x08, 0x02, 0xaa, 0xbb]);
    expect(decodeRequest(body).request).toBe('request_body');
    expect(reader.read(body)).toStrictEqual({ request: 'request_body' });
    const overrun = Buffer.from([0x12, 0x02, 0x18, 0x80, 0x01]);
    expect(() => decodeRequest(overrun)).toThrow('index out of range');
    expect(() => reader.read(overrun)).toThrow('index out of range');
  });
});
