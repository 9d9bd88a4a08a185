// OpenTelemetry tracing against a real OTLP receiver (issue 28): the OpenTelemetry Collector, built from
// its Go modules with only its OTLP receiver and file exporter (test/otelcol, scripts/provision.sh
// otelcol), receives the service's spans over OTLP/HTTP and writes them as OTLP JSON. A request through
// the real Envoy carries the client's W3C traceparent; the service's decision span must join that
// trace, and the wake it starts must show its phases (patch, watch wait, release) under it.
import { mkdtempSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRACING_STOP_MS } from '../../src/app.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { httpGet } from '../support/http.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { freePort } from '../support/ports.ts';
import { TestProcess } from '../support/process.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';
import { toolPath } from '../support/tools.ts';
import { startUpstream, type Upstream } from '../support/upstream.ts';

const NS = 'traced';
let stack: Stack;
let collector: TestProcess;
let spansFile: string;

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number };
}

/** The OpenTelemetry Collector on a free port, writing what it receives to `spansFile`. */
async function startCollector(spansFile: string): Promise<{ collector: TestProcess; port: number }> {
  const dir = dirname(spansFile);
  const port = await freePort();
  writeFileSync(
    join(dir, 'config.yaml'),
    JSON.stringify({
      receivers: { otlp: { protocols: { http: { endpoint: `127.0.0.1:${port}` } } } },
      exporters: { file: { path: spansFile, flush_interval: '100ms' } },
      service: {
        pipelines: { traces: { receivers: ['otlp'], exporters: ['file'] } },
        // No internal metrics listener (it would take port 8888 on a shared machine).
        telemetry: { metrics: { level: 'none' } },
      },
    }),
  );
  const collector = new TestProcess('otelcol', toolPath('SBX_OTELCOL'), ['--config', join(dir, 'config.yaml')]);
  await collector.waitForLine(/Everything is ready/, 30_000);
  return { collector, port };
}

beforeAll(async () => {
  spansFile = join(mkdtempSync(join(tmpdir(), 'sbx-otelcol-')), 'spans.jsonl');
  const started = await startCollector(spansFile);
  collector = started.collector;
  const port = started.port;
  stack = await startStack({
    namespaces: [NS],
    serviceArgs: ['--wake-timeout', '20s', '--tracing-endpoint', `http://127.0.0.1:${port}`],
    envoy: { messageTimeout: '1s', maxMessageTimeout: '300s' },
  });
});

afterAll(async () => {
  await stack?.stop();
  await collector?.stop(5000);
});

/** The spans the collector wrote, once `done` holds for them: read again on each change to its file. */
function spans(done: (all: OtlpSpan[]) => boolean): Promise<OtlpSpan[]> {
  const read = (): OtlpSpan[] => {
    let text: string;
    try {
      text = readFileSync(spansFile, 'utf8');
    } catch {
      return []; // not written yet
    }
    return text
      .split('\n')
      .filter((l) => l !== '')
      .flatMap((l) => (JSON.parse(l) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }).resourceSpans)
      .flatMap((r) => r.scopeSpans.flatMap((s) => s.spans));
  };
  return new Promise((resolve, reject) => {
    const check = () => {
      const all = read();
      if (!done(all)) return false;
      watcher.close();
      clearTimeout(timer);
      resolve(all);
      return true;
    };
    // The file exporter appends a line per batch: each write is a change event on its directory.
    const watcher = watch(dirname(spansFile), () => void check());
    const timer = setTimeout(() => {
      watcher.close();
      reject(
        new Error(
          `spans not received within 15 s; got ${
            read()
              .map((x) => x.name)
              .join(', ') || 'none'
          }`,
        ),
      );
    }, 15_000);
    check();
  });
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes?.find((a) => a.key === key)?.value;
  return value === undefined ? undefined : Object.values(value)[0];
};

describe('tracing', () => {
  it('joins the client’s trace: a decision span under its traceparent, and the wake’s patch, watch wait and release under it', async () => {
    await stack.openkruise.create({ namespace: NS, name: 'sleepy', wake: { by: 'policy' }, paused: true, readyDelay: '1s' });
    const id = `${NS}--sleepy`;
    await waitForRoute(stack.service.app.registry, id, (r) => r?.state === 'paused' && !r.pausing);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    const res = await stack.get(id, { traceparent: `00-${traceId}-${parentId}-01` });
    expect(res.status, res.body).toBe(200);
    const unknown = await stack.get(`${NS}--nobody`, { traceparent: `00-${traceId}-${parentId}-01` });
    expect(unknown.status).toBe(502);
    // Spans leave in batches; stopping the service sends the rest (its shutdown flushes them).
    await stack.service.stop();

    const all = await spans(
      (s) => s.filter((x) => x.name === 'sandbox-extproc decide').length >= 2 && s.some((x) => x.name === 'sandbox-extproc wake'),
    );
    const decisions = all.filter((s) => s.name === 'sandbox-extproc decide');
    const woken = decisions.find((s) => attr(s, 'sandbox.id') === id);
    expect(woken).toBeDefined();
    expect([woken?.traceId, woken?.parentSpanId, attr(woken as OtlpSpan, 'sandbox_extproc.outcome')]).toEqual([traceId, parentId, 'wake']);
    const refused = decisions.find((s) => attr(s, 'sandbox.id') === `${NS}--nobody`);
    expect([refused?.traceId, refused?.parentSpanId, attr(refused as OtlpSpan, 'sandbox_extproc.outcome')]).toEqual([
      traceId,
      parentId,
      'sandbox_not_found',
    ]);

    const wake = all.find((s) => s.name === 'sandbox-extproc wake') as OtlpSpan;
    expect([wake.traceId, wake.parentSpanId, attr(wake, 'sandbox_extproc.wake.outcome')]).toEqual([traceId, woken?.spanId, 'woken']);
    const children = all.filter((s) => s.parentSpanId === wake.spanId).map((s) => s.name);
    expect(children.sort()).toEqual(['sandbox-extproc wake patch', 'sandbox-extproc wake release', 'sandbox-extproc wake watch wait']);
    const release = all.find((s) => s.name === 'sandbox-extproc wake release') as OtlpSpan;
    expect(Number(attr(release, 'sandbox_extproc.waiters'))).toBe(1);
  });
});

// The collector down or hung (docs/operations.md): spans leave off the requests' path, so the service
// answers as usual, logs the exporter's failure, and its stop gives up the last spans after its limit.
// File routes and Envoy only: the Kubernetes side plays no part in what is tested here.
describe('a collector that is down or hangs', () => {
  let upstream: Upstream;
  let routesFile: string;
  const started: { service?: RunningService; envoy?: RunningEnvoy; collector?: TestProcess }[] = [];

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbx-traced-file-'));
    routesFile = join(dir, 'routes.yaml');
    upstream = await startUpstream('sandbox-a', '127.0.0.2');
    writeFileSync(routesFile, JSON.stringify({ routes: [{ id: 'sbx-a', podIP: '127.0.0.2' }] }));
  });

  afterAll(async () => {
    for (const s of started) {
      s.collector?.child.kill('SIGCONT');
      await s.envoy?.stop();
      await s.service?.stop();
      await s.collector?.stop(5000);
    }
    await upstream?.close();
  });

  /** The service traced to `endpoint`, Envoy in front, and its log lines with a wait on them. */
  async function traced(endpoint: string) {
    const lines: string[] = [];
    const waiters = new Set<() => void>();
    const service = await startService(
      ['--route-source', 'file', '--routes-file', routesFile, '--tracing-endpoint', endpoint],
      {},
      {
        logs: (line) => {
          lines.push(line);
          for (const w of waiters) w();
        },
      },
    );
    const envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
    started.push({ service, envoy });
    const logged = (text: string, timeoutMs: number) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const line = lines.find((l) => l.includes(text));
          if (line === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(line);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no log line with "${text}" within ${timeoutMs} ms; got:\n${lines.join('')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    const get = (id: string) => httpGet(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(upstream.port) }, 10_000);
    return { service, lines, logged, get };
  }

  it('keeps answering while the collector is down, and logs the failed export', async () => {
    // Nothing listens on the endpoint: every export is refused.
    const { service, logged, get } = await traced(`http://127.0.0.1:${await freePort()}`);
    expect((await get('sbx-a')).status).toBe(200);
    expect((await get('nobody')).status).toBe(502);
    // Send the batch now rather than on the processor's schedule; it fails (and is retried) off the path.
    const flushed = (service.app.tracing as NonNullable<typeof service.app.tracing>).flush().then(
      () => 'sent',
      () => 'failed',
    );
    const first = await Promise.all([get('sbx-a'), get('nobody')]);
    expect(first.map((r) => r.status)).toEqual([200, 502]);
    const line = JSON.parse(await logged('"component":"tracing"', 30_000)) as { level: number };
    expect(line.level).toBe(40); // warn
    expect(await flushed).toBe('failed');
    expect((await get('sbx-a')).status).toBe(200);
  });

  it('keeps answering while the collector hangs, and its stop gives up the last spans after its limit', async () => {
    // The real Collector, stopped (SIGSTOP): the kernel still accepts connections, nothing answers.
    const file = join(mkdtempSync(join(tmpdir(), 'sbx-otelcol-hung-')), 'spans.jsonl');
    const { collector, port } = await startCollector(file);
    started.push({ collector });
    collector.child.kill('SIGSTOP');
    const { service, lines, get } = await traced(`http://127.0.0.1:${port}`);
    const answers = await Promise.all([get('sbx-a'), get('nobody'), get('sbx-a')]);
    expect(answers.map((r) => r.status)).toEqual([200, 502, 200]);
    // Resolves: the stop is not held by the export still waiting for an answer.
    await service.stop();
    const dropped = lines.filter((l) => l.includes('the last spans were not sent in time'));
    expect(dropped.map((l) => (JSON.parse(l) as { limitMs: number }).limitMs)).toEqual([TRACING_STOP_MS]);
  });
});
