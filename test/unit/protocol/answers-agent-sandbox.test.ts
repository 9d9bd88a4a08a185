// The answers under the agent-sandbox convention: its router's detail field in error bodies, its
// health answer, and forwards to its Sandboxes that drop its own headers and name the Sandbox for the log.
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../../src/core/errors.ts';
import { Answers, LOG_METADATA_NAMESPACE, SANDBOX_NAME_KEY } from '../../../src/protocol/answers.ts';
import { decodeResponse } from '../../../src/protocol/proto.ts';
import { makeRoute } from '../../support/routes.ts';

const base = { metadataNamespace: 'm', metadataKey: 'k', strippedHeaders: ['x-sandbox-pod-ip', 'x-sandbox-uid'] };
const agent = new Answers({ ...base, agentSandbox: { strippedHeaders: ['authorization', 'x-sandbox-uid'] } });
const e2b = new Answers(base);
const bodyOf = (answer: Buffer) => JSON.parse(decodeResponse(answer).immediate_response?.body?.toString() ?? '') as unknown;
const removed = (answer: Buffer) => decodeResponse(answer).request_headers?.response?.header_mutation?.remove_headers;
type Fields = Record<string, { stringValue?: string; structValue?: { fields: Fields } }>;
const logOf = (answer: Buffer) =>
  Object.fromEntries(
    Object.entries(
      ((decodeResponse(answer).dynamic_metadata?.fields ?? {}) as Fields)[LOG_METADATA_NAMESPACE]?.structValue?.fields ?? {},
    ).map(([k, v]) => [k, v.stringValue]),
  );

describe('error bodies with the router detail', () => {
  it('carry the router text for the case, or the message where it has none', () => {
    expect(bodyOf(agent.error({ code: 'invalid_sandbox_port' }))).toEqual({
      detail: 'Invalid port format.',
      error: 'invalid_sandbox_port',
      message: 'the sandbox port is malformed',
    });
    expect(bodyOf(agent.error({ code: 'sandbox_not_ready', sandboxId: 'team/box' }))).toEqual({
      detail: 'the sandbox is starting',
      error: 'sandbox_not_ready',
      message: 'the sandbox is starting',
      sandboxId: 'team/box',
    });
  });

  it('name the Sandbox by its name, not its namespace, where the router does', () => {
    expect(ERRORS.sandbox_not_found.detail).toBe('Could not connect to the backend sandbox');
    expect(ERRORS.sandbox_not_running.detail).toBe('Could not connect to the backend sandbox');
    expect(bodyOf(agent.error({ code: 'sandbox_not_found', sandboxId: 'team/box' }))).toMatchObject({
      detail: 'Could not connect to the backend sandbox: box',
    });
    expect(bodyOf(agent.error({ code: 'sandbox_not_running', sandboxId: 'plain' }))).toMatchObject({
      detail: 'Could not connect to the backend sandbox: plain',
    });
    expect(bodyOf(agent.error({ code: 'sandbox_not_found' }))).toMatchObject({ detail: 'Could not connect to the backend sandbox' });
    expect(bodyOf(agent.error({ code: 'invalid_sandbox_id', sandboxId: 'team/box' }))).toMatchObject({
      detail: 'Invalid sandbox ID format.',
    });
  });

  it("take identification's own detail over the catalogue's", () => {
    expect(bodyOf(agent.error({ code: 'invalid_path', detail: 'Invalid percent-encoding in path.' }))).toMatchObject({
      detail: 'Invalid percent-encoding in path.',
    });
  });

  it('are plain E2B bodies when the convention is off', () => {
    expect(bodyOf(e2b.error({ code: 'invalid_sandbox_port' }))).toEqual({
      error: 'invalid_sandbox_port',
      message: 'the sandbox port is malformed',
    });
  });
});

describe('the health answer', () => {
  it('is 200 with a JSON status body, named for the access log', () => {
    const answer = decodeResponse(agent.health).immediate_response;
    expect(answer?.status?.code).toBe(200);
    expect(answer?.body?.toString()).toBe('{"status":"ok"}');
    expect(answer?.details).toBe('sandbox_extproc_healthz');
    expect(answer?.headers?.set_headers?.map((h) => [h.header?.key, h.header?.raw_value?.toString()])).toEqual([
      ['content-type', 'application/json'],
    ]);
  });
});

describe('forwards to agent-sandbox Sandboxes', () => {
  const route = makeRoute({ id: 'team/box', namespace: 'team', name: 'box', podIP: '10.0.0.9' });

  it("also drop the convention's headers, each once, and name the Sandbox for the log", () => {
    const answer = agent.forward(route, 8888);
    expect(removed(answer)).toEqual(['x-sandbox-pod-ip', 'x-sandbox-uid', 'authorization']);
    expect(SANDBOX_NAME_KEY).toBe('sandbox_name');
    expect(logOf(answer)).toMatchObject({ sandbox_name: 'box' });
    expect(removed(agent.forward(makeRoute({ id: 'e2b-id', podIP: '10.0.0.8' }), 8888))).toEqual(['x-sandbox-pod-ip', 'x-sandbox-uid']);
    expect(logOf(agent.forward(makeRoute({ id: 'e2b-id', podIP: '10.0.0.8' }), 8888))).not.toHaveProperty('sandbox_name');
  });

  it('drop only the configured headers when the convention is off', () => {
    expect(removed(e2b.forward(route, 8888))).toEqual(['x-sandbox-pod-ip', 'x-sandbox-uid']);
    expect(removed(e2b.forward(route, 8888, '/rest'))).toEqual(['x-sandbox-pod-ip', 'x-sandbox-uid']);
  });
});
