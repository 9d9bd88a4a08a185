// The access log reader (readActivityFrom, what the service runs for every batch Envoy streams) against
// the full decoder and readActivity: the same activity from any message Envoy's own protos encode (every
// field of an entry, any metadata namespaces, our fields as strings or as other kinds of value, entries
// repeated, empty or without metadata), and on corrupted bytes no other failure than an Error.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeAccessLogs, readActivity, readActivityFrom } from '../../../src/protocol/access-log.ts';
import { loadAccessLogOracle } from '../../support/oracle.ts';

const als = loadAccessLogOracle();

const value = fc.oneof(
  fc.string({ maxLength: 12 }).map((s) => ({ stringValue: s })),
  fc.double({ noNaN: true }).map((n) => ({ numberValue: n })),
  fc.boolean().map((b) => ({ boolValue: b })),
  fc.constant({ structValue: { fields: { inner: { stringValue: 'x' } } } }),
);
const fields = fc.dictionary(fc.constantFrom('sandbox_id', 'sandbox_uid', 'decision', 'host', 'sandbox_idx', ''), value, { maxKeys: 4 });
const metadata = fc.dictionary(
  fc.constantFrom('sandbox-extproc', 'envoy.lb.original_dst', 'envoy.filters.http.ext_proc', 'sandbox-extprocx', ''),
  fields.map((f) => ({ fields: f })),
  { maxKeys: 3 },
);
const entry = fc.record(
  {
    common_properties: fc.record(
      {
        metadata: metadata.map((m) => ({ filter_metadata: m })),
        access_log_type: fc.constantFrom('NotSet', 'DownstreamStart', 'DownstreamPeriodic', 'DownstreamEnd', 'UpstreamPeriodic'),
        upstream_cluster: fc.string({ maxLength: 8 }),
        sample_rate: fc.double({ min: 0, max: 1, noNaN: true }),
      },
      { requiredKeys: [] },
    ),
    protocol_version: fc.constantFrom('HTTP10', 'HTTP11', 'HTTP2'),
    request: fc.record({ path: fc.string({ maxLength: 20 }), authority: fc.string({ maxLength: 10 }) }, { requiredKeys: [] }),
    response: fc.record({ response_code: fc.record({ value: fc.nat(599) }) }, { requiredKeys: [] }),
  },
  { requiredKeys: [] },
);
const message = fc
  .record(
    {
      identifier: fc.constant({ node: { id: 'edge-1', cluster: 'edge' }, log_name: 'sandbox-activity' }),
      http_logs: fc.record({ log_entry: fc.array(entry, { maxLength: 6 }) }),
    },
    { requiredKeys: [] },
  )
  .map((m) => als.requestSerialize(m) as Buffer);

describe('readActivityFrom', () => {
  it('reads the activity the full decoder reads, from any message Envoy encodes', () => {
    fc.assert(
      fc.property(message, (bytes) => {
        expect(readActivityFrom(bytes)).toEqual(readActivity(decodeAccessLogs(bytes)));
      }),
      { numRuns: 1500 },
    );
  });

  it('reads the same from messages sent back to back (repeated fields and entries)', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 2, maxLength: 3 }), (parts) => {
        const bytes = Buffer.concat(parts);
        expect(readActivityFrom(bytes)).toEqual(readActivity(decodeAccessLogs(bytes)));
      }),
      { numRuns: 500 },
    );
  });

  it('fails only with an Error on corrupted bytes, and reads what it reads as the full decoder does', () => {
    fc.assert(
      fc.property(message, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), (bytes, flips) => {
        const corrupted = Buffer.from(bytes);
        for (const [at, b] of flips) if (corrupted.length > 0) corrupted[at % corrupted.length] = b;
        let full: unknown;
        try {
          full = readActivity(decodeAccessLogs(corrupted));
        } catch {
          full = undefined;
        }
        try {
          const lean = readActivityFrom(corrupted);
          // Where both read the message, they read the same activity.
          if (full !== undefined) expect(lean).toEqual(full);
        } catch (error) {
          expect(error).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
