// The soak run (issue #19): the built service, as the image runs it, for a bounded time on loopback with
// the real Envoy, kube-apiserver and etcd, OpenKruise's and agent-sandbox's own controllers (pods by
// kwok, orphans collected by kube-controller-manager), under steady mixed traffic and a steady stream
// of changes: wakes, pauses, creations, deletions, ID relabels, idle suspensions (agent-sandbox
// Sandboxes left idle, then woken by a request; one kept in use throughout, which must never be
// suspended), periodic relists, and one API server restart at half time. Every request is accounted for at the transport level; the service's own /metrics are sampled
// every 5 s for memory, handles and event-loop delay.
import { AgentSandboxController, AgentSandboxes, isSuspended } from '../support/agent-sandbox.ts';
import { addressesOf, Cluster, DEFAULT_POD_CIDR } from '../support/cluster.ts';
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { OpenKruiseController, OpenKruiseSandboxes, SANDBOX_ID_LABEL } from '../support/openkruise.ts';
import { UpstreamPool } from '../support/sandboxes.ts';
import { startServiceProcess, type ServiceProcess } from '../support/service-process.ts';
import { send, Tally, type Outcome } from './traffic.ts';
import type { Sample } from './trend.ts';

const NS = 'soak';
const STABLE = 20;
const WAKEABLE = 5;
const SAMPLE_MS = 5_000;
/** Idle agent-sandbox Sandboxes take turns being left idle; one more is kept in use throughout. */
const IDLERS = 3;
const IDLE_S = 5;

export interface SoakOptions {
  readonly durationMs: number;
  /** Requests per second offered through Envoy. */
  readonly rate: number;
  readonly log?: (line: string) => void;
}

export interface SoakResult {
  readonly durationMs: number;
  readonly samples: Sample[];
  readonly tally: Tally;
  readonly wakes: { attempted: number; served: number };
  /** Idle suspensions seen, the wakes that followed, and suspensions of the Sandbox kept in use (must be 0). */
  readonly idle: { suspended: number; woken: number; inUseSuspended: number; flaps: number };
  readonly changes: Record<string, number>;
  /** Seconds since the start at which the API server was restarted. */
  readonly restartAt: number;
  readonly watchRestarts: number;
}

const metric = (text: string, name: string): number => {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
  return match === null ? NaN : Number(match[1]);
};
const sum = (text: string, name: string): number => {
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm'))) total += Number(m[1]);
  return total;
};

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const log = options.log ?? (() => undefined);
  const plane = await ControlPlane.start({ auditPolicy: false });
  const stops: (() => Promise<void> | void)[] = [() => plane.stop()];
  try {
    const cluster = await Cluster.start(plane);
    stops.push(() => cluster.stop());
    const pool = await UpstreamPool.start(addressesOf(DEFAULT_POD_CIDR));
    stops.push(() => pool.close());
    await plane.ensureNamespace(NS);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS], ['openkruise', 'agent-sandbox']);
    const controller = await OpenKruiseController.start(plane);
    stops.push(() => controller.stop());
    const agentController = await AgentSandboxController.start(plane);
    stops.push(() => agentController.stop());
    const sandboxes = new OpenKruiseSandboxes(plane, cluster);
    const agents = new AgentSandboxes(plane, cluster);
    const idleOptIn = { wake: true, annotations: { 'sandbox-extproc.io/idle-timeout': `${IDLE_S}s` } } as const;
    // A woken sandbox's new pod turns Ready 300 ms after it is created.
    const ready = { readyDelay: '300ms' } as const;
    await Promise.all([
      ...Array.from({ length: STABLE }, (_, i) => sandboxes.create({ namespace: NS, name: `s${i}` })),
      ...Array.from({ length: WAKEABLE }, (_, i) => sandboxes.create({ namespace: NS, name: `w${i}`, wake: { by: 'policy' }, ...ready })),
      sandboxes.create({ namespace: NS, name: 'r0', labels: { [SANDBOX_ID_LABEL]: 'relabelled' } }),
      sandboxes.create({ namespace: NS, name: 'r1' }),
      ...Array.from({ length: IDLERS }, (_, i) => agents.create({ namespace: NS, name: `idle${i}`, ...idleOptIn })),
      agents.create({ namespace: NS, name: 'used', ...idleOptIn }),
    ]);
    const service: ServiceProcess = await startServiceProcess([
      '--kubeconfig',
      kubeconfig,
      '--namespaces',
      NS,
      '--sandbox-kind',
      'openkruise,agent-sandbox',
      '--agent-sandbox-namespaces',
      NS,
      '--resync-interval',
      '1m',
      // Idle timeouts are seconds long here: records may lag at most 1 s; sweeps every 500 ms.
      '--activity-min-interval',
      '1s',
      '--idle-sweep-interval',
      '500ms',
    ]);
    stops.push(() => service.stop());
    await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
    const envoy: RunningEnvoy = await startEnvoy({ extprocPort: service.grpcPort });
    stops.push(() => envoy.stop());

    const tally = new Tally();
    const started = Date.now();
    const deadline = started + options.durationMs;
    const running = () => Date.now() < deadline;
    const changes: Record<string, number> = { created: 0, deleted: 0, paused: 0, relabelled: 0 };
    const wakes = { attempted: 0, served: 0 };
    let apiserverDown = false;
    const pending = new Set<Promise<unknown>>();
    const track = <T>(p: Promise<T>): Promise<T> => {
      pending.add(p);
      void p.finally(() => pending.delete(p));
      return p;
    };
    const get = (id: string) => {
      tally.sent += 1;
      return send(`${envoy.url}/`, { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(pool.port) });
    };
    const getAgent = (name: string) => {
      tally.sent += 1;
      return send(`${envoy.url}/`, { 'x-sandbox-id': name, 'x-sandbox-namespace': NS, 'x-sandbox-port': String(pool.port) });
    };

    // Steady traffic: 80 % to sandboxes nobody touches (every answer must be 200), 20 % to the ones that
    // change under it (every request must be answered, with whatever the sandbox's state warrants).
    const churnIds = ['relabelled', `${NS}--r1`, `${NS}--c-0`, `${NS}--c-1`, `${NS}--c-2`];
    let tick = 0;
    const traffic = setInterval(() => {
      if (!running()) return;
      const perTick = Math.max(1, Math.round(options.rate / 20));
      for (let i = 0; i < perTick; i += 1) {
        tick += 1;
        const stable = tick % 5 !== 0;
        // Every tenth request keeps the agent-sandbox Sandbox "used" in use: it must never be suspended.
        if (tick % 10 === 0) {
          void track(getAgent('used')).then((o: Outcome) => tally.record('stable', o));
          continue;
        }
        const id = stable ? `${NS}--s${tick % STABLE}` : (churnIds[tick % churnIds.length] as string);
        void track(get(id)).then((o: Outcome) => tally.record(stable ? 'stable' : 'churn', o));
      }
    }, 50);

    // Creations and deletions: c-0..c-2 come and go, every 2 s one of them flips.
    let churnStep = 0;
    const churn = setInterval(() => {
      if (!running() || apiserverDown) return;
      const name = `c-${churnStep % 3}`;
      const create = Math.floor(churnStep / 3) % 2 === 0;
      churnStep += 1;
      void track(
        (create ? sandboxes.createOnly({ namespace: NS, name }) : sandboxes.delete(NS, name)).then(
          () => (changes[create ? 'created' : 'deleted'] = (changes[create ? 'created' : 'deleted'] ?? 0) + 1),
          () => undefined,
        ),
      );
    }, 2_000);

    // ID relabels: "relabelled" passes between r0 and r1 every 15 s: the label comes off one, then goes on
    // the other, as E2B's sandbox-manager hands short IDs out (the recycle itself is the controller's, in
    // test/integration/openkruise-semantics.test.ts; here the point is the route table under churn).
    let holder = 0;
    const label = (name: string, id: string | null) => sandboxes.patch(NS, name, { metadata: { labels: { [SANDBOX_ID_LABEL]: id } } });
    const relabel = setInterval(() => {
      if (!running() || apiserverDown) return;
      const [from, to] = holder === 0 ? ['r0', 'r1'] : ['r1', 'r0'];
      holder = 1 - holder;
      void track(
        label(from, null)
          .then(() => label(to, 'relabelled'))
          .then(
            () => (changes['relabelled'] = (changes['relabelled'] ?? 0) + 1),
            () => undefined,
          ),
      );
    }, 15_000);

    // Wakes: every 10 s a wakeable sandbox is paused, and once the pause is complete a request wakes it.
    let wakeStep = 0;
    const wakeLoop = (async () => {
      while (running()) {
        // Never past the deadline: the run ends when it says.
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(10_000, deadline - Date.now()))));
        if (!running() || apiserverDown) continue;
        const name = `w${wakeStep++ % WAKEABLE}`;
        try {
          await sandboxes.pauseAndWait(NS, name, 15_000);
          changes['paused'] = (changes['paused'] ?? 0) + 1;
          wakes.attempted += 1;
          const outcome = await track(get(`${NS}--${name}`));
          tally.record('wake', outcome);
          if (outcome.status === 200) wakes.served += 1;
          else log(`soak: wake of ${name} answered ${outcome.status ?? outcome.error}`);
        } catch (error) {
          log(`soak: wake step ${name} skipped: ${(error as Error).message}`);
        }
      }
    })();

    // Idle suspensions: the idlers get no traffic; each time one is suspended for idleness a request
    // wakes it (one at a time, in turn), and the service's own count of flaps is read at the end.
    const idle = { suspended: 0, woken: 0, inUseSuspended: 0, flaps: 0 };
    let idleStep = 0;
    const idleLoop = (async () => {
      while (running()) {
        const name = `idle${idleStep++ % IDLERS}`;
        try {
          const left = deadline - Date.now();
          if (left < (IDLE_S + 10) * 1000) break;
          await agents.waitFor(NS, name, isSuspended, left, 'suspended for idleness');
          idle.suspended += 1;
          if (!running() || apiserverDown) continue;
          const outcome = await track(getAgent(name));
          tally.record('wake', outcome);
          if (outcome.status === 200) idle.woken += 1;
          else log(`soak: waking the idle ${name} answered ${outcome.status ?? outcome.error}`);
        } catch (error) {
          log(`soak: idle step ${name} skipped: ${(error as Error).message}`);
        }
      }
    })();

    // One API server restart at half time: routes stay served from the cache; changes pause meanwhile.
    const restartAt = options.durationMs / 2;
    const restart = (async () => {
      await new Promise((resolve) => setTimeout(resolve, restartAt));
      apiserverDown = true;
      log('soak: restarting the API server');
      await plane.stopApiserver();
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      await plane.startApiserver();
      apiserverDown = false;
      log('soak: API server back');
    })();

    // Samples of the service's own metrics.
    const samples: Sample[] = [];
    let lastAnswered = 0;
    let lastErrors = 0;
    while (running()) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(SAMPLE_MS, Math.max(0, deadline - Date.now()))));
      const text = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
      samples.push({
        t: (Date.now() - started) / 1000,
        rssMB: metric(text, 'process_resident_memory_bytes') / 2 ** 20,
        heapMB: metric(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
        handles: metric(text, 'nodejs_active_handles_total'),
        loopP99ms: metric(text, 'nodejs_eventloop_lag_p99_seconds') * 1000,
        routes: sum(text, 'sandbox_extproc_routes'),
        requests: tally.answered - lastAnswered,
        errors: tally.errorCount - lastErrors,
      });
      lastAnswered = tally.answered;
      lastErrors = tally.errorCount;
      const last = samples.at(-1) as Sample;
      log(
        `soak: ${Math.round(last.t)} s, RSS ${last.rssMB.toFixed(1)} MB, heap ${last.heapMB.toFixed(1)} MB, handles ${last.handles}, ` +
          `loop p99 ${last.loopP99ms.toFixed(1)} ms, sent ${tally.sent}, answered ${tally.answered}, errors ${tally.errorCount}`,
      );
    }
    // "used" is read while its traffic still runs: once it stops, the Sandbox is idle, and its suspension
    // a few seconds later (while the loops below finish) is right, not a failure.
    const used = await agents.get(NS, 'used');
    clearInterval(traffic);
    clearInterval(churn);
    clearInterval(relabel);
    await Promise.all([wakeLoop, restart, idleLoop]);
    await Promise.all(pending);
    const finalMetrics = await (await fetch(`http://127.0.0.1:${service.httpPort}/metrics`)).text();
    idle.flaps = sum(finalMetrics, 'sandbox_extproc_idle_flaps_total');
    idle.inUseSuspended = used.metadata.annotations?.['sandbox-extproc.io/idle-suspended-at'] === undefined ? 0 : 1;
    return {
      durationMs: Date.now() - started,
      samples,
      tally,
      wakes,
      idle,
      changes,
      restartAt: restartAt / 1000,
      watchRestarts: sum(finalMetrics, 'sandbox_extproc_watch_restarts_total'),
    };
  } finally {
    for (const stop of stops.reverse()) await stop();
  }
}
