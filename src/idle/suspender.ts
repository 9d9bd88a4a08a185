// Suspends sandboxes that have been idle for their idle timeout (agent-sandbox, opted in per Sandbox).
// Runs on one replica at a time (the Lease's leader, src/idle/lease-elector.ts): every replica sees only
// its own traffic, so the cluster-wide truth is the activity record on the object (the
// sandbox-extproc.io/last-activity annotation, which every replica's activity writer keeps within a
// bound), and the leader acts on that. A sandbox is due once it has been idle for its timeout plus the
// longest its activity can go unrecorded (unrecordedForAtMostMs): a sandbox in use is never suspended,
// one idle is suspended at most that much late. Never while this replica holds a request for it (a wake
// under way) or has activity for it waiting to be written. Each suspension is one merge patch locked
// on the resourceVersion it was decided on, so a newer record (a replica saw traffic meanwhile) or a
// resume makes the API server refuse it; the next sweep decides again.
//
// The sweep reads the in-memory route table (no API reads): O(routes) every sweep interval. Patches are
// bounded twice: in flight (8) and started per second (--idle-suspensions-per-second, a one-second
// burst), so a mass of sandboxes going idle at once is suspended at a pace the API server and the
// controller take, each once.
import type { Logger } from '../observability/logger.ts';
import type { RouteRegistry } from '../routes/registry.ts';
import type { Route } from '../routes/route.ts';

/** What a suspension came to, as counted (`sandbox_extproc_suspensions_total{outcome}`, README). */
export const SUSPENSION_OUTCOMES = ['applied', 'superseded', 'failed'] as const;
/** What a suspend patch the API server answered came to. */
export type SuspendOutcome = Exclude<(typeof SUSPENSION_OUTCOMES)[number], 'failed'>;
/** Sends the kind's idle-suspend patch; 'superseded' when the object changed since (409). */
export type SuspendWriter = (route: Route, now: Date) => Promise<SuspendOutcome>;

export interface SuspenderMetrics {
  onSuspend(outcome: (typeof SUSPENSION_OUTCOMES)[number]): void;
  /** Sandboxes with an idle timeout idle past it (by their record) at the last sweep. */
  setIdle(count: number): void;
  onSweep(seconds: number): void;
}

export interface SuspenderOptions {
  readonly sweepIntervalMs: number;
  /** The longest activity can go unrecorded for a sandbox with this idle timeout. */
  readonly unrecordedMs: (idleMs: number) => number;
  /** Suspend patches in flight at once. */
  readonly concurrency?: number;
  /** Suspend patches started per second at most (a burst of one second's worth). */
  readonly perSecond?: number;
}

/** When the sandbox was last seen in use (recorded), or began to serve: what its idleness counts from. */
const idleSince = (route: Route): number | undefined => {
  const since = Math.max(route.activityAt ?? 0, route.readySince ?? 0);
  return since > 0 ? since : undefined;
};

export class IdleSuspender {
  readonly #registry: RouteRegistry;
  readonly #write: SuspendWriter;
  readonly #busy: (route: Route) => boolean;
  readonly #metrics: SuspenderMetrics;
  readonly #log: Logger;
  readonly #o: SuspenderOptions;
  readonly #now: () => number;
  readonly #inFlight = new Set<string>();
  /** Sandboxes found due at the last sweep and not yet suspended, in order. */
  #queue: Route[] = [];
  #tokens: number;
  #refilledAt: number;
  #signal: AbortSignal | undefined;
  #pumpTimer: NodeJS.Timeout | undefined;

  constructor(deps: {
    registry: RouteRegistry;
    write: SuspendWriter;
    busy: (route: Route) => boolean;
    metrics: SuspenderMetrics;
    logger: Logger;
    options: SuspenderOptions;
    now?: () => number;
  }) {
    this.#registry = deps.registry;
    this.#write = deps.write;
    this.#busy = deps.busy;
    this.#metrics = deps.metrics;
    this.#log = deps.logger.child({ component: 'idle' });
    this.#o = deps.options;
    this.#now = deps.now ?? Date.now;
    this.#tokens = this.#perSecond;
    this.#refilledAt = this.#now();
  }

  get #perSecond(): number {
    return this.#o.perSecond ?? 20;
  }

  /** Sweeps every interval until the signal aborts (leadership lost, or the service stopping). */
  lead(signal: AbortSignal): void {
    this.#signal = signal;
    const sweep = () => {
      if (!signal.aborted) this.sweep();
    };
    const timer = setInterval(sweep, this.#o.sweepIntervalMs);
    timer.unref();
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(timer);
        clearTimeout(this.#pumpTimer);
        this.#queue = [];
        this.#metrics.setIdle(0);
      },
      { once: true },
    );
    sweep();
  }

  /** One pass over the route table: finds what is due and starts suspending it. Returns what it started. */
  sweep(): Route[] {
    const started = performance.now();
    const now = this.#now();
    const due: Route[] = [];
    let idle = 0;
    for (const route of this.#registry.routes()) {
      if (route.idleMs === 0 || route.state !== 'running') continue;
      const since = idleSince(route);
      if (since === undefined || now < since + route.idleMs) continue;
      idle += 1;
      if (now < since + route.idleMs + this.#o.unrecordedMs(route.idleMs)) continue;
      if (this.#inFlight.has(route.uid) || this.#busy(route)) continue;
      due.push(route);
    }
    this.#metrics.setIdle(idle);
    this.#queue = due;
    const begun = this.#pump();
    this.#metrics.onSweep((performance.now() - started) / 1000);
    return begun;
  }

  /** Starts what the bounds allow from the queue: in flight, and per second. */
  #pump(): Route[] {
    const begun: Route[] = [];
    if (this.#signal?.aborted === true) return begun;
    const now = this.#now();
    this.#tokens = Math.min(this.#perSecond, this.#tokens + ((now - this.#refilledAt) / 1000) * this.#perSecond);
    this.#refilledAt = now;
    while (this.#queue.length > 0 && this.#inFlight.size < (this.#o.concurrency ?? 8) && this.#tokens >= 1) {
      const route = this.#queue.shift() as Route;
      // Decided on the sweep's observation: a newer one (a record, a resume) waits for the next sweep.
      if (this.#registry.byUid(route.uid) !== route || this.#busy(route)) continue;
      this.#tokens -= 1;
      begun.push(route);
      this.#suspend(route, now);
    }
    if (this.#queue.length > 0 && this.#tokens < 1 && this.#pumpTimer === undefined) {
      this.#pumpTimer = setTimeout(() => {
        this.#pumpTimer = undefined;
        this.#pump();
      }, 1000 / this.#perSecond);
      this.#pumpTimer.unref();
    }
    return begun;
  }

  #suspend(route: Route, now: number): void {
    this.#inFlight.add(route.uid);
    const since = idleSince(route) as number;
    this.#write(route, new Date(now))
      .then(
        (outcome) => {
          this.#metrics.onSuspend(outcome);
          if (outcome === 'applied') {
            this.#log.info(
              {
                sandboxId: route.id,
                uid: route.uid,
                idleSeconds: Math.round((now - since) / 1000),
                idleTimeoutSeconds: route.idleMs / 1000,
              },
              'suspended an idle sandbox',
            );
          }
        },
        (error: unknown) => {
          this.#metrics.onSuspend('failed');
          if (this.#signal?.aborted !== true)
            this.#log.warn({ sandboxId: route.id, err: (error as Error).message }, 'suspending an idle sandbox failed');
        },
      )
      .finally(() => {
        this.#inFlight.delete(route.uid);
        this.#pump();
      });
  }
}
