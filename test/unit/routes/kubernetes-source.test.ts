// The list-watch loop's own decisions (src/routes/kubernetes-source.ts), at unit level: a watch that
// answers 410 Gone is followed by a relist, any other watch error by a re-watch from the last version
// applied. The API calls are scripted through the source's `api` seam, because a unit test has no API
// server; the same loop runs against the real kube-apiserver and etcd in
// test/integration/kubernetes-routing.test.ts (a compaction makes the real 410) and
// kubernetes-source.test.ts. The script answers as the real client does: a watch ends with onDone once
// its controller is aborted, and an ERROR event carries a metav1.Status. A pod read a kind asks for
// (agent-sandbox after a suspension) is scripted the same way; the real read runs against the real
// controller in test/integration/agent-sandbox.test.ts.
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { KubernetesRouteSource, type ListPage, type ListRequest, type SandboxApi } from '../../../src/routes/kubernetes-source.ts';
import type { PodFacts } from '../../../src/routes/pod-check.ts';
import type { Route } from '../../../src/routes/route.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import { RouteScreen } from '../../../src/routes/screen.ts';
import { UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';
import { createAgentSandboxKind } from '../../../src/sandbox-kinds/agent-sandbox.ts';
import type { SandboxKind } from '../../../src/sandbox-kinds/kind.ts';
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

/** A pod read the test answers (facts, no such pod, or an error). */
interface PodCall {
  readonly kind: 'pod';
  readonly namespace: string;
  readonly name: string;
  answer(pod: PodFacts | undefined): void;
  fail(error: Error): void;
}

type Call = ListCall | WatchCall | PodCall;

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
  async pod(): Promise<PodCall> {
    const call = await this.next();
    expect(call.kind, 'the next call').toBe('pod');
    return call as PodCall;
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
    readPod: (namespace, name) =>
      new Promise((resolve, reject) => {
        calls.track(reject);
        calls.push({
          kind: 'pod',
          namespace,
          name,
          answer: (pod) => {
            calls.settle(reject);
            resolve(pod);
          },
          fail: (error) => {
            calls.settle(reject);
            reject(error);
          },
        });
      }),
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

function startSource(api: SandboxApi, kind: SandboxKind = createOpenKruiseKind(), podReadTimeoutMs?: number) {
  const registry = new RouteRegistry();
  const metrics = createMetrics(() => registry.countByState());
  const logger = createLogger('silent');
  const source = new KubernetesRouteSource({
    // Never used: every call goes through the scripted api.
    kubeConfig: new KubeConfig(),
    api,
    kind,
    namespaces: [NS],
    labelSelector: '',
    resyncIntervalMs: 3_600_000,
    watchIdleTimeoutMs: 60_000,
    registry,
    screen: new RouteScreen(new UpstreamAddressPolicy(), logger),
    logger,
    metrics,
    ...(podReadTimeoutMs === undefined ? {} : { podReadTimeoutMs }),
  });
  source.start();
  stops.push(() => source.stop());
  const restarts = async () => (await metrics.registry.getSingleMetric('sandbox_extproc_watch_restarts_total')?.get())?.values ?? [];
  const podChecks = async () => (await metrics.registry.getSingleMetric('sandbox_extproc_pod_checks_total')?.get())?.values ?? [];
  return { registry, restarts, podChecks };
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

// agent-sandbox's controller reuses a terminating pod when a Sandbox is resumed during its grace period
// and reports it Ready; when its status write after the deletion lost to the resume, no version of the
// Sandbox says the pod is dying. So a route that turns running after a suspension waits for a read of
// its pod (src/routes/pod-check.ts).
describe('the pod read before a resumed agent-sandbox Sandbox serves', () => {
  const ID = `${NS}/box`;
  const ready = { type: 'Ready', status: 'True', reason: 'DependenciesReady' };
  /** The kind with one version, so the loop asks no API discovery (which the script does not answer). */
  const agentSandboxKind = (): SandboxKind =>
    Object.assign(Object.create(createAgentSandboxKind()) as SandboxKind, { versions: ['v1beta1'] });
  /** An agent-sandbox Sandbox: running (Ready, with an address) unless asked to suspend. */
  function agentSandbox(resourceVersion: string, over: { mode?: string; podIP?: string; annotations?: Record<string, string> } = {}) {
    return {
      metadata: { name: 'box', namespace: NS, uid: 'uid-box', resourceVersion, annotations: over.annotations ?? {} },
      spec: { operatingMode: over.mode ?? 'Running' },
      status: { podIPs: over.podIP === '' ? undefined : [over.podIP ?? '10.0.0.5'], conditions: [ready] },
    };
  }
  /** Resolves with the next route the table holds for the ID. */
  const nextRoute = (registry: RouteRegistry) =>
    new Promise<Route | undefined>((resolve) => {
      const unsubscribe = registry.subscribe((id, route) => {
        if (id !== ID) return;
        unsubscribe();
        resolve(route);
      });
    });
  /** A source past its first list, with the sandbox seen running, then asked to suspend (the controller has not reported anything since). */
  async function resumedAfterSuspension(annotations: Record<string, string> = {}, podReadTimeoutMs?: number) {
    const { api, calls } = scriptedApi();
    const source = startSource(api, agentSandboxKind(), podReadTimeoutMs);
    (await calls.list()).answer({ items: [agentSandbox('5', { annotations })], metadata: { resourceVersion: '5' } });
    const watch = await calls.watch();
    expect(source.registry.get(ID)?.state).toBe('running');
    watch.event('MODIFIED', agentSandbox('6', { mode: 'Suspended', annotations }));
    expect(source.registry.get(ID)?.state).toBe('paused');
    // The resume lands before the controller's status write: the old status still reports Ready.
    watch.event('MODIFIED', agentSandbox('7', { annotations }));
    return { ...source, calls, watch };
  }

  it('holds the route as a resume under way while the pod is read, then serves it when the pod serves at that address', async () => {
    const { registry, calls, podChecks } = await resumedAfterSuspension();
    expect(registry.get(ID)).toMatchObject({ state: 'creating', podIP: '', resuming: true, resourceVersion: '7' });
    const read = await calls.pod();
    expect(read).toMatchObject({ namespace: NS, name: 'box' });
    const changed = nextRoute(registry);
    read.answer({ ip: '10.0.0.5', terminating: false });
    expect(await changed).toMatchObject({ state: 'running', podIP: '10.0.0.5', drainingIP: '', resourceVersion: '7' });
    expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome: 'serving' }, value: 1 }));
  });

  it('keeps the address of a terminating pod unserved, until the controller reports no address and then a new pod', async () => {
    const { registry, calls, watch, podChecks } = await resumedAfterSuspension();
    const read = await calls.pod();
    const changed = nextRoute(registry);
    read.answer({ ip: '10.0.0.5', terminating: true });
    expect(await changed).toMatchObject({ state: 'creating', podIP: '', drainingIP: '10.0.0.5', resuming: true });
    expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome: 'terminating' }, value: 1 }));
    // The controller reuses the dying pod and reports it Ready: still draining, no new read.
    watch.event('MODIFIED', agentSandbox('8'));
    expect(registry.get(ID)).toMatchObject({ state: 'creating', drainingIP: '10.0.0.5' });
    // The pod is gone (no address reported); then the new pod, here at the same address handed out
    // again, turns Ready: served with no read (it cannot be the deleted pod).
    watch.event('MODIFIED', agentSandbox('9', { podIP: '' }));
    expect(registry.get(ID)).toMatchObject({ state: 'creating', drainingIP: '', suspendedIP: '', resuming: true });
    watch.event('MODIFIED', agentSandbox('10'));
    expect(registry.get(ID)).toMatchObject({ state: 'running', podIP: '10.0.0.5', resourceVersion: '10' });
    expect(calls.pending).toBe(0);
  });

  it.each([
    ['gone', undefined],
    ['other_address', { ip: '10.0.0.9', terminating: false }],
  ] as const)(
    'holds the route when the pod is %s (a stale report), and reads again on the next report, even of the same address',
    async (outcome, pod) => {
      const { registry, calls, watch, podChecks } = await resumedAfterSuspension();
      const read = await calls.pod();
      const changed = nextRoute(registry);
      read.answer(pod);
      expect(await changed).toMatchObject({ state: 'creating', podIP: '', drainingIP: '', resuming: true, resourceVersion: '7' });
      expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome }, value: 1 }));
      watch.event('MODIFIED', agentSandbox('8'));
      expect(registry.get(ID)?.state).toBe('creating');
      const again = await calls.pod();
      const served = nextRoute(registry);
      again.answer({ ip: '10.0.0.5', terminating: false });
      expect(await served).toMatchObject({ state: 'running', podIP: '10.0.0.5', resourceVersion: '8' });
    },
  );

  it('serves as reported, logging an error, when the identity may not read pods (RBAC without get pods)', async () => {
    const { registry, calls, podChecks } = await resumedAfterSuspension();
    const changed = nextRoute(registry);
    (await calls.pod()).fail(Object.assign(new Error('pods "box" is forbidden'), { code: 403 }));
    expect(await changed).toMatchObject({ state: 'running', podIP: '10.0.0.5' });
    expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome: 'forbidden' }, value: 1 }));
    expect(calls.pending).toBe(0);
  });

  it('counts a read that does not answer in time as failed, and reads again', async () => {
    const { registry, calls, podChecks } = await resumedAfterSuspension({}, 50);
    const stalled = await calls.pod();
    const retry = await calls.pod();
    expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome: 'error' }, value: 1 }));
    expect(registry.get(ID)?.state).toBe('creating');
    // The late answer of the first read changes nothing; the retry's decides.
    stalled.answer({ ip: '10.0.0.5', terminating: true });
    await Promise.resolve();
    expect(registry.get(ID)).toMatchObject({ state: 'creating', drainingIP: '' });
    const changed = nextRoute(registry);
    retry.answer({ ip: '10.0.0.5', terminating: false });
    expect((await changed)?.state).toBe('running');
  });

  it('keeps a route held through a relist: the same version keeps its read, a newer one is read again', async () => {
    const { registry, calls, watch } = await resumedAfterSuspension();
    const first = await calls.pod();
    watch.event('ERROR', { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });
    (await calls.list()).answer({ items: [agentSandbox('7')], metadata: { resourceVersion: '7' } });
    const rewatch = await calls.watch();
    expect(registry.get(ID)).toMatchObject({ state: 'creating', resourceVersion: '7' });
    expect(calls.pending).toBe(0);
    const changed = nextRoute(registry);
    // Gone: a stale report, held, still suspect.
    first.answer(undefined);
    expect(await changed).toMatchObject({ state: 'creating', suspendedIP: '10.0.0.5', resourceVersion: '7' });
    // Relisted at a newer version that still reports that address: held, and read again.
    rewatch.event('ERROR', { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });
    (await calls.list()).answer({ items: [agentSandbox('8')], metadata: { resourceVersion: '8' } });
    // The read starts with the relist, before the watch resumes.
    const reread = await calls.pod();
    await calls.watch();
    expect(registry.get(ID)).toMatchObject({ state: 'creating', resourceVersion: '8' });
    const served = nextRoute(registry);
    reread.answer({ ip: '10.0.0.5', terminating: false });
    expect(await served).toMatchObject({ state: 'running', suspendedIP: '', resourceVersion: '8' });
  });

  it('serves a relisted route at once when the route held before was not suspect', async () => {
    const { api, calls } = scriptedApi();
    const { registry } = startSource(api, agentSandboxKind());
    (await calls.list()).answer({ items: [agentSandbox('5')], metadata: { resourceVersion: '5' } });
    const watch = await calls.watch();
    watch.event('ERROR', { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });
    (await calls.list()).answer({ items: [agentSandbox('6')], metadata: { resourceVersion: '6' } });
    await calls.watch();
    expect(registry.get(ID)).toMatchObject({ state: 'running', resourceVersion: '6' });
    expect(calls.pending).toBe(0);
  });

  it('reads the pod the controller tracks in its pod-name annotation (a warm-pool pod adopted)', async () => {
    const { calls } = await resumedAfterSuspension({ 'agents.x-k8s.io/pod-name': 'pool-abc12' });
    expect(await calls.pod()).toMatchObject({ namespace: NS, name: 'pool-abc12' });
  });

  it('lets a newer observation decide when it arrives while the read is pending', async () => {
    const { registry, calls, watch } = await resumedAfterSuspension();
    const first = await calls.pod();
    // Asked to suspend again before the read answers: the answer no longer applies.
    watch.event('MODIFIED', agentSandbox('8', { mode: 'Suspended' }));
    first.answer({ ip: '10.0.0.5', terminating: false });
    await Promise.resolve();
    expect(registry.get(ID)).toMatchObject({ state: 'paused', resourceVersion: '8' });
  });

  it('retries a failed read for as long as the route is held, never serving meanwhile', async () => {
    const { registry, calls, podChecks } = await resumedAfterSuspension();
    (await calls.pod()).fail(Object.assign(new Error('Service Unavailable'), { code: 503 }));
    const retry = await calls.pod();
    expect(registry.get(ID)?.state).toBe('creating');
    expect(await podChecks()).toContainEqual(expect.objectContaining({ labels: { outcome: 'error' }, value: 1 }));
    const changed = nextRoute(registry);
    retry.answer({ ip: '10.0.0.5', terminating: false });
    expect((await changed)?.state).toBe('running');
  });

  it('reads no pod for a sandbox that turns Ready without a suspension before', async () => {
    const { api, calls } = scriptedApi();
    const { registry } = startSource(api, agentSandboxKind());
    (await calls.list()).answer({ items: [], metadata: { resourceVersion: '5' } });
    const watch = await calls.watch();
    watch.event('ADDED', {
      ...agentSandbox('6', { podIP: '' }),
      status: { conditions: [{ type: 'Ready', status: 'False', reason: 'DependenciesNotReady' }] },
    });
    expect(registry.get(ID)?.state).toBe('creating');
    watch.event('MODIFIED', agentSandbox('7'));
    expect(registry.get(ID)?.state).toBe('running');
    expect(calls.pending).toBe(0);
  });
});
