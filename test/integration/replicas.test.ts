// Two replicas of the service behind one Envoy deployment receive requests for the same paused sandbox
// at the same moment, through the real API server, with OpenKruise's own controller resuming it (a new
// pod from kwok: phase Running with Ready=False first, then Ready): the sandbox is resumed by exactly
// one applied patch (counted from the API server's audit log: patches it answered 2xx; a patch refused
// because another replica's went first changed nothing), and every request on either replica is served,
// at the address the controller reports for the new pod.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVICE_USER, type AuditEvent } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { isRunning, podIP } from '../support/openkruise.ts';
import { untilWaiting, waitForRoute } from '../support/registry-events.ts';
import { startService, type RunningService } from '../support/service.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'replicas';
let stack: Stack;
let second: RunningService;

beforeAll(async () => {
  stack = await startStack({
    namespaces: [NS],
    serviceArgs: ['--wake-timeout', '20s'],
    // Its pods turn Ready 500 ms after they start: both replicas hold requests through the whole resume.
    sandboxes: [{ namespace: NS, name: 'shared', paused: true, wake: { by: 'policy' }, readyDelay: '500ms' }],
  });
  // The same ServiceAccount: two replicas of one Deployment.
  second = await startService(['--kubeconfig', stack.kubeconfig, '--namespaces', NS, '--wake-timeout', '20s']);
  for (const replica of [stack.service, second]) {
    await waitForRoute(replica.app.registry, `${NS}--shared`, (r) => r?.state === 'paused' && !r.pausing);
  }
});

afterAll(async () => {
  await second?.stop();
  await stack?.stop();
});

describe('two replicas waking one sandbox', () => {
  it('resume it with one applied patch and serve every request on both', async () => {
    const id = `${NS}--shared`;
    const clients = [stack.service, second].map((r) => new ExtProcClient(`127.0.0.1:${r.listening.grpcPort}`));
    // Both replicas hold requests before either patch lands: they race for the resume.
    const joined = [stack.service, second].map((r) => untilWaiting(r.app.wakes!, (n) => n > 0));
    const exchanges = clients.flatMap((client) =>
      Array.from({ length: 25 }, () =>
        client.exchange([{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }], {
          closeAfter: 2,
        }),
      ),
    );
    const results = await Promise.all(exchanges).finally(() => {
      for (const c of clients) c.close();
    });
    await Promise.all(joined);
    // Every request on either replica is forwarded to the pod the controller brought up for the resume.
    const serving = podIP(await stack.openkruise.waitFor(NS, 'shared', isRunning, 30_000, 'running'));
    const forwarded = results.filter((r) => JSON.stringify(r.responses.at(-1)?.dynamic_metadata).includes(`"${serving}:`));
    expect(forwarded, JSON.stringify(results.map((r) => r.responses.at(-1)))).toHaveLength(50);
    await stack.plane.auditBarrier();
    const patches = stack.plane.auditEvents(
      (e: AuditEvent) =>
        e.verb === 'patch' && e.objectRef?.name === 'shared' && e.objectRef.subresource === undefined && e.user.username === SERVICE_USER,
    );
    const applied = patches.filter((e) => (e.responseStatus?.code ?? 0) < 300);
    expect(
      applied.map((e) => e.responseStatus?.code),
      `every patch the replicas sent: ${patches.map((e) => e.responseStatus?.code).join(', ')}`,
    ).toEqual([200]);
  });
});
