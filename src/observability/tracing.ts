// OpenTelemetry tracing, off unless --tracing-endpoint is set: a span per decision, joined to the trace
// the request's W3C traceparent names (Envoy forwards the client's, or its own when it traces), and per
// wake a span with its phases (the resume patch, the wait for the watch to show the sandbox running,
// the release of its waiters), so a slow cold start shows in the user's own traces. Spans leave in
// batches over OTLP/HTTP (protobuf) through the official SDK and exporter.
//
// When tracing is off this module is not even loaded (App.create imports it only when tracing is on),
// and the processor and the wake coordinator hold no Tracing and skip every call behind one `undefined`
// check, so a request costs what it did before.
import {
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import type { HeaderValue } from '../protocol/messages.ts';
import type { Route } from '../routes/route.ts';
import { BUILD } from '../version.ts';
import type { Logger } from './logger.ts';

export interface TracingOptions {
  /** OTLP/HTTP base URL (http://collector:4318) or the full traces URL (.../v1/traces). */
  readonly endpoint: string;
  /** Share of traces started here (no sampled parent) that are recorded. */
  readonly sampleRatio: number;
  readonly logger: Logger;
  /** Where spans go instead of OTLP (tests of the span shapes); the endpoint is then not used. */
  readonly exporter?: SpanExporter;
}

/** A wake's spans, driven by the wake coordinator as the wake moves on. */
export interface WakeSpans {
  /** The resume patch is being sent. */
  patchStarted(): void;
  /** The patch was answered (error: why it failed). */
  patchEnded(error?: string): void;
  /** Waiting for the watch to show the sandbox running (after our patch, or a resume found under way). */
  waitStarted(): void;
  /** A request joined this wake: its decision span is linked to the wake. */
  joined(request: unknown): void;
  /** The waiters were released to the running sandbox. */
  released(waiters: number): void;
  /** The wake ended (once): woken, failed (with the code answered), timeout or abandoned. */
  end(outcome: string, code?: string): void;
}

/** What the wake coordinator needs: a wake's spans, under the request that started it. */
export interface WakeTracer {
  begin(route: Route, request: unknown): WakeSpans;
}

const headerGetter: TextMapGetter<readonly HeaderValue[]> = {
  keys: (headers) => headers.map((h) => h.key ?? ''),
  get: (headers, key) => {
    for (const h of headers) {
      if (h.key !== key) continue;
      return h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString('utf8') : h.value;
    }
    return undefined;
  },
};

/** The traces URL of an endpoint setting: a base URL gets OTLP/HTTP's /v1/traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does. */
export function tracesUrl(endpoint: string): string {
  return endpoint.endsWith('/v1/traces') ? endpoint : `${endpoint.replace(/\/+$/, '')}/v1/traces`;
}

export class Tracing implements WakeTracer {
  readonly #provider: TracerProvider;
  readonly #tracer: Tracer;
  readonly #propagator = new W3CTraceContextPropagator();

  constructor(options: TracingOptions) {
    const log = options.logger.child({ component: 'tracing' });
    // The SDK's own warnings (an export that failed, a full queue) go to our log, not the console.
    diag.setLogger(
      {
        error: (message, ...args) => log.warn({ args }, message),
        warn: (message, ...args) => log.warn({ args }, message),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
    const exporter = options.exporter ?? new OTLPTraceExporter({ url: tracesUrl(options.endpoint) });
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'sandbox-extproc', 'service.version': BUILD.version }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor({ exporter })],
    });
    this.#tracer = this.#provider.getTracer('sandbox-extproc', BUILD.version);
  }

  /** The headers a decision span's parent is read from (traceparent, tracestate). */
  get headerNames(): string[] {
    return this.#propagator.fields();
  }

  /** Starts a request's decision span, a child of the trace its traceparent names (if any). */
  decision(headers: readonly HeaderValue[] | undefined): Span {
    const parent = headers === undefined ? ROOT_CONTEXT : this.#propagator.extract(ROOT_CONTEXT, headers, headerGetter);
    return this.#tracer.startSpan('sandbox-extproc decide', { kind: SpanKind.SERVER }, parent);
  }

  /** Ends a decision span with what was decided. */
  decided(span: Span, outcome: string, sandboxId: string | undefined): void {
    if (sandboxId !== undefined) span.setAttribute('sandbox.id', sandboxId);
    span.setAttribute('sandbox_extproc.outcome', outcome);
    span.end();
  }

  begin(route: Route, request: unknown): WakeSpans {
    const tracer = this.#tracer;
    const parent = isSpan(request) ? trace.setSpan(ROOT_CONTEXT, request) : ROOT_CONTEXT;
    const wake = tracer.startSpan(
      'sandbox-extproc wake',
      { attributes: { 'sandbox.id': route.id, 'k8s.namespace.name': route.namespace, 'sandbox.kind': route.kind?.name ?? 'file' } },
      parent,
    );
    const within: Context = trace.setSpan(ROOT_CONTEXT, wake);
    let patch: Span | undefined;
    let wait: Span | undefined;
    let ended = false;
    // After end() every call is a no-op: the patch of a wake that ended first (the sandbox deleted, its
    // ID moved) is still answered later, and an ended span must not be touched again.
    return {
      patchStarted: () => {
        if (!ended) patch = tracer.startSpan('sandbox-extproc wake patch', { kind: SpanKind.CLIENT }, within);
      },
      patchEnded: (error) => {
        if (patch === undefined) return;
        if (error !== undefined) patch.setStatus({ code: SpanStatusCode.ERROR, message: error });
        patch.end();
        patch = undefined;
      },
      waitStarted: () => {
        if (!ended) wait ??= tracer.startSpan('sandbox-extproc wake watch wait', {}, within);
      },
      joined: (joining) => {
        if (isSpan(joining)) joining.addLink({ context: wake.spanContext(), attributes: { 'sandbox_extproc.link': 'joined wake' } });
      },
      released: (waiters) => {
        if (ended) return;
        wait?.end();
        wait = undefined;
        tracer.startSpan('sandbox-extproc wake release', { attributes: { 'sandbox_extproc.waiters': waiters } }, within).end();
      },
      end: (outcome, code) => {
        if (ended) return;
        ended = true;
        // A patch still unanswered is cut short: the wake no longer waits for it (its request is aborted).
        patch?.setStatus({ code: SpanStatusCode.ERROR, message: `unanswered: the wake ended first (${code ?? outcome})` });
        patch?.end();
        patch = undefined;
        wait?.end();
        wait = undefined;
        wake.setAttribute('sandbox_extproc.wake.outcome', outcome);
        if (code !== undefined) wake.setAttribute('sandbox_extproc.code', code);
        if (outcome !== 'woken') wake.setStatus({ code: SpanStatusCode.ERROR, message: code ?? outcome });
        wake.end();
      },
    };
  }

  /** Sends what is buffered now. */
  async flush(): Promise<void> {
    await this.#provider.forceFlush();
  }

  /**
   * Sends what is buffered and stops (at shutdown), for at most `limitMs`: a collector that accepts the
   * connection and never answers would otherwise hold the process for the exporter's own timeouts (10 s,
   * then the batch's 30 s), past the deadline the command gives its whole stop. Resolves `false` when the
   * limit was reached and the spans still on their way were given up.
   */
  async shutdown(limitMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), limitMs);
    });
    try {
      return await Promise.race([this.#provider.shutdown().then(() => true as const), limit]);
    } finally {
      clearTimeout(timer);
    }
  }
}

function isSpan(value: unknown): value is Span {
  return typeof value === 'object' && value !== null && typeof (value as Span).spanContext === 'function';
}
