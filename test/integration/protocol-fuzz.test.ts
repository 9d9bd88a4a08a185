// A protocol fuzz against the running server over real gRPC: random streams of messages that break the
// ext_proc rules (wrong order, repeated headers, bodies and trailers nobody asked for, empty messages,
// garbage bytes, early cancels). Every stream must end with a status or complete, and the server must
// keep answering correctly afterwards.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProcessingRequest } from '../../src/protocol/messages.ts';
import { encodeRequest } from '../../src/protocol/proto.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { startService, type RunningService } from '../support/service.ts';

const CASES = 1500;
let service: RunningService;
let client: ExtProcClient;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-fuzz-'));
  writeFileSync(join(dir, 'routes.yaml'), 'routes: [{ id: sbx, podIP: 10.0.0.1 }]\n');
  service = await startService(['--route-source', 'file', '--routes-file', join(dir, 'routes.yaml')]);
  client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
});

afterAll(async () => {
  client?.close();
  await service?.stop();
});

const headersMsg = (id: string): ProcessingRequest => ({
  request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } },
});
const message: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom('sbx', 'nope', 'a/b', '').map((id) => encodeRequest(headersMsg(id))),
  fc.constant(encodeRequest({ request_body: { body: Buffer.from('x'), end_of_stream: true } })),
  fc.constant(encodeRequest({ response_headers: { headers: { headers: [] } } })),
  fc.constant(encodeRequest({ response_body: { body: Buffer.from('y') } })),
  fc.constant(encodeRequest({ request_trailers: { trailers: { headers: [] } } })),
  fc.constant(encodeRequest({ response_trailers: { trailers: { headers: [] } } })),
  fc.constant(Buffer.alloc(0)),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.from(a)),
);

describe('protocol fuzz', () => {
  it(`ends every one of ${CASES} rule-breaking streams cleanly and keeps serving`, async () => {
    let ended = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 0, maxLength: 6 }), fc.boolean(), async (messages, cancel) => {
        const result = await client.exchange(messages, { raw: true, ...(cancel ? { cancelAfterMs: 0 } : {}) });
        expect(typeof result.status.code).toBe('number');
        ended += 1;
      }),
      { numRuns: CASES },
    );
    expect(ended).toBe(CASES);
    const { responses } = await client.exchange([headersMsg('sbx')], { closeAfter: 1 });
    expect(JSON.stringify(responses[0]?.dynamic_metadata)).toContain('10.0.0.1:49983');
  });
});
