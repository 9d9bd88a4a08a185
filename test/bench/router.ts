// The peer users run today, side by side in one run: agent-sandbox's own router (sandbox-router v1.0.1,
// its Pod-IP cache on: an informer on sandbox-owned Pods) against Envoy + sandbox-extproc (the shipping
// envoy.yaml, the service watching the Sandboxes), for agent-sandbox Sandboxes made by the real
// controller with kwok's pods, on one API server. Both proxies route to the same upstream: one HTTP
// server process listening on every pod IP kwok hands out. The same load generator (vegeta), interleaved
// rounds in a rotated order, and a third side, the client straight to the upstream, that both are
// judged against:
// - added latency p50/p99/p99.9 at 1,000 and 5,000 req/s, with connections kept alive and with a new
//   connection per request;
// - saturation: the highest rate each side serves with p99 < 50 ms and every request answered 200, the
//   proxy pinned to one core (the router alone; Envoy and the service together), the load generator and
//   the upstream to the other;
// - Ready -> first routable request: a Sandbox's pod is held un-Ready (a readiness gate), both proxies
//   are probed for it 1,000 times a second each, and the pod is released; the upstream times the first
//   request of each proxy that reaches it. Measured from the pod's Ready (what the router watches) and
//   from the Sandbox's Ready (what the service watches, written by the controller after it);
// - our wake (a suspended Sandbox, woken by a request through Envoy) next to what their users wait today
//   for a sandbox (their SDK's SandboxClaim on a warm pool until the claim is Ready; a Sandbox created
//   until Ready): the router cannot wake (it answers 502 for a suspended Sandbox);
// - memory with 10,000 Sandboxes (--router-tiers 10000,100000 adds 100,000: writing 100,000 Sandboxes and
//   their Pods alone takes ~25 min on 2 cores): each side's process started fresh on that many objects
//   (Sandboxes with their status and their Pods, cloned from ones the real controller and kwok made).
import { performance } from 'node:perf_hooks';
import { execTracked } from '../support/process.ts';
import { AgentSandboxController, AgentSandboxes, AS_GROUP, AS_PLURAL, AS_VERSION, isServing, podIPOf } from '../support/agent-sandbox.ts';
import { addressesOf, Cluster } from '../support/cluster.ts';
import { ControlPlane, waitForObject } from '../support/controlplane.ts';
import { startEnvoy } from '../support/envoy.ts';
import { freePort } from '../support/ports.ts';
import { TestProcess } from '../support/process.ts';
import { routerIdentity, startRouter } from '../support/sandbox-router.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { REPO_ROOT } from '../support/tools.ts';
import { BulkWriter, pool } from './bulk-writer.ts';
import { Cleanup } from './cleanup.ts';
import { AGENT_SANDBOX } from './families.ts';
import { describeLoad, httpLoad, type LoadResult } from './http-load.ts';
import { percentile, percentileCurve, type Report } from './report.ts';

const NS = 'bench';
const PODS = { group: '', version: 'v1', plural: 'pods' } as const;
const MEMORY_NS = 'memory';
/** A wall-clock time in ms with sub-ms precision, comparable across this machine's processes. */
const now = () => performance.timeOrigin + performance.now();

interface Side {
  readonly key: 'direct' | 'router' | 'ours';
  readonly name: string;
  readonly url: string;
}

interface Upstreams {
  readonly port: number;
  readonly process: TestProcess;
  /** The first arrival of a probe label: its time (wall clock, ms) and the address it reached. */
  first(probe: string, timeoutMs: number): Promise<{ at: number; address: string }>;
  stop(): Promise<void>;
}

/** The upstream process (upstream-server.ts), on `port` of every address given. */
async function startUpstreams(addresses: readonly string[]): Promise<Upstreams> {
  const port = await freePort();
  const proc = new TestProcess('bench-upstream', process.execPath, [
    `${REPO_ROOT}test/bench/upstream-server.ts`,
    String(port),
    ...addresses,
  ]);
  await proc.waitForLine(/"upstream listening"/, 20_000);
  return {
    port,
    process: proc,
    async first(probe, timeoutMs) {
      const wanted = `"probe":${JSON.stringify(probe)},`;
      const line = await proc.waitFor((l) => l.includes('"first arrival"') && l.includes(wanted), timeoutMs, `the first ${probe}`);
      return JSON.parse(line) as { at: number; address: string };
    },
    stop: () => proc.stop(),
  };
}

/** Pins a running process, every thread of it, to the given CPUs (taskset). */
async function pin(pid: number | undefined, cpus: string): Promise<void> {
  if (pid === undefined) throw new Error('pin: no pid');
  await execTracked('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
}

const VARIANTS = [
  { rate: 1000, keepalive: true },
  { rate: 1000, keepalive: false },
  { rate: 5000, keepalive: true },
  { rate: 5000, keepalive: false },
] as const;

/** --quick (CI): the 1,000 req/s variants only; 5,000 req/s saturates a 2-core runner's load generator itself. */
const variantsFor = (quick: boolean) => VARIANTS.filter((v) => !quick || v.rate === 1000);

const variantLabel = (v: (typeof VARIANTS)[number]) => `@${v.rate} rps, ${v.keepalive ? 'keep-alive' : 'new connection per request'}`;

export interface RouterOptions {
  readonly quick: boolean;
  /** Sandbox counts the memory figures are taken at (default 10,000; --quick 1,000). */
  readonly memoryTiers?: readonly number[];
}

export async function measureRouter(report: Report, options: RouterOptions): Promise<void> {
  const { quick } = options;
  const cleanup = new Cleanup();
  try {
    const plane = await ControlPlane.start({ auditPolicy: false });
    cleanup.add(() => plane.stop());
    const cluster = await Cluster.start(plane);
    cleanup.add(() => cluster.stop());
    const controller = await AgentSandboxController.start(plane);
    cleanup.add(() => controller.stop());
    const agents = new AgentSandboxes(plane, cluster);
    await plane.ensureNamespace(NS);
    const upstreams = await startUpstreams(addressesOf(cluster.podCIDR));
    cleanup.add(() => upstreams.stop());
    const headers = (name: string) => ({ 'x-sandbox-id': name, 'x-sandbox-namespace': NS, 'x-sandbox-port': String(upstreams.port) });

    // The sandbox the load goes to, and the suspended ones our wake is measured on: made (and the latter
    // suspended) by the real controller before the service starts, so its first list holds them as they are.
    const wakes = quick ? 3 : 20;
    const loaded = await agents.create({ namespace: NS, name: 'load' });
    for (let i = 0; i < wakes; i += 1) await agents.create({ namespace: NS, name: `wake-${i}`, wake: true, suspended: true });

    const router = await startRouter(await routerIdentity(plane));
    cleanup.add(() => router.stop());
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS], ['agent-sandbox']);
    const service = await startServiceProcess(['--kubeconfig', kubeconfig, '--namespaces', NS, ...AGENT_SANDBOX.serviceArgs]);
    cleanup.add(() => service.stop());
    await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
    const envoy = await startEnvoy({ extprocPort: service.grpcPort });
    cleanup.add(() => envoy.stop());

    const podIP = podIPOf(loaded);
    const direct: Side = { key: 'direct', name: 'client -> upstream (no proxy)', url: `http://${podIP}:${upstreams.port}` };
    const theirs: Side = { key: 'router', name: 'sandbox-router', url: router.url };
    const ours: Side = { key: 'ours', name: 'Envoy + sandbox-extproc', url: envoy.url };
    const sides = [direct, theirs, ours];
    // Both proxies reach the pod the real controller and kwok made for 'load', at its IP.
    for (const side of [theirs, ours]) {
      const probe = `check/${side.key}`;
      const res = await fetch(`${side.url}/check`, { headers: { ...headers('load'), 'x-bench-probe': probe } });
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${side.name} did not route the bench sandbox: ${res.status}`);
      const { address } = await upstreams.first(probe, 5_000);
      if (address !== podIP) throw new Error(`${side.name} routed to ${address}, not the pod's ${podIP}`);
    }

    await latency(report, sides, headers('load'), quick);
    // Saturation is a search of many short runs: the full bench only.
    if (!quick)
      await saturation(report, sides, headers('load'), {
        proxies: { router: [router.process.child.pid], ours: [envoy.process.child.pid, service.process.child.pid] },
        // The bench itself reads every access log line both proxies write: it belongs with the load.
        loadSide: [upstreams.process.child.pid, process.pid],
      });
    await readyToRoutable(report, { plane, cluster, agents, router, envoy, upstreams, headers, trials: quick ? 2 : 10 });
    await wakeAgainstCreate(report, { plane, agents, envoy, upstreams, headers, trials: wakes });

    // Memory: the controller, kwok and the garbage collector stop first (they would act on the objects
    // written next), and so do the processes above.
    // As the API server holds them (raw JSON, not client models).
    const raw = new BulkWriter(plane, AGENT_SANDBOX);
    const templates: Templates = {
      sandbox: JSON.parse(await raw.request('GET', raw.path(NS, 'load'), undefined, 200)) as Templates['sandbox'],
      pod: JSON.parse(await raw.request('GET', BulkWriter.path(NS, 'load', '', PODS), undefined, 200)) as Templates['pod'],
    };
    raw.close();
    const [owner] = templates.pod['metadata']['ownerReferences'] as { uid: string }[];
    if (owner?.uid !== loaded.metadata.uid) throw new Error("the pod named after Sandbox 'load' is not its own");
    await cleanup.run();
    await memory(report, templates, options.memoryTiers ?? (quick ? [1_000] : [10_000]));
  } finally {
    await cleanup.run();
  }
}

/** Every side once per round, each round in a rotated order. */
async function interleaved(
  sides: readonly Side[],
  rounds: number,
  run: (side: Side) => Promise<LoadResult>,
): Promise<Map<Side, LoadResult[]>> {
  const results = new Map<Side, LoadResult[]>(sides.map((s) => [s, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (let i = 0; i < sides.length; i += 1) {
      const side = sides[(round + i) % sides.length] as Side;
      results.get(side)?.push(await run(side));
    }
  }
  return results;
}

/**
 * Latency at fixed rates (vegeta's open model). A side with any request not answered 200 in a variant
 * gets no latency figures for it (a run with a failure is not a figure): its exact check fails the
 * bench, with every outcome in the log, and the other variants still run.
 */
async function latency(report: Report, sides: readonly Side[], headers: Record<string, string>, quick: boolean): Promise<void> {
  const [direct, theirs, ours] = sides as [Side, Side, Side];
  // Warm every path (JIT, pools) before measuring.
  await interleaved(sides, 1, (side) => httpLoad(side.url, headers, { seconds: 1, rate: 500 }));
  for (const variant of variantsFor(quick)) {
    const label = variantLabel(variant);
    const rounds = quick ? 1 : 3;
    const seconds = quick ? 2 : variant.rate >= 5000 ? 4 : 10;
    const runs = await interleaved(sides, rounds, (side) =>
      httpLoad(side.url, headers, { seconds, rate: variant.rate, keepalive: variant.keepalive, timeoutMs: 10_000 }),
    );
    const clean = new Set<Side>();
    for (const side of sides) {
      const all = runs.get(side) ?? [];
      const sent = all.reduce((n, r) => n + r.sent, 0);
      const ok = all.reduce((n, r) => n + r.ok, 0);
      report.equals(`router ${label}, ${side.name}: requests sent and answered 200`, ok, 'requests', sent);
      if (ok === sent) clean.add(side);
      else for (const r of all) if (r.failed > 0) console.error(`bench: router ${label}, ${side.name}: ${describeLoad(r)}`);
    }
    const merged = new Map(sides.map((s) => [s, (runs.get(s) ?? []).flatMap((r) => r.latencies).sort((x, y) => x - y)]));
    const p = (side: Side, pct: number) => percentile(merged.get(side) ?? [], pct);
    for (const side of clean) {
      for (const pct of [50, 99, 99.9]) report.info(`router ${label}, ${side.name}: latency p${pct}`, p(side, pct), 'ms');
    }
    if (!clean.has(direct)) continue;
    for (const pct of [50, 99, 99.9]) {
      for (const side of [theirs, ours]) {
        if (clean.has(side)) report.info(`router ${label}: added p${pct}, ${side.name}`, p(side, pct) - p(direct, pct), 'ms');
      }
    }
    if (variant.rate === 1000 && variant.keepalive) {
      for (const side of clean) report.curve('router', side.name, percentileCurve(merged.get(side) ?? []));
    }
  }
}

interface Pins {
  readonly proxies: Record<'router' | 'ours', (number | undefined)[]>;
  readonly loadSide: (number | undefined)[];
}

/**
 * The highest rate each side serves with p99 < 50 ms and every request answered 200: doubling from
 * 250 req/s until a probe fails, then halving the gap; the sides probe in turn, so each step of
 * every search sees the same machine. The proxy runs on CPU 0, the load generator and upstream on CPU 1.
 */
async function saturation(report: Report, sides: readonly Side[], headers: Record<string, string>, pins: Pins): Promise<void> {
  const all = [...pins.proxies.router, ...pins.proxies.ours, ...pins.loadSide];
  try {
    for (const pid of [...pins.proxies.router, ...pins.proxies.ours]) await pin(pid, '0');
    for (const pid of pins.loadSide) await pin(pid, '1');
    const seconds = 3;
    const bisections = 4;
    const passes = async (side: Side, rate: number) => {
      const run = await httpLoad(side.url, headers, { seconds, rate, timeoutMs: 2_000, cpu: 1 });
      return run.failed === 0 && run.p(99) < 50 && run.okPerSecond >= rate * 0.95;
    };
    // From 250 req/s: on a shared 2-core machine even the bare upstream may miss 1,000 on one core.
    const searches = sides.map((side) => ({ side, lo: 0, hi: undefined as number | undefined, next: 250, steps: 0 }));
    const cap = 128_000;
    while (searches.some((s) => s.steps <= bisections)) {
      for (const s of searches) {
        if (s.steps > bisections) continue;
        const ok = await passes(s.side, s.next);
        if (ok) s.lo = s.next;
        else s.hi = s.next;
        if (s.hi === undefined && s.next < cap) s.next *= 2;
        else {
          if (s.hi === undefined) s.hi = cap;
          s.steps += 1;
          s.next = Math.round((s.lo + s.hi) / 2 / 100) * 100;
        }
      }
    }
    for (const s of searches) {
      report.info(`router saturation (p99 < 50 ms, all 200; proxy on one core), ${s.side.name}`, s.lo, 'req/s');
    }
  } finally {
    for (const pid of all) await pin(pid, '0,1').catch(() => undefined);
  }
}

interface ReadyContext {
  readonly plane: ControlPlane;
  readonly cluster: Cluster;
  readonly agents: AgentSandboxes;
  readonly router: Awaited<ReturnType<typeof startRouter>>;
  readonly envoy: Awaited<ReturnType<typeof startEnvoy>>;
  readonly upstreams: Upstreams;
  readonly headers: (name: string) => Record<string, string>;
  readonly trials: number;
}

/** Resolves with the wall-clock time a watch first shows the predicate true; `watching` once the watch is open. */
function momentOf(
  plane: ControlPlane,
  path: string,
  name: string,
  predicate: (o: Record<string, unknown>) => boolean,
  what: string,
): { established: Promise<void>; at: Promise<number> } {
  let watching!: () => void;
  const established = new Promise<void>((resolve) => (watching = resolve));
  let at = 0;
  const seen = waitForObject(
    plane.admin,
    path,
    { fieldSelector: `metadata.name=${name}` },
    (o) => {
      watching();
      const yes = predicate(o as Record<string, unknown>);
      if (yes) at = now();
      return yes;
    },
    60_000,
    what,
  );
  return { established, at: seen.then(() => at) };
}

const podReady = (o: Record<string, unknown>) =>
  ((o['status'] as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some(
    (c) => c.type === 'Ready' && c.status === 'True',
  );

async function readyToRoutable(report: Report, c: ReadyContext): Promise<void> {
  const sandboxPath = `/apis/${AS_GROUP}/${AS_VERSION}/namespaces/${NS}/${AS_PLURAL}`;
  const fromPod = { router: [] as number[], ours: [] as number[] };
  const fromSandbox = { router: [] as number[], ours: [] as number[] };
  const controllerLag: number[] = [];
  const probeP50 = { router: [] as number[], ours: [] as number[] };
  const rate = 1000;
  for (let i = 0; i < c.trials; i += 1) {
    const name = `ready-${i}`;
    const created = await c.agents.createOnly({ namespace: NS, name, hold: true });
    const pod = await c.cluster.waitForPod(
      NS,
      created.metadata.uid as string,
      (p) => (p.status?.podIP ?? '') !== '',
      30_000,
      `${name}'s pod`,
    );
    const podName = pod.metadata?.name as string;
    const podMoment = momentOf(c.plane, `/api/v1/namespaces/${NS}/pods`, podName, podReady, `pod ${podName} Ready`);
    const sandboxMoment = momentOf(c.plane, sandboxPath, name, (o) => isServing(o as never), `Sandbox ${name} Ready`);
    await Promise.all([podMoment.established, sandboxMoment.established]);
    // Both proxies probed 1,000 times a second each, from before the release until well after.
    const probes = [
      { key: 'router' as const, url: c.router.url },
      { key: 'ours' as const, url: c.envoy.url },
    ].map((side) =>
      httpLoad(
        `${side.url}/${name}`,
        { ...c.headers(name), 'x-bench-probe': `${name}/${side.key}` },
        { seconds: 6, rate, timeoutMs: 3_000 },
      ),
    );
    // Released only once both are seen answering the probes (not routable yet): Envoy's access log at
    // once, the router's after its dial retries (200 + 400 + 800 ms) on the DNS name it falls back to.
    await Promise.all([
      c.envoy.waitForAccessLog((e) => e['path'] === `/${name}`, 10_000),
      c.router.process.waitForLine(new RegExp(`"msg":"request".*"path":"/${name}"`), 10_000),
    ]);
    await c.cluster.release(NS, podName);
    const [podAt, sandboxAt] = await Promise.all([podMoment.at, sandboxMoment.at]);
    const [routerFirst, oursFirst] = await Promise.all([
      c.upstreams.first(`${name}/router`, 10_000),
      c.upstreams.first(`${name}/ours`, 10_000),
    ]);
    const [routerProbes, oursProbes] = await Promise.all(probes);
    // How fast each side forwarded its probes once routable (vegeta times only the 200s): a side whose
    // queue grew under the probes' refusals delays its first routable request by as much.
    probeP50.router.push(routerProbes?.p(50) ?? NaN);
    probeP50.ours.push(oursProbes?.p(50) ?? NaN);
    for (const [key, first] of [
      ['router', routerFirst],
      ['ours', oursFirst],
    ] as const) {
      fromPod[key].push(first.at - podAt);
      fromSandbox[key].push(first.at - sandboxAt);
    }
    controllerLag.push(sandboxAt - podAt);
    await c.agents.delete(NS, name);
  }
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const tag = `router: Ready -> first routable request (probed every ${1000 / rate} ms)`;
  for (const [key, label] of [
    ['router', 'sandbox-router (its Pod informer)'],
    ['ours', 'Envoy + sandbox-extproc (its Sandbox watch)'],
  ] as const) {
    for (const pct of [50, 99]) {
      report.info(`${tag}, from the pod's Ready, ${label}, p${pct}`, percentile(sorted(fromPod[key]), pct), 'ms');
      report.info(`${tag}, from the Sandbox's Ready, ${label}, p${pct}`, percentile(sorted(fromSandbox[key]), pct), 'ms');
    }
  }
  for (const [key, label] of [
    ['router', 'sandbox-router'],
    ['ours', 'Envoy + sandbox-extproc'],
  ] as const) {
    report.info(
      `${tag}, ${label}: latency of the probes answered 200 (after the release), p50, median over the trials`,
      percentile(sorted(probeP50[key]), 50),
      'ms',
    );
  }
  report.info(
    "router: the controller copying the pod's Ready to its Sandbox (pod Ready -> Sandbox Ready), p50",
    percentile(sorted(controllerLag), 50),
    'ms',
  );
  report.info(
    "router: the controller copying the pod's Ready to its Sandbox (pod Ready -> Sandbox Ready), p99",
    percentile(sorted(controllerLag), 99),
    'ms',
  );
}

interface WakeContext {
  readonly plane: ControlPlane;
  readonly agents: AgentSandboxes;
  readonly envoy: Awaited<ReturnType<typeof startEnvoy>>;
  readonly upstreams: Upstreams;
  readonly headers: (name: string) => Record<string, string>;
  readonly trials: number;
}

/**
 * Our wake, through Envoy, the real controller and kwok (a new pod, Ready at once), against what their
 * users wait for a sandbox today, on the same controller and kwok: their SDK's SandboxClaim on a warm
 * pool until the claim is Ready (what the SDK watches), and a Sandbox created until it is Ready.
 */
async function wakeAgainstCreate(report: Report, c: WakeContext): Promise<void> {
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const woken: number[] = [];
  for (let i = 0; i < c.trials; i += 1) {
    const name = `wake-${i}`;
    const sent = now();
    const res = await fetch(`${c.envoy.url}/${name}`, { headers: { ...c.headers(name), 'x-bench-probe': `${name}/ours` } });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`wake ${name}: ${res.status}`);
    woken.push((await c.upstreams.first(`${name}/ours`, 5_000)).at - sent);
  }
  const created: number[] = [];
  const sandboxPath = `/apis/${AS_GROUP}/${AS_VERSION}/namespaces/${NS}/${AS_PLURAL}`;
  for (let i = 0; i < c.trials; i += 1) {
    const name = `create-${i}`;
    // The watch opens on an object not there yet: its first event is the object as created, or later.
    const ready = momentOf(c.plane, sandboxPath, name, (o) => isServing(o as never), `Sandbox ${name} Ready`);
    const sent = now();
    await c.agents.createOnly({ namespace: NS, name });
    created.push((await ready.at) - sent);
  }
  // Their SDK's path: a SandboxClaim on a warm pool, watched until the claim shows its sandbox Ready.
  await c.agents.createTemplate(NS, 'bench-template');
  await c.agents.createWarmPool(NS, 'bench-pool', 'bench-template', c.trials);
  const members = new Set<string>();
  await waitForObject(
    c.plane.admin,
    sandboxPath,
    { labelSelector: 'agents.x-k8s.io/warm-pool-sandbox' },
    (o) => {
      if (isServing(o as never)) members.add((o as { metadata: { name: string } }).metadata.name);
      return members.size >= c.trials;
    },
    120_000,
    `${c.trials} Ready members of the warm pool`,
  );
  const claimed: number[] = [];
  const claimsPath = `/apis/extensions.agents.x-k8s.io/${AS_VERSION}/namespaces/${NS}/sandboxclaims`;
  for (let i = 0; i < c.trials; i += 1) {
    const name = `claim-${i}`;
    const ready = momentOf(
      c.plane,
      claimsPath,
      name,
      (o) => {
        const status = (o['status'] ?? {}) as { sandbox?: { name?: string }; conditions?: { type: string; status: string }[] };
        return (status.sandbox?.name ?? '') !== '' && (status.conditions ?? []).some((x) => x.type === 'Ready' && x.status === 'True');
      },
      `claim ${name} Ready`,
    );
    const sent = now();
    await c.agents.createClaim(NS, name, 'bench-pool');
    claimed.push((await ready.at) - sent);
  }
  for (const pct of [50, 99]) {
    report.info(
      `router: our wake, suspended Sandbox -> request at the upstream (real controller, kwok pod), p${pct}`,
      percentile(sorted(woken), pct),
      'ms',
    );
    report.info(
      `router: their users' wait, SandboxClaim on a warm pool -> claim Ready (their SDK), p${pct}`,
      percentile(sorted(claimed), pct),
      'ms',
    );
    report.info(`router: their users' wait, Sandbox created -> Ready (no pool), p${pct}`, percentile(sorted(created), pct), 'ms');
  }
}

interface Templates {
  readonly sandbox: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  readonly pod: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** agent-sandbox's pod label value: the FNV-1a (32-bit) hash of the Sandbox's name, 8 hex digits. */
export function nameHash(name: string): string {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/**
 * Both sides' memory on N Sandboxes: on a control plane of their own (no controller, kubelet or garbage
 * collector: nothing acts on the objects), N Sandboxes with the status the controller wrote for 'load'
 * and N Pods cloned from the one it and kwok made for it (their own names, name-hash labels, owners and
 * IPs), then each side started fresh, its RSS read once it reports its initial list applied.
 */
async function memory(report: Report, templates: Templates, tiers: readonly number[]): Promise<void> {
  const cleanup = new Cleanup();
  try {
    const plane = await ControlPlane.start({ auditPolicy: false });
    cleanup.add(() => plane.stop());
    await plane.ensureNamespace(MEMORY_NS);
    const sandboxes = new BulkWriter(plane, AGENT_SANDBOX);
    cleanup.add(() => sandboxes.close());
    const pods = new BulkWriter(plane, PODS);
    cleanup.add(() => pods.close());
    const routerConfig = await routerIdentity(plane);
    const serviceConfig = await plane.serviceIdentity('sandbox-extproc', [MEMORY_NS], ['agent-sandbox']);
    const { sandbox, pod } = templates;
    const sandboxSpec = sandbox['spec'];
    const sandboxStatus = sandbox['status'];
    const podSpec = pod['spec'];
    const podStatus = pod['status'];
    const podLabels = pod['metadata']['labels'] as Record<string, string>;
    let written = 0;
    for (const tier of tiers) {
      const started = performance.now();
      await pool(tier - written, 200, async (k) => {
        const i = written + k;
        const name = `s${i}`;
        const created = JSON.parse(
          await sandboxes.create(MEMORY_NS, {
            apiVersion: `${AS_GROUP}/${AS_VERSION}`,
            kind: 'Sandbox',
            metadata: { name, annotations: sandbox['metadata']['annotations'] ?? {} },
            spec: sandboxSpec,
          }),
        ) as { metadata: { uid: string } };
        await sandboxes.patch(MEMORY_NS, name, { status: { ...sandboxStatus, podIPs: [ip(i)] } }, 'status');
        await pods.create(MEMORY_NS, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: {
            name,
            labels: { ...podLabels, 'agents.x-k8s.io/sandbox-name-hash': nameHash(name) },
            annotations: pod['metadata']['annotations'] ?? {},
            ownerReferences: [
              {
                apiVersion: `${AS_GROUP}/${AS_VERSION}`,
                kind: 'Sandbox',
                name,
                uid: created.metadata.uid,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          spec: podSpec,
        });
        await pods.patch(MEMORY_NS, name, { status: { ...podStatus, podIP: ip(i), podIPs: [{ ip: ip(i) }] } }, 'status');
      });
      report.info(
        `router: ${tier.toLocaleString('en-US')} Sandboxes and their Pods written (API server bound)`,
        (performance.now() - started) / 1000,
        's',
      );
      written = tier;
      const tag = `router: ${tier.toLocaleString('en-US')} Sandboxes`;
      const routerStart = performance.now();
      const router = await startRouter(routerConfig, { syncTimeoutMs: 300_000 });
      const routerSync = (performance.now() - routerStart) / 1000;
      const routerRss = router.rss();
      const entries = Number(/"entries":(\d+)/.exec(await router.process.waitForLine(/"pod cache synced"/, 1_000))?.[1] ?? NaN);
      await router.stop();
      const serviceStart = performance.now();
      const service = await startServiceProcess(['--kubeconfig', serviceConfig, '--namespaces', MEMORY_NS, ...AGENT_SANDBOX.serviceArgs]);
      await service.process.waitForLine(/routes synced from Kubernetes/, 300_000);
      const serviceSync = (performance.now() - serviceStart) / 1000;
      const serviceRss = service.memory().rss;
      const routes = Number(
        /^sandbox_extproc_routes\{state="running"\} (\d+)/m.exec(
          await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text(),
        )?.[1] ?? NaN,
      );
      await service.stop();
      report.equals(`${tag}: sandbox-router cache entries after its initial sync`, entries, 'entries', tier);
      report.equals(`${tag}: sandbox-extproc running routes after its initial sync`, routes, 'routes', tier);
      report.info(`${tag}: sandbox-router RSS after its initial sync`, routerRss / 1e6, 'MB');
      report.info(`${tag}: sandbox-extproc RSS after its initial sync`, serviceRss / 1e6, 'MB');
      report.info(`${tag}: sandbox-router start -> synced`, routerSync, 's');
      report.info(`${tag}: sandbox-extproc start -> synced`, serviceSync, 's');
    }
  } finally {
    await cleanup.run();
  }
}
