// The spans of a decision and of a wake, through the real OpenTelemetry SDK into its in-memory exporter
// (the OTLP path to a real Collector is test/integration/tracing.test.ts): the failure paths the
// integration test does not reach, and the link of a request that joins a wake someone else started.
import { SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { Tracing, tracesUrl } from '../../../src/observability/tracing.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { WakeCoordinator } from '../../../src/wake/coordinator.ts';
import { ResumeError, type Resumer } from '../../../src/wake/resumer.ts';
import { makeRoute } from '../../support/routes.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const header = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });

function setup(resumer: Resumer) {
  const exporter = new InMemorySpanExporter();
  const tracing = new Tracing({ endpoint: 'http://unused', sampleRatio: 1, logger: createLogger('silent'), exporter });
  const registry = new RouteRegistry();
  registry.markReady();
  const coordinator = new WakeCoordinator({
    registry,
    resumer,
    metrics: createMetrics(() => registry.countByState()),
    logger: createLogger('silent'),
    tracer: tracing,
    options: { timeoutMs: 30_000, maxHoldMs: 300_000, maxWaitersPerSandbox: 100, maxWaiters: 1000 },
  });
  const spans = async (): Promise<ReadableSpan[]> => {
    await tracing.flush();
    return exporter.getFinishedSpans();
  };
  return { tracing, registry, coordinator, spans };
}

const paused = (): Route =>
  makeRoute({
    id: 'sbx',
    state: 'paused',
    podIP: '',
    pauseRequested: true,
    wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 },
    resourceVersion: '5',
  });

describe('tracing', () => {
  it('makes the OTLP/HTTP traces URL from a base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT does', () => {
    expect(tracesUrl('http://collector:4318')).toBe('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318/')).toBe('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318/v1/traces')).toBe('http://collector:4318/v1/traces');
  });

  it('joins the traceparent’s trace, or starts one when the request carries none (or a malformed one)', async () => {
    const { tracing, spans } = setup({ resume: () => Promise.resolve('6') });
    tracing.decided(tracing.decision([header('traceparent', `00-${TRACE}-${PARENT}-01`)]), 'forward', 'a');
    tracing.decided(tracing.decision([header('traceparent', 'garbage')]), 'sandbox_not_found', 'b');
    tracing.decided(tracing.decision(undefined), 'pass', undefined);
    const [joined, bad, none] = await spans();
    expect([joined?.spanContext().traceId, joined?.parentSpanContext?.spanId, joined?.attributes['sandbox.id']]).toEqual([
      TRACE,
      PARENT,
      'a',
    ]);
    expect(bad?.spanContext().traceId).not.toBe(TRACE);
    expect(bad?.parentSpanContext).toBeUndefined();
    expect(none?.attributes['sandbox_extproc.outcome']).toBe('pass');
  });

  it('marks a failed wake and its refused patch as errors, and links a request that joined it', async () => {
    let refuse!: (e: Error) => void;
    const { tracing, registry, coordinator, spans } = setup({ resume: () => new Promise((_, reject) => (refuse = reject)) });
    const route = paused();
    registry.upsert(route);
    const first = tracing.decision([header('traceparent', `00-${TRACE}-${PARENT}-01`)]);
    const held = coordinator.hold(route, 80, new AbortController().signal, first);
    const second = tracing.decision(undefined);
    coordinator.hold(route, 80, new AbortController().signal, second);
    refuse(new ResumeError('refused', 'admission webhook said no'));
    await ('result' in held ? held.result : undefined);
    tracing.decided(first, 'wake', 'sbx');
    tracing.decided(second, 'wake', 'sbx');
    const all = await spans();
    const byName = (name: string) => all.filter((s) => s.name === name);
    const wake = byName('sandbox-extproc wake')[0] as ReadableSpan;
    expect(wake.parentSpanContext?.spanId).toBe(first.spanContext().spanId);
    expect([wake.status.code, wake.attributes['sandbox_extproc.wake.outcome'], wake.attributes['sandbox_extproc.code']]).toEqual([
      SpanStatusCode.ERROR,
      'failed',
      'sandbox_wake_failed',
    ]);
    const patch = byName('sandbox-extproc wake patch')[0] as ReadableSpan;
    expect([patch.status.code, patch.status.message, patch.parentSpanContext?.spanId]).toEqual([
      SpanStatusCode.ERROR,
      'refused',
      wake.spanContext().spanId,
    ]);
    expect(byName('sandbox-extproc wake release')).toEqual([]);
    const joiner = all.find((s) => s.spanContext().spanId === second.spanContext().spanId) as ReadableSpan;
    expect(joiner.links.map((l) => l.context.spanId)).toEqual([wake.spanContext().spanId]);
  });
});
