// The answers the service sends (src/protocol/answers.ts), decoded: what each carries, and the
// per-route cache of forward answers (the default port's and the last other port's).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Answers, LOG_METADATA_NAMESPACE, SANDBOX_UID_KEY, WAKE_MS_KEY } from '../../../src/protocol/answers.ts';
import { decodeResponse } from '../../../src/protocol/proto.ts';
import { makeRoute } from '../../support/routes.ts';

const answers = new Answers({
  metadataNamespace: 'envoy.lb.original_dst',
  metadataKey: 'host',
  strippedHeaders: ['x-envoy-original-dst-host', 'x-sandbox-pod-ip'],
});

type Fields = Record<string, { stringValue?: string; structValue?: { fields: Fields } }>;
const metadataOf = (answer: Buffer) => (decodeResponse(answer).dynamic_metadata?.fields ?? {}) as Fields;
const upstreamOf = (answer: Buffer) => metadataOf(answer)['envoy.lb.original_dst']?.structValue?.fields['host']?.stringValue;
/** The access log metadata, as key -> string. */
const logFieldsOf = (answer: Buffer) =>
  Object.fromEntries(
    Object.entries(metadataOf(answer)[LOG_METADATA_NAMESPACE]?.structValue?.fields ?? {}).map(([k, v]) => [k, v.stringValue]),
  );

describe('forward answers', () => {
  it('are encoded once per route and port, and reused', () => {
    const route = makeRoute({ podIP: '10.0.0.1' });
    const first = answers.forward(route, 49983);
    expect(answers.forward(route, 49983)).toBe(first);
    const other = answers.forward(route, 8080);
    expect(answers.forward(route, 8080)).toBe(other);
    expect(answers.forward(route, 49983)).toBe(first);
    expect(upstreamOf(first)).toBe('10.0.0.1:49983');
    expect(upstreamOf(other)).toBe('10.0.0.1:8080');
  });

  it('keep the default port and the last other port: a third port replaces the second, never the default', () => {
    const route = makeRoute({ podIP: '10.0.0.2' });
    const byDefault = answers.forward(route, 49983);
    const first = answers.forward(route, 8080);
    expect(upstreamOf(answers.forward(route, 9090))).toBe('10.0.0.2:9090');
    expect(answers.forward(route, 49983)).toBe(byDefault);
    const again = answers.forward(route, 8080);
    expect(again).not.toBe(first);
    expect(upstreamOf(again)).toBe('10.0.0.2:8080');
    expect(upstreamOf(answers.forward(route, 49983))).toBe('10.0.0.2:49983');
  });

  it('cache the default port configured, not E2B default', () => {
    const agent = new Answers({ metadataNamespace: 'm', metadataKey: 'k', strippedHeaders: [], defaultPort: 8888 });
    const route = makeRoute({ podIP: '10.0.0.3' });
    const first = agent.forward(route, 8888);
    agent.forward(route, 1);
    agent.forward(route, 2);
    expect(agent.forward(route, 8888)).toBe(first);
  });

  it('name the route, its UID and the decision for the access log', () => {
    const fields = logFieldsOf(answers.forward(makeRoute({ id: 'abc', uid: 'u-1' }), 49983));
    expect(fields).toEqual({
      decision: 'forward',
      sandbox_id: 'abc',
      [SANDBOX_UID_KEY]: 'u-1',
    });
  });

  it('after a wake, also carry how long the request waited (wake_ms), which Envoy turns into x-sandbox-wake-ms', () => {
    const answer = answers.forwardAfterWake(makeRoute({ id: 'abc', uid: 'u-1', podIP: '10.0.0.4' }), 3000, 1234.4);
    expect(upstreamOf(answer)).toBe('10.0.0.4:3000');
    expect(logFieldsOf(answer)).toEqual({
      decision: 'wake',
      sandbox_id: 'abc',
      [SANDBOX_UID_KEY]: 'u-1',
      wake_ms: '1234',
    });
    // The key Envoy's bootstrap reads for the response header.
    const envoyYaml = readFileSync(new URL('../../../envoy/envoy.yaml', import.meta.url), 'utf8');
    expect(envoyYaml).toContain(`key: x-sandbox-wake-ms, value: "%DYNAMIC_METADATA(${LOG_METADATA_NAMESPACE}:${WAKE_MS_KEY})%"`);
  });

  it("rewrite :path for OpenKruise's path form (the sandbox gets the rest), never from the per-route cache", () => {
    const route = makeRoute({ podIP: '10.0.0.5' });
    const cached = answers.forward(route, 49983);
    const rewritten = answers.forward(route, 49983, '/api/x?y=1');
    expect(rewritten).not.toBe(cached);
    const mutation = decodeResponse(rewritten).request_headers?.response?.header_mutation;
    expect(mutation?.remove_headers).toEqual(['x-envoy-original-dst-host', 'x-sandbox-pod-ip']);
    expect(mutation?.set_headers?.map((h) => [h.header?.key, h.header?.raw_value?.toString('latin1')])).toEqual([[':path', '/api/x?y=1']]);
    expect(upstreamOf(rewritten)).toBe('10.0.0.5:49983');
    expect(decodeResponse(cached).request_headers?.response?.header_mutation?.set_headers ?? []).toEqual([]);
  });

  it('remove the steering headers, as the pass answer does', () => {
    const strip = { remove_headers: ['x-envoy-original-dst-host', 'x-sandbox-pod-ip'] };
    expect(decodeResponse(answers.forward(makeRoute(), 49983)).request_headers).toEqual({ response: { header_mutation: strip } });
    expect(decodeResponse(answers.pass)).toEqual({
      response: 'request_headers',
      request_headers: { response: { header_mutation: strip } },
    });
  });
});

describe('the harmless reply to messages the processor did not ask for', () => {
  it('is a CONTINUE of that very kind (a CommonResponse for headers and bodies)', () => {
    for (const kind of ['response_headers', 'request_body', 'response_body'] as const) {
      expect(decodeResponse(answers.continueFor(kind))).toEqual({ response: kind, [kind]: { response: {} } });
    }
    for (const kind of ['request_trailers', 'response_trailers'] as const) {
      expect(decodeResponse(answers.continueFor(kind))).toEqual({ response: kind, [kind]: {} });
    }
    expect(answers.continueFor('request_headers')).toBe(answers.pass);
  });
});

describe('error answers', () => {
  const headersOf = (answer: Buffer) =>
    Object.fromEntries(
      (decodeResponse(answer).immediate_response?.headers?.set_headers ?? []).map((h) => [h.header?.key, h.header?.raw_value?.toString()]),
    );
  const bodyOf = (answer: Buffer) => JSON.parse(decodeResponse(answer).immediate_response?.body?.toString() ?? '') as unknown;

  it('carry Retry-After only for answers that may succeed later', () => {
    expect(headersOf(answers.error({ code: 'sandbox_not_found', sandboxId: 'x' }))).toEqual({ 'content-type': 'application/json' });
    expect(headersOf(answers.error({ code: 'sandbox_not_ready', sandboxId: 'x' }))).toEqual({
      'content-type': 'application/json',
      'retry-after': '1',
    });
    expect(headersOf(answers.error({ code: 'sandbox_wake_failed', sandboxId: 'x', retryAfter: 17 }))['retry-after']).toBe('17');
  });

  it('name the sandbox where the gateway does, in the message the client reads', () => {
    expect(bodyOf(answers.error({ code: 'sandbox_not_found', sandboxId: 'my-box' }))).toEqual({
      error: 'sandbox_not_found',
      message: 'sandbox not found: my-box',
      sandboxId: 'my-box',
    });
    expect(bodyOf(answers.error({ code: 'sandbox_not_found' }))).toEqual({ error: 'sandbox_not_found', message: 'sandbox not found' });
    expect(bodyOf(answers.error({ code: 'sandbox_not_ready', sandboxId: 'my-box' }))).toEqual({
      error: 'sandbox_not_ready',
      message: 'the sandbox is starting',
      sandboxId: 'my-box',
    });
  });

  it('add the reason to the catalogue message when there is one, and log the code as the decision', () => {
    const answer = answers.error({ code: 'invalid_host', reason: 'host "x" is not <port>-<sandboxID>.example.com' });
    expect(bodyOf(answer)).toEqual({
      error: 'invalid_host',
      message: 'the host does not have the form <port>-<sandboxID>.<domain> (host "x" is not <port>-<sandboxID>.example.com)',
    });
    expect(logFieldsOf(answer)).toEqual({ decision: 'invalid_host' });
    expect(decodeResponse(answer).immediate_response?.status?.code).toBe(400);
  });
});
