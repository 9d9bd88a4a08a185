// proto/ is a hand-written subset of Envoy's API: these tests encode with one side and decode with the
// other, in both directions, for every message shape the service reads or writes.
import { describe, expect, it } from 'vitest';
import { Answers } from '../../../src/protocol/answers.ts';
import { decodeRequest, decodeResponse, encodeRequest } from '../../../src/protocol/proto.ts';
import { decodeAccessLogs, readActivity, readActivityFrom } from '../../../src/protocol/access-log.ts';
import { REQUEST_KINDS } from '../../../src/protocol/messages.ts';
import { loadAccessLogOracle, loadOracle } from '../../support/oracle.ts';
import { makeRoute } from '../../support/routes.ts';

const oracle = loadOracle();
const answers = new Answers({
  metadataNamespace: 'envoy.lb.original_dst',
  metadataKey: 'host',
  strippedHeaders: ['x-envoy-original-dst-host'],
});

describe('requests: Envoy encodes, we decode', () => {
  it('reads request headers with raw_value, value and end_of_stream', () => {
    const bytes = oracle.requestSerialize({
      request_headers: {
        headers: {
          headers: [
            { key: ':authority', raw_value: Buffer.from('8080-abc.example.com') },
            { key: 'e2b-sandbox-id', value: 'legacy-value' },
          ],
        },
        end_of_stream: true,
      },
      observability_mode: false,
    });
    const decoded = decodeRequest(bytes);
    expect(decoded.request).toBe('request_headers');
    expect(decoded.request_headers?.end_of_stream).toBe(true);
    expect(decoded.request_headers?.headers?.headers?.[0]?.raw_value?.toString()).toBe('8080-abc.example.com');
    expect(decoded.request_headers?.headers?.headers?.[1]?.value).toBe('legacy-value');
  });

  it('reads the other message kinds by their oneof field', () => {
    for (const kind of ['response_headers', 'request_body', 'response_body', 'request_trailers', 'response_trailers'] as const) {
      const body = kind.endsWith('body')
        ? { body: Buffer.from('x'), end_of_stream: true }
        : kind.endsWith('trailers')
          ? { trailers: { headers: [] } }
          : { headers: { headers: [] } };
      expect(decodeRequest(oracle.requestSerialize({ [kind]: body })).request).toBe(kind);
    }
  });

  it('skips fields the subset does not declare', () => {
    const bytes = oracle.requestSerialize({
      request_headers: { headers: { headers: [] } },
      attributes: { 'envoy.filters.http.ext_proc': { fields: {} } },
    });
    expect(decodeRequest(bytes).request).toBe('request_headers');
  });
});

describe('responses: we encode, Envoy decodes', () => {
  it('forward: CONTINUE, the header removal, and the ORIGINAL_DST metadata', () => {
    const decoded = oracle.responseDeserialize(answers.forward(makeRoute({ id: 'abc', podIP: '10.1.2.3' }), 49983)) as Record<
      string,
      never
    >;
    expect(decoded).toMatchObject({
      response: 'request_headers',
      request_headers: { response: { header_mutation: { remove_headers: ['x-envoy-original-dst-host'] } } },
      dynamic_metadata: {
        fields: {
          'envoy.lb.original_dst': { structValue: { fields: { host: { stringValue: '10.1.2.3:49983' } } } },
          'sandbox-extproc': { structValue: { fields: { sandbox_id: { stringValue: 'abc' }, decision: { stringValue: 'forward' } } } },
        },
      },
    });
  });

  it('brackets an IPv6 pod IP in the upstream address', () => {
    const decoded = decodeResponse(answers.forward(makeRoute({ podIP: 'fd00::1' }), 80));
    expect(JSON.stringify(decoded)).toContain('[fd00::1]:80');
  });

  it('immediate response: status, JSON body, headers in raw_value only, and details', () => {
    const decoded = oracle.responseDeserialize(answers.error({ code: 'sandbox_wake_timeout', sandboxId: 'abc' })) as {
      immediate_response: {
        status: { code: string };
        headers: { set_headers: { header: { key: string; value?: string; raw_value: Buffer } }[] };
        body: Buffer;
        details: string;
      };
    };
    const ir = decoded.immediate_response;
    expect(ir.status.code).toBe('ServiceUnavailable');
    expect(JSON.parse(ir.body.toString())).toEqual({
      error: 'sandbox_wake_timeout',
      message: 'the sandbox did not start within the wake deadline',
      sandboxId: 'abc',
    });
    expect(ir.details).toBe('sandbox_extproc_sandbox_wake_timeout');
    const headers = Object.fromEntries(ir.headers.set_headers.map((h) => [h.header.key, h.header.raw_value.toString()]));
    expect(headers).toEqual({ 'content-type': 'application/json', 'retry-after': '2' });
    // Envoy rejects a header carrying both value and raw_value.
    for (const h of ir.headers.set_headers) expect(h.header.value ?? '').toBe('');
  });

  it('override_message_timeout alone', () => {
    const decoded = oracle.responseDeserialize(answers.overrideTimeout(61_500)) as Record<string, unknown>;
    expect(decoded).toEqual({ override_message_timeout: { seconds: '61', nanos: 500_000_000 } });
  });

  it('the harmless CONTINUE for each unexpected message kind', () => {
    for (const kind of REQUEST_KINDS) {
      expect((oracle.responseDeserialize(answers.continueFor(kind)) as { response: string }).response).toBe(kind);
    }
  });

  it('round-trips a request through our encoder and the oracle decoder', () => {
    const bytes = encodeRequest({ request_headers: { headers: { headers: [{ key: 'x', raw_value: Buffer.from('y') }] } } });
    expect(oracle.requestDeserialize(bytes)).toMatchObject({
      request_headers: { headers: { headers: [{ key: 'x', raw_value: Buffer.from('y') }] } },
    });
  });
});

describe('access log entries: Envoy encodes, we read the activity', () => {
  const als = loadAccessLogOracle();
  const ours = (sandboxId: string, uid: string) => ({
    'sandbox-extproc': {
      fields: { decision: { stringValue: 'forward' }, sandbox_id: { stringValue: sandboxId }, sandbox_uid: { stringValue: uid } },
    },
    'envoy.lb.original_dst': { fields: { host: { stringValue: '10.0.0.1:49983' } } },
  });
  it('reads the sandbox ID, UID and whether the request is still open, skipping every other field', () => {
    const bytes = als.requestSerialize({
      identifier: { node: { id: 'edge-1', cluster: 'edge' }, log_name: 'sandbox-activity' },
      http_logs: {
        log_entry: [
          {
            common_properties: {
              downstream_remote_address: { socket_address: { address: '192.0.2.1', port_value: 5555 } },
              start_time: { seconds: '1700000000', nanos: 0 },
              metadata: { filter_metadata: ours('sbx-1', 'uid-1') },
              access_log_type: 'DownstreamPeriodic',
              upstream_cluster: 'sandboxes',
            },
            protocol_version: 'HTTP11',
            request: { request_method: 'GET', authority: 'example', path: '/ws' },
            response: { response_code: { value: 101 } },
          },
          { common_properties: { metadata: { filter_metadata: ours('sbx-2', 'uid-2') }, access_log_type: 'DownstreamEnd' } },
          { common_properties: { access_log_type: 'DownstreamEnd' } },
        ],
      },
    });
    const decoded = loadAccessLogOracle().requestDeserialize(bytes);
    expect(decoded).toBeDefined();
    // Decode with our subset (the service's own codec), as the receiver does.
    const facts = readActivity(decodeAccessLogs(bytes));
    expect(facts).toEqual([
      { sandboxId: 'sbx-1', uid: 'uid-1', open: true },
      { sandboxId: 'sbx-2', uid: 'uid-2', open: false },
    ]);
    // The request path's reader, straight from the bytes, reads the same.
    expect(readActivityFrom(bytes)).toEqual(facts);
  });
});
