// The resumer's retry rules over real HTTP, through client-node, against a local server that answers
// scripted statuses: a fault injector for answers a healthy kube-apiserver will not give on demand
// (429, 5xx, 409). The happy path and "unreachable" run against the real API server in the
// integration suites (wake.test.ts, faults.test.ts).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createOpenKruiseKind } from '../../../src/sandbox-kinds/openkruise.ts';

const openKruiseSandbox = createOpenKruiseKind();
import { KubernetesResumer, ResumeError } from '../../../src/wake/resumer.ts';
import { makeRoute } from '../../support/routes.ts';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly contentType: string;
  readonly body: unknown;
}

let server: Server | undefined;

/** Answers each request with the next scripted status (the last one repeats); records what it got. */
async function scripted(
  statuses: readonly number[],
  extra: Record<string, unknown> = {},
): Promise<{ kubeConfig: KubeConfig; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        contentType: String(req.headers['content-type']),
        body: JSON.parse(Buffer.concat(chunks).toString() || 'null'),
      });
      const status = statuses[Math.min(seen.length, statuses.length) - 1] as number;
      const body =
        status === 200
          ? { apiVersion: 'agents.kruise.io/v1alpha1', kind: 'Sandbox', metadata: { name: 'sbx', namespace: 'ns' } }
          : { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `scripted ${status}`, code: status, ...extra };
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'resumer-test' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return { kubeConfig, seen };
}

afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

const route = makeRoute({ id: 'sbx', namespace: 'ns', name: 'sbx', kind: openKruiseSandbox });

describe('KubernetesResumer retries', () => {
  it('retries throttling, server errors and conflicts, then succeeds with one merge patch body', async () => {
    const { kubeConfig, seen } = await scripted([429, 503, 409, 500, 200]);
    await new KubernetesResumer(kubeConfig).resume(route, new AbortController().signal);
    expect(seen).toHaveLength(5);
    for (const request of seen) {
      expect(request).toEqual({
        method: 'PATCH',
        url: '/apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxes/sbx',
        contentType: 'application/merge-patch+json',
        body: { metadata: { uid: 'uid-1' }, spec: { paused: false } },
      });
    }
  });

  it.each([403, 404, 422])('gives up at once on %i: retrying cannot help', async (status) => {
    const { kubeConfig, seen } = await scripted([status]);
    const resume = new KubernetesResumer(kubeConfig).resume(route, new AbortController().signal);
    await expect(resume).rejects.toThrow(ResumeError);
    await expect(resume).rejects.toThrow(/resume patch refused/);
    expect(seen).toHaveLength(1);
  });

  it('fails at once, as replaced, when the UID precondition fails (the name belongs to a recreated object)', async () => {
    const { kubeConfig, seen } = await scripted([422], {
      details: { causes: [{ reason: 'FieldValueInvalid', message: 'field is immutable', field: 'metadata.uid' }] },
    });
    const failure = await new KubernetesResumer(kubeConfig).resume(route, new AbortController().signal).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ResumeError);
    expect((failure as ResumeError).failure).toBe('replaced');
    expect(seen).toHaveLength(1);
  });

  it('first writer wins: after a 409 it waits for the newer version and stops when someone else resumed it', async () => {
    const { kubeConfig, seen } = await scripted([409]);
    const outcomes: string[] = [];
    const observed = {
      awaitNewer: async (uid: string, version: string) =>
        makeRoute({ ...route, uid, resourceVersion: `${version}1`, pauseRequested: false }),
    };
    await new KubernetesResumer(kubeConfig, (o) => outcomes.push(o), observed).resume(
      makeRoute({ ...route, resourceVersion: '7', kind: route.kind }),
      new AbortController().signal,
    );
    expect(seen).toHaveLength(1);
    expect((seen[0]?.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion).toBe('7');
    expect(outcomes).toEqual(['conflict', 'superseded']);
  });

  it('after a 409 for an object still paused, patches again from the newer version', async () => {
    const { kubeConfig, seen } = await scripted([409, 200]);
    const observed = { awaitNewer: async () => makeRoute({ ...route, resourceVersion: '8', pauseRequested: true }) };
    await new KubernetesResumer(kubeConfig, () => undefined, observed).resume(
      makeRoute({ ...route, resourceVersion: '7' }),
      new AbortController().signal,
    );
    expect(seen.map((r) => (r.body as { metadata: { resourceVersion: string } }).metadata.resourceVersion)).toEqual(['7', '8']);
  });

  it('after a 409 for an object now gone, fails as replaced', async () => {
    const { kubeConfig } = await scripted([409]);
    const observed = { awaitNewer: async () => undefined };
    const failure = await new KubernetesResumer(kubeConfig, () => undefined, observed)
      .resume(makeRoute({ ...route, resourceVersion: '7' }), new AbortController().signal)
      .catch((e: unknown) => e);
    expect((failure as ResumeError).failure).toBe('replaced');
  });

  it('keeps retrying server errors until the deadline, then fails naming the last error', async () => {
    const { kubeConfig, seen } = await scripted([500]);
    const resume = new KubernetesResumer(kubeConfig).resume(route, AbortSignal.timeout(400));
    await expect(resume).rejects.toThrow(/resume patch failed until the deadline/);
    // Backoff starts at 50 ms and doubles (with jitter): several attempts fit in 400 ms, not hundreds.
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.length).toBeLessThan(20);
  });
});
