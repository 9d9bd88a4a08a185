// Arbitrary header lists, as a hostile client could make Envoy forward them, through the whole request
// path (facts -> identification -> decision -> encoded answer): never a throw, always one defined answer.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { Answers } from '../../../src/protocol/answers.ts';
import type { HeaderValue } from '../../../src/protocol/messages.ts';
import { decodeResponse } from '../../../src/protocol/proto.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import { RequestProcessor } from '../../../src/server/processor.ts';
import { makeRoute } from '../../support/routes.ts';

export const CASES = 20_000;

const registry = new RouteRegistry();
registry.upsert(makeRoute({ id: 'sbx', uid: 'a' }));
registry.upsert(makeRoute({ id: 'ns--name', uid: 'b', state: 'paused', wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 } }));
registry.upsert(makeRoute({ id: 'a.b_c', uid: 'c', state: 'creating' }));
registry.markReady();
const answers = new Answers({
  metadataNamespace: 'envoy.lb.original_dst',
  metadataKey: 'host',
  strippedHeaders: ['x-envoy-original-dst-host'],
});
const processor = new RequestProcessor({
  routes: registry,
  answers,
  metrics: createMetrics(() => registry.countByState()),
  logger: createLogger('silent'),
  options: {
    names: { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port' },
    identify: { domains: ['sandbox.test'], defaultPort: 49983 },
    decide: { wakeEnabled: false, unnamed: 'reject' },
  },
});

const key = fc.constantFrom(
  ':authority',
  'host',
  'e2b-sandbox-id',
  'e2b-sandbox-port',
  'x-access-token',
  'x-request-id',
  'x-envoy-original-dst-host',
  'other',
);
const text = fc.oneof(
  fc.string(),
  fc.string({ maxLength: 20_000 }),
  fc.constantFrom(
    'sbx',
    'ns--name',
    'a.b_c',
    '../etc/passwd',
    'a/b',
    '%2e%2e',
    '80-sbx.sandbox.test',
    '99999-sbx.sandbox.test',
    '[::1]:80',
    '0',
    '65536',
    '-1',
    'sbx\u0000',
    '',
  ),
);
const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const header: fc.Arbitrary<HeaderValue> = fc.oneof(
  fc.record({ key, raw_value: text.map((t) => Buffer.from(t)) }),
  fc.record({ key, raw_value: bytes }),
  fc.record({ key, value: text }),
  fc.record({ key: fc.string(), raw_value: bytes }),
  fc.record({}, { requiredKeys: [] }) as fc.Arbitrary<HeaderValue>,
);

describe('the request path under arbitrary headers', () => {
  it(`answers every one of ${CASES} random header lists with a decodable answer, never a throw`, () => {
    let errors = 0;
    fc.assert(
      fc.property(fc.array(header, { maxLength: 12 }), (headers) => {
        const result = processor.process(headers, () => new AbortController().signal);
        expect(Buffer.isBuffer(result)).toBe(true);
        const decoded = decodeResponse(result as Buffer);
        const status = decoded.immediate_response?.status?.code;
        if (status !== undefined) {
          errors += 1;
          expect([400, 401, 502, 503]).toContain(status);
          const body = JSON.parse(decoded.immediate_response?.body?.toString() ?? '') as { error: string; message: string };
          expect(body.error).toMatch(/^[a-z_]+$/);
          expect(body.message.length).toBeLessThan(400);
        } else {
          // Only a known running sandbox is ever forwarded, and only to its own IP.
          const upstream = decoded.dynamic_metadata?.fields['envoy.lb.original_dst'];
          expect(JSON.stringify(upstream)).toMatch(/"10\.0\.0\.1:\d+"/);
        }
      }),
      { numRuns: CASES },
    );
    expect(errors).toBeGreaterThan(CASES / 2);
  });
});

describe('the request path under arbitrary headers, both conventions on', () => {
  const both = new RouteRegistry();
  both.upsert(makeRoute({ id: 'sbx', uid: 'a' }));
  both.upsert(makeRoute({ id: 'default/box', uid: 'd', podIP: '10.0.0.2' }));
  both.upsert(makeRoute({ id: 'team/box', uid: 'e', state: 'creating' }));
  both.markReady();
  const agentProcessor = new RequestProcessor({
    routes: both,
    answers,
    metrics: createMetrics(() => both.countByState()),
    logger: createLogger('silent'),
    options: {
      names: { sandboxIdHeader: 'e2b-sandbox-id', sandboxPortHeader: 'e2b-sandbox-port', agentSandbox: true },
      identify: {
        domains: ['sandbox.test'],
        defaultPort: 49983,
        conventions: ['agent-sandbox', 'e2b'],
        agentSandbox: { defaultNamespace: 'default', defaultPort: 8888, namespaces: ['default', 'team'] },
      },
      decide: { wakeEnabled: false, unnamed: 'reject' },
    },
  });
  const agentKey = fc.constantFrom(
    ':authority',
    'e2b-sandbox-id',
    'x-sandbox-id',
    'x-sandbox-namespace',
    'x-sandbox-port',
    'x-sandbox-pod-ip',
    'x-sandbox-uid',
  );
  const agentText = fc.oneof(text, fc.constantFrom('box', 'default', 'team', 'kube-system', 'Box', '10.0.0.9', '8888'));
  const agentHeader: fc.Arbitrary<HeaderValue> = fc.oneof(
    fc.record({ key: agentKey, raw_value: agentText.map((t) => Buffer.from(t)) }),
    fc.record({ key: agentKey, raw_value: bytes }),
  );

  it(`answers every one of ${CASES} random header lists, forwarding only to a named sandbox's own IP`, () => {
    fc.assert(
      fc.property(fc.array(agentHeader, { maxLength: 10 }), (headers) => {
        const result = agentProcessor.process(headers, () => new AbortController().signal);
        const decoded = decodeResponse(result as Buffer);
        const status = decoded.immediate_response?.status?.code;
        if (status !== undefined) expect([400, 403, 502, 503]).toContain(status);
        else expect(JSON.stringify(decoded.dynamic_metadata?.fields['envoy.lb.original_dst'])).toMatch(/"10\.0\.0\.[12]:\d+"/);
      }),
      { numRuns: CASES },
    );
  });
});
