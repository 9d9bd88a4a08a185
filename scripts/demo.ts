// `npm run demo`: the whole stack on this machine, and a walk through it in the terminal.
// A real kube-apiserver + etcd, the real Envoy, sandbox-extproc under its own least-privilege identity
// running both Sandbox families, and the families' own controllers: OpenKruise agents' (three demo
// sandboxes) and agent-sandbox's (three, one suspended by the service when idle). Their pods are kwok's (no kubelet here): each gets an address on
// loopback where a small HTTP server answers as that pod. Ctrl-C tears everything down; --once exits
// after the tour.
import { performance } from 'node:perf_hooks';
import { AgentSandboxController, AgentSandboxes, isSuspended, podIPOf } from '../test/support/agent-sandbox.ts';
import { addressesOf, Cluster, DEFAULT_POD_CIDR } from '../test/support/cluster.ts';
import { ControlPlane, SERVICE_USER } from '../test/support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../test/support/envoy.ts';
import { httpGet, type HttpResult } from '../test/support/http.ts';
import { OpenKruiseController, OpenKruiseSandboxes, podIP } from '../test/support/openkruise.ts';
import { waitForRoute } from '../test/support/registry-events.ts';
import { UpstreamPool } from '../test/support/sandboxes.ts';
import { startService, type RunningService } from '../test/support/service.ts';

const once = process.argv.includes('--once');
const tty = process.stdout.isTTY;
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const say = (s = '') => console.log(s);
const NS = 'demo';
/** How long a woken sandbox's new pod takes to turn Ready (kwok), so the held request shows. */
const READY_DELAY = '1500ms';
/** napper's idle timeout: seconds here, so the demo shows it (minutes in production). */
const IDLE_S = 5;

const cleanups: (() => Promise<void> | void)[] = [];
async function teardown(): Promise<void> {
  for (const cleanup of cleanups.reverse()) await cleanup();
}

async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const result = await work();
  say(`  ${what} ${dim(`(${Math.round(performance.now() - started)} ms)`)}`);
  return result;
}

const cut = (text: string, length: number) => (text.length > length ? `${text.slice(0, length)}...` : text);

/** An error answer with its code first: the one word a reader looks for, whatever else the body carries. */
function errorFirst(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null || !('error' in parsed)) return body;
    const { error, ...rest } = parsed as Record<string, unknown>;
    return JSON.stringify({ error, ...rest });
  } catch {
    return body;
  }
}

function show(res: HttpResult, ms: number): void {
  const wake = res.headers['x-sandbox-wake-ms'];
  const body = cut(errorFirst(res.body), 140);
  say(`  -> ${bold(String(res.status))} in ${Math.round(ms)} ms${wake ? `, x-sandbox-wake-ms: ${wake}` : ''}`);
  say(`     ${dim(body)}`);
}

async function main(): Promise<void> {
  say(bold('sandbox-extproc demo'));
  say('Starting a real control plane, Envoy and the service on loopback.\n');
  const plane = await timed("etcd + kube-apiserver up, the families' own CRDs installed (agents.kruise.io, agents.x-k8s.io)", () =>
    ControlPlane.start({ crds: [...OpenKruiseController.crds(), ...AgentSandboxController.crds()] }),
  );
  cleanups.push(() => plane.stop());
  const cluster = await timed('kube-controller-manager (garbage collector) and kwok (pods, on 127.1.0.0/24) up', () =>
    Cluster.start(plane),
  );
  cleanups.push(() => cluster.stop());
  const pool = await UpstreamPool.start(addressesOf(DEFAULT_POD_CIDR));
  cleanups.push(() => pool.close());
  await plane.ensureNamespace(NS);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS], ['openkruise', 'agent-sandbox']);
  const controllers = await timed("OpenKruise agents' controller and agent-sandbox's controller started", () =>
    Promise.all([OpenKruiseController.start(plane), AgentSandboxController.start(plane)]),
  );
  for (const controller of controllers) cleanups.push(() => controller.stop());
  const sandboxes = new OpenKruiseSandboxes(plane, cluster);
  const agents = new AgentSandboxes(plane, cluster);
  const [web] = await timed('three sandboxes created: web (running), sleeper (paused, wakes on traffic), vault (paused, token)', async () =>
    Promise.all([
      sandboxes.create({ namespace: NS, name: 'web' }),
      sandboxes.create({
        namespace: NS,
        name: 'sleeper',
        paused: true,
        readyDelay: READY_DELAY,
        wake: { by: 'policy', pauseTimeout: '10m' },
      }),
      sandboxes.create({ namespace: NS, name: 'vault', paused: true, wake: { by: 'annotation' }, accessToken: 'open-sesame' }),
    ]),
  );
  const [notebook, , napper] = await timed(
    'three agent-sandbox Sandboxes created: notebook (running), lab (suspended, wakes on traffic), napper (suspended when idle 5 s)',
    async () =>
      Promise.all([
        agents.create({ namespace: NS, name: 'notebook' }),
        agents.create({ namespace: NS, name: 'lab', suspended: true, wake: true, readyDelay: READY_DELAY }),
        agents.create({
          namespace: NS,
          name: 'napper',
          wake: true,
          readyDelay: READY_DELAY,
          annotations: { 'sandbox-extproc.io/idle-timeout': `${IDLE_S}s` },
        }),
      ]),
  );
  say(dim(`  pods: web at ${podIP(web)}, notebook at ${podIPOf(notebook)}`));
  const service: RunningService = await timed(
    'sandbox-extproc started for both families as ServiceAccount sandbox-extproc (get/list/watch/patch sandboxes only)',
    () =>
      startService([
        '--kubeconfig',
        kubeconfig,
        '--namespaces',
        NS,
        '--domains',
        'sandbox.local',
        '--sandbox-kind',
        'openkruise,agent-sandbox',
        '--agent-sandbox-namespaces',
        NS,
        // Idle timeouts are seconds long here: the activity record may lag at most 1 s behind.
        '--activity-min-interval',
        '1s',
        '--idle-sweep-interval',
        '500ms',
      ]),
  );
  cleanups.push(() => service.stop());
  await waitForRoute(service.app.registry, `${NS}--vault`, (r) => r?.state === 'paused');
  await waitForRoute(service.app.registry, `${NS}/lab`, (r) => r?.state === 'paused');
  const envoy: RunningEnvoy = await timed('Envoy started with envoy/envoy.yaml', () =>
    startEnvoy({ extprocPort: service.listening.grpcPort as number }),
  );
  cleanups.push(() => envoy.stop());
  const port = pool.port;

  const request = async (title: string, headers: Record<string, string>, path = '/') => {
    say(`\n${bold(title)}`);
    say(
      dim(
        `  curl -s ${envoy.url}${path} ${Object.entries(headers)
          .map(([k, v]) => `-H '${k}: ${v}'`)
          .join(' ')}`,
      ),
    );
    const started = performance.now();
    const res = await httpGet(`${envoy.url}${path}`, headers, 30_000);
    show(res, performance.now() - started);
    return res;
  };
  /** Patches the service applied to one sandbox, as one field manager (resumes: sandbox-extproc). */
  const patchCount = (name: string, group = 'agents.kruise.io', manager = 'sandbox-extproc') =>
    plane.auditEvents(
      (e) =>
        e.verb === 'patch' &&
        e.user.username === SERVICE_USER &&
        e.objectRef?.name === name &&
        e.objectRef.apiGroup === group &&
        e.objectRef.subresource === undefined &&
        new RegExp(`fieldManager=${manager}(&|$)`).test(e.requestURI ?? ''),
    ).length;

  await request('1. A running sandbox, named by headers', { 'e2b-sandbox-id': `${NS}--web`, 'e2b-sandbox-port': String(port) });
  await request('   ... and by host <port>-<id>.<domain>', { host: `${port}-${NS}--web.sandbox.local` });
  await request('2. A sandbox that does not exist', { 'e2b-sandbox-id': `${NS}--nobody`, 'e2b-sandbox-port': String(port) });
  await request('3. A client trying to pick the upstream itself (x-envoy-original-dst-host) gets the sandbox it named', {
    'e2b-sandbox-id': `${NS}--web`,
    'e2b-sandbox-port': String(port),
    'x-envoy-original-dst-host': `127.1.0.250:${port}`,
  });
  say(
    `\n${bold('4. A paused sandbox, woken by traffic')} ${dim(`(OpenKruise's controller makes a new pod; it turns Ready ${READY_DELAY} later)`)}`,
  );
  say(`  state before: ${service.app.registry.get(`${NS}--sleeper`)?.state}`);
  await request('   request to sleeper', { 'e2b-sandbox-id': `${NS}--sleeper`, 'e2b-sandbox-port': String(port) });
  say(
    `  state after: ${service.app.registry.get(`${NS}--sleeper`)?.state}; resume patches the API server received: ${patchCount('sleeper')}`,
  );
  await request('   again: it is running now, so no wait', { 'e2b-sandbox-id': `${NS}--sleeper`, 'e2b-sandbox-port': String(port) });
  await request('5. A paused sandbox with an access token, wrong token: refused, not woken', {
    'e2b-sandbox-id': `${NS}--vault`,
    'e2b-sandbox-port': String(port),
    'x-access-token': 'guess',
  });
  say(`  resume patches for vault: ${patchCount('vault')}`);
  await request('   right token: woken', {
    'e2b-sandbox-id': `${NS}--vault`,
    'e2b-sandbox-port': String(port),
    'x-access-token': 'open-sesame',
  });

  say(`\n${bold('agent-sandbox (agents.x-k8s.io), named the way its own router is: x-sandbox-id, x-sandbox-namespace, x-sandbox-port')}`);
  const agentHeaders = (name: string) => ({ 'x-sandbox-id': name, 'x-sandbox-namespace': NS, 'x-sandbox-port': String(port) });
  await request('6. A running agent-sandbox Sandbox', agentHeaders('notebook'));
  say(
    `\n${bold('7. A suspended agent-sandbox Sandbox, woken by traffic')} ${dim(`(spec.operatingMode: Running; the new pod turns Ready ${READY_DELAY} later)`)}`,
  );
  say(`  state before: ${service.app.registry.get(`${NS}/lab`)?.state}`);
  await request('   request to lab', agentHeaders('lab'));
  say(
    `  state after: ${service.app.registry.get(`${NS}/lab`)?.state}; operatingMode: ${(await agents.get(NS, 'lab')).spec?.operatingMode}; resume patches for lab: ${patchCount('lab', 'agents.x-k8s.io')}`,
  );
  await request('8. Its router lets clients pick the pod (x-sandbox-pod-ip); here it is ignored and removed', {
    ...agentHeaders('notebook'),
    'x-sandbox-pod-ip': '127.1.0.250',
  });
  await request('9. A namespace requests may not name', { ...agentHeaders('notebook'), 'x-sandbox-namespace': 'kube-system' });

  say(
    `\n${bold('10. Scale to zero: napper, idle for its timeout, is suspended by the service')} ${dim(`(sandbox-extproc.io/idle-timeout: ${IDLE_S}s)`)}`,
  );
  // Nobody has used it since it turned Ready: that is when its idleness began.
  const readySince = Date.parse(napper.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime ?? '');
  const suspended = await agents.waitFor(NS, 'napper', isSuspended, 60_000, 'suspended for idleness');
  const suspendedAt = Date.parse(suspended.metadata.annotations?.['sandbox-extproc.io/idle-suspended-at'] ?? '');
  say(
    `  suspended after ${Math.round((suspendedAt - readySince) / 1000)} s idle: operatingMode ${suspended.spec?.operatingMode}, its pod deleted by agent-sandbox's controller; idle suspensions: ${patchCount('napper', 'agents.x-k8s.io', 'sandbox-extproc-idle')}`,
  );
  await request('   the next request wakes it', agentHeaders('napper'));

  say(`\n${bold('Envoy access log for the wakes')} ${dim('(sandbox, decision and wake time come from the service as metadata)')}`);
  await envoy.waitForAccessLog((e) => e['sandbox_id'] === `${NS}--vault` && e['decision'] === 'wake');
  await envoy.waitForAccessLog((e) => e['sandbox_id'] === `${NS}/lab` && e['decision'] === 'wake');
  for (const entry of envoy.accessLog().filter((e) => e['decision'] === 'wake')) say(dim(`  ${JSON.stringify(entry)}`));
  say(`\nMetrics: curl -s http://127.0.0.1:${service.listening.httpPort}/metrics | grep sandbox_extproc_`);
  if (once) return;
  say(`\nThe stack keeps running: try the curl commands above (Envoy on ${envoy.url}). ${bold('Ctrl-C')} to stop.`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

let failed = false;
try {
  await main();
} catch (error) {
  failed = true;
  console.error(`demo failed: ${(error as Error).stack ?? String(error)}`);
} finally {
  say('\nTearing down...');
  await teardown();
  say('Done.');
}
process.exit(failed ? 1 : 0);
