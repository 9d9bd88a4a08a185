// Keep-awake and agent-sandbox (issue 23 item 8): agent-sandbox has no idle suspension (nothing in
// v1.0.1 suspends a Sandbox for being idle; issue 26 will add one), so nothing would read a record of
// activity, and each write would cost its controller a full reconcile. The service therefore writes
// none: however a sandbox is used (requests, a websocket held open that only Envoy's periodic access
// log entries report), it notes the use and patches nothing. In the same process the same traffic to
// an OpenKruise sandbox with a pause timer does get its timer pushed: keep-awake is on and writing,
// just not for this family. On the real stack (agent-sandbox's and OpenKruise's own controllers, kwok
// pods, real Envoy); writes counted from the API server's audit log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Route } from '../../src/routes/route.ts';
import { AS_GROUP, podIPOf, type AgentSandboxes } from '../support/agent-sandbox.ts';
import { SERVICE_USER, isActivityRecord, type AuditEvent } from '../support/controlplane.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { startStack, type Stack } from '../support/stack.ts';

const NS = 'default';
const LAST_ACTIVITY = 'sandbox-extproc.io/last-activity';
/** Envoy logs open requests every second instead of every 30 s, so a silent websocket is reported often. */
const fastFlush = (yaml: string) => {
  if (!yaml.includes('access_log_flush_interval: 30s')) throw new Error('envoy.yaml: the access log flush interval moved');
  return yaml.replace('access_log_flush_interval: 30s', 'access_log_flush_interval: 1s');
};
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
let stack: Stack;
let agents: AgentSandboxes;
/** Every activity the service noted, by sandbox ID, and who waits for the next. */
const noted = new Map<string, number>();
const onNote = new Set<() => void>();

beforeAll(async () => {
  stack = await startStack({
    kinds: ['openkruise', 'agent-sandbox'],
    namespaces: [NS],
    agentSandboxes: [
      { namespace: NS, name: 'used', wake: true },
      { namespace: NS, name: 'terminal', wake: true },
      { namespace: NS, name: 'plain' },
    ],
    // A write at most every second per sandbox: any write this traffic could cause would be made.
    serviceArgs: ['--activity-min-interval', '1s'],
    envoy: { transform: fastFlush },
  });
  agents = stack.agent as AgentSandboxes;
  for (const name of ['used', 'terminal', 'plain'])
    await waitForRoute(stack.service.app.registry, `${NS}/${name}`, (r) => r?.state === 'running');
  // Observe (and pass on) what the service notes as use: the tracker decides whether to write from it.
  const tracker = stack.service.app.activity;
  if (tracker === undefined) throw new Error('keep-awake is off in this service: nothing here would prove anything');
  const note = tracker.note.bind(tracker);
  tracker.note = (route: Route) => {
    noted.set(route.id, (noted.get(route.id) ?? 0) + 1);
    for (const listener of onNote) listener();
    note(route);
  };
});

afterAll(async () => {
  await stack?.stop();
});

/** Resolves once the service has noted `count` uses of the sandbox in all. */
function notedAtLeast(id: string, count: number, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if ((noted.get(id) ?? 0) < count) return;
      clearTimeout(timer);
      onNote.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      onNote.delete(check);
      reject(new Error(`${id}: ${noted.get(id) ?? 0} uses noted, not ${count}, within ${timeoutMs} ms`));
    }, timeoutMs);
    onNote.add(check);
    check();
  });
}

/** Every patch of a sandbox by the service (an activity record or any other) the API server applied. */
const patchesBy = (name: string, group: string) =>
  stack.plane.auditEvents(
    (e: AuditEvent) =>
      e.verb === 'patch' &&
      e.objectRef?.name === name &&
      e.objectRef.apiGroup === group &&
      e.user.username === SERVICE_USER &&
      (e.responseStatus?.code ?? 0) < 300,
  );

describe('agent-sandbox keep-awake', () => {
  it('notes every use of a sandbox, requests and a websocket held open, and writes nothing to it; an OpenKruise timer is pushed meanwhile', async () => {
    // The control: an OpenKruise sandbox whose pause timer (legacy opt-in, 300 s pause timeout) has 20 s
    // left, below half its timeout: the first request to it pushes the timer.
    const pauseTime = rfc3339(Date.now() + 20_000);
    await stack.openkruise.create({ namespace: NS, name: 'control', wake: { by: 'annotation', pauseTimeoutSeconds: 300 }, pauseTime });
    await waitForRoute(stack.service.app.registry, `${NS}--control`, (r) => r?.state === 'running');

    // Requests: the first one alone would have written a record (there was none).
    for (let i = 0; i < 20; i += 1) expect((await stack.getAgent(NS, 'used')).status).toBe(200);
    await notedAtLeast(`${NS}/used`, 20);

    // A websocket, silent after its first message: only Envoy's access log entries (every second)
    // report it while it is open. Three of them noted means the service saw it in use for seconds.
    const socket = new WebSocket(`ws://127.0.0.1:${stack.envoy.port}/`, {
      headers: { 'x-sandbox-id': 'terminal', 'x-sandbox-namespace': NS, 'x-sandbox-port': String(stack.pool.port) },
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    const echoed = new Promise<string>((resolve) => socket.once('message', (data) => resolve(data.toString())));
    socket.send('hello');
    expect(await echoed).toBe(`${podIPOf(await agents.get(NS, 'terminal'))}:hello`);
    const forwarded = noted.get(`${NS}/terminal`) ?? 0;
    await notedAtLeast(`${NS}/terminal`, forwarded + 3);
    expect(socket.readyState).toBe(WebSocket.OPEN);
    socket.close();

    // The control's timer pushed by the same service, through the same writer.
    expect((await stack.get(`${NS}--control`)).status).toBe(200);
    await stack.plane.waitForAudit(
      (e) =>
        e.verb === 'patch' &&
        e.objectRef?.name === 'control' &&
        e.user.username === SERVICE_USER &&
        isActivityRecord(e) &&
        (e.responseStatus?.code ?? 0) < 300,
      15_000,
      'the activity write pushing control',
    );
    expect(Date.parse((await stack.openkruise.get(NS, 'control')).spec?.pauseTime ?? '')).toBeGreaterThan(Date.parse(pauseTime));

    // Nothing written to the agent-sandbox ones: the barrier lets every request answered so far reach the log.
    await stack.plane.auditBarrier();
    for (const name of ['used', 'terminal']) {
      expect(patchesBy(name, AS_GROUP)).toEqual([]);
      expect((await agents.get(NS, name)).metadata.annotations?.[LAST_ACTIVITY]).toBeUndefined();
    }
  });

  it('writes nothing for a sandbox that did not opt in to wake either', async () => {
    for (let i = 0; i < 5; i += 1) expect((await stack.getAgent(NS, 'plain')).status).toBe(200);
    await notedAtLeast(`${NS}/plain`, 5);
    await stack.plane.auditBarrier();
    expect(patchesBy('plain', AS_GROUP)).toEqual([]);
    expect((await agents.get(NS, 'plain')).metadata.annotations?.[LAST_ACTIVITY]).toBeUndefined();
  });
});
