// The list-watch loop's own decisions (src/routes/kubernetes-source.ts), at unit level: a watch that
// answers 410 Gone is followed by a relist, any other watch error by a re-watch from the last version
// applied. The API calls are scripted through the source's `api` seam, because a unit test has no API
// server; the same loop runs against the real kube-apiserver and etcd in
// test/integration/kubernetes-routing.test.ts (a compaction makes the real 410) and
// kubernetes-source.test.ts. The script answers as the real client does: a watch ends with onDone once
// its controller is aborted, and an ERROR event carries a metav1.Status.
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { KubernetesRouteSource, type ListPage, type ListRequest, type SandboxApi } from '../../../src/routes/kubernetes-source.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import { RouteScreen } from '../../../src/routes/screen.ts';
import { UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';
import { createOpenKruiseKind } from '../../../src/sandbox-kinds/openkruise.ts';

const NS = 'team';

function sandbox(name: string, resourceVersion: string, podIP: string): unknown {
  return {
    metadata: { name, namespace: NS, uid: `uid-${name}`, resourceVersion },
    spec: { paused: false },
    status: { phase: 'Running', podInfo: { podIP }, conditions: [{ type: 'Ready', status: 'True' }] },
  };
}

/** A list call the test answers. */
interface ListCall {
  readonly kind: 'list';
  readonly request: ListRequest;
  answer(page: ListPage): void;
}

/** A watch the test drives: it emits events and ends the way the real client's does. */
interface WatchCall {
  readonly kind: 'watch';
  readonly path: string;
  readonly query: Record<string, unknown>;
  event(type: string, object: unknown): void;
}

type Call = ListCall | WatchCall;

/** The calls the loop makes, taken by the test in order (a promise per call, no polling). */
class Calls {
  readonly #held: Call[] = [];
  readonly #waiting: ((call: Call) => void)[] = [];
  readonly #unanswered = new Set<(error: Error) => void>();
  push(call: Call): void {
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter(call);
    else this.#held.push(call);
  }
  next(): Promise<Call> {
    const held = this.#held.shift();
    if (held !== undefined) return Promise.resolve(held);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }
  async list(): Promise<ListCall> {
    const call = await this.next();
    expect(call.kind, 'the next call').toBe('list');
    return call as ListCall;
  }
  async watch(): Promise<WatchCall> {
    const call = await this.next();
    expect(call.kind, 'the next call').toBe('watch');
    return call as WatchCall;
  }
  /** A list call left unanswered fails when the test ends, as a real one would once the server is gone. */
  track(reject: (error: Error) => void): void {
    this.#unanswered.add(reject);
  }
  settle(reject: (error: Error) => void): void {
    this.#unanswered.delete(reject);
  }
  failUnanswered(): void {
    for (const reject of this.#unanswered) reject(new Error('the test ended'));
  }
  get pending(): number {
    return this.#held.length;
  }
}

function scriptedApi() {
  const calls = new Calls();
  const api: SandboxApi = {
    list: (request) =>
      new Promise((resolve, reject) => {
        calls.track(reject);
        calls.push({
          kind: 'list',
          request,
          answer: (page) => {
            calls.settle(reject);
            resolve(page);
          },
        });
      }),
    watch: (path, query, onEvent, onDone) => {
      const controller = new AbortController();
      let done = false;
      // The real client calls done once, after its controller aborts (with the abort's error).
      controller.signal.addEventListener('abort', () => {
        if (!done) {
          done = true;
          onDone(new DOMException('This operation was aborted', 'AbortError'));
        }
      });
      calls.push({ kind: 'watch', path, query, event: (type, object) => (done ? undefined : onEvent(type, object)) });
      return Promise.resolve(controller);
    },
  };
  stops.push(async () => calls.failUnanswered());
  return { api, calls };
}

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

function startSource(api: SandboxApi) {
  const registry = new RouteRegistry();
  const metrics = createMetrics(() => registry.countByState());
  const logger = createLogger('silent');
  const source = new KubernetesRouteSource({
    // Never used: every call goes through the scripted api.
    kubeConfig: new KubeConfig(),
    api,
    kind: createOpenKruiseKind(),
    namespaces: [NS],
    labelSelector: '',
    resyncIntervalMs: 3_600_000,
    watchIdleTimeoutMs: 60_000,
    registry,
    screen: new RouteScreen(new UpstreamAddressPolicy(), logger),
    logger,
    metrics,
  });
  source.start();
  stops.push(() => source.stop());
  const restarts = async () => (await metrics.registry.getSingleMetric('sandbox_extproc_watch_restarts_total')?.get())?.values ?? [];
  return { registry, restarts };
}

describe('the watch loop', () => {
  it('relists after a 410 Gone, keeping the routes it has until the new list replaces them', async () => {
    const { api, calls } = scriptedApi();
    const { registry, restarts } = startSource(api);

    const first = await calls.list();
    expect(first.request).toMatchObject({ group: 'agents.kruise.io', version: 'v1alpha1', plural: 'sandboxes', namespace: NS });
    first.answer({ items: [sandbox('a', '5', '10.0.0.1'), sandbox('b', '6', '10.0.0.2')], metadata: { resourceVersion: '10' } });

    const watch = await calls.watch();
    expect(watch.path).toBe(`/apis/agents.kruise.io/v1alpha1/namespaces/${NS}/sandboxes`);
    expect(watch.query).toMatchObject({ resourceVersion: '10', allowWatchBookmarks: true });
    watch.event('MODIFIED', sandbox('a', '11', '10.0.0.3'));
    expect(registry.get(`${NS}--a`)?.podIP).toBe('10.0.0.3');
    watch.event('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410 });

    // A relist, not a re-watch from a version the server no longer has; the routes stay meanwhile.
    const relist = await calls.list();
    expect(registry.get(`${NS}--a`)?.podIP).toBe('10.0.0.3');
    expect(registry.get(`${NS}--b`)?.state).toBe('running');
    expect(await restarts()).toContainEqual(expect.objectContaining({ labels: { reason: 'expired' }, value: 1 }));
    // b was deleted while the history was compacted away: only the list can say so.
    relist.answer({ items: [sandbox('a', '12', '10.0.0.4')], metadata: { resourceVersion: '20' } });

    const rewatch = await calls.watch();
    expect(rewatch.query).toMatchObject({ resourceVersion: '20' });
    expect(registry.get(`${NS}--a`)?.podIP).toBe('10.0.0.4');
    expect(registry.get(`${NS}--b`)).toBeUndefined();
    expect(calls.pending).toBe(0);
  });

  it.each([
    ['a 500', { kind: 'Status', status: 'Failure', reason: 'InternalError', code: 500 }],
    ['a Status without a code', { kind: 'Status', status: 'Failure' }],
  ])('re-watches after %s, from the last version applied, without relisting', async (_what, status) => {
    const { api, calls } = scriptedApi();
    const { registry, restarts } = startSource(api);

    (await calls.list()).answer({ items: [sandbox('a', '5', '10.0.0.1')], metadata: { resourceVersion: '10' } });
    const watch = await calls.watch();
    watch.event('MODIFIED', sandbox('a', '11', '10.0.0.3'));
    watch.event('BOOKMARK', { kind: 'Sandbox', metadata: { resourceVersion: '15' } });
    watch.event('ERROR', status);

    const rewatch = await calls.watch();
    expect(rewatch.query).toMatchObject({ resourceVersion: '15' });
    expect(calls.pending).toBe(0);
    expect(registry.get(`${NS}--a`)?.podIP).toBe('10.0.0.3');
    expect(await restarts()).toContainEqual(expect.objectContaining({ labels: { reason: 'error' }, value: 1 }));
    expect(await restarts()).not.toContainEqual(expect.objectContaining({ labels: { reason: 'expired' } }));
  });
});
