// The request path's ProcessingRequest reader against the full decoder (proto.ts): on any message the
// full decoder reads, it gives the same request kind, observability mode, end of stream and, of the
// headers, exactly the wanted ones in order with the same values; on bytes the full decoder refuses, it
// refuses too. Messages are generated (every member of the oneof, repeated fields and members,
// headers with value, raw_value, both or neither) and then corrupted (bytes flipped, cut short).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HeaderValue, ProcessingRequest } from '../../../src/protocol/messages.ts';
import { decodeRequest, encodeRequest } from '../../../src/protocol/proto.ts';
import { RequestReader } from '../../../src/protocol/request-reader.ts';

const WANTED = [':authority', ':path', 'e2b-sandbox-id', 'e2b-sandbox-port', 'x-request-id', 'host'];
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
        : { headers: map.headers === undefined ? {} : { headers: map.headers.filter((h) => WANTED.includes(h.key ?? '')) } }),
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

describe('RequestReader', () => {
  it('reads what the full decoder reads, keeping only the wanted headers', () => {
    fc.assert(
      fc.property(message, (bytes) => {
        expect(plain(reader.read(bytes))).toEqual(plain(narrowed(decodeRequest(bytes))));
      }),
      { numRuns: 2000 },
    );
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
    expect(reader.read(Buffer.alloc(0))).toEqual({});
  });
});
