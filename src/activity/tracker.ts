// Keeps sandboxes awake while they are used. Activity (a request forwarded to a sandbox, an access log
// entry for a stream still open) is noted in O(1) on whatever path saw it; writes happen later, off that
// path. A sandbox's pause timer is pushed (by its kind's activity patch: now + its pause timeout) only
// when the time left has fallen below a fraction of the timeout, and this replica writes a sandbox at
// most once per minimum interval. The write is absolute and idempotent, so replicas need no
// coordination: each replica's threshold carries its own random jitter, so the first to cross it
// writes and the others see the new timer through the watch before they cross theirs. Bound: per
// active sandbox, one write per (1 - fraction) x timeout in practice, and never more than one per
// replica per that period nor per --activity-min-interval.
import type { ActivityTimer } from '../sandbox-kinds/kind.ts';
import type { Route } from '../routes/route.ts';

export interface ActivityOptions {
  /** Write when the time left on the timer falls below this fraction of the timeout (0 < f < 1). */
  readonly fraction: number;
  /** Least time between two writes for one sandbox from this replica. */
  readonly minIntervalMs: number;
  /** This replica's jitter: the threshold is fraction x (1 - jitter x U(0,1)), drawn once per tracker. */
  readonly jitter?: number;
  /** Writes in flight at once. */
  readonly concurrency?: number;
}

/** Records activity for a sandbox (the kind's activity patch); rejects when it cannot. */
export type ActivityWriter = (route: Route, now: Date) => Promise<void>;

export type ActivityOutcome = 'applied' | 'failed';

export interface ActivityHooks {
  readonly timerOf: (route: Route) => ActivityTimer | undefined;
  readonly write: ActivityWriter;
  readonly onWrite?: (outcome: ActivityOutcome, remainingMs: number, error?: unknown) => void;
  readonly now?: () => number;
}

/** How long a write is remembered (for the per-interval bound and the kept-awake count). */
const KEPT_AWAKE_WINDOW_MS = 10 * 60_000;

export class ActivityTracker {
  readonly #threshold: number;
  readonly #minIntervalMs: number;
  readonly #concurrency: number;
  readonly #hooks: ActivityHooks;
  readonly #now: () => number;
  /** Last write (epoch ms) per UID, oldest first. */
  readonly #lastWrite = new Map<string, number>();
  readonly #pending = new Map<string, Route>();
  #inFlight = 0;
  #scheduled = false;
  #stopped = false;

  constructor(options: ActivityOptions, hooks: ActivityHooks) {
    const jitter = options.jitter ?? 0.2;
    this.#threshold = options.fraction * (1 - jitter * Math.random());
    this.#minIntervalMs = options.minIntervalMs;
    this.#concurrency = options.concurrency ?? 4;
    this.#hooks = hooks;
    this.#now = hooks.now ?? Date.now;
  }

  /** Sandboxes this replica pushed the timer of within the last ten minutes. */
  get keptAwake(): number {
    this.#prune(this.#now());
    return this.#lastWrite.size;
  }

  /** Notes activity for a sandbox. Cheap and synchronous: safe on the request path. */
  note(route: Route): void {
    if (this.#stopped || this.#pending.has(route.uid)) return;
    const timer = this.#hooks.timerOf(route);
    if (timer === undefined) return;
    const now = this.#now();
    if (timer.deadline - now > this.#threshold * timer.timeoutMs) return;
    const last = this.#lastWrite.get(route.uid);
    if (last !== undefined && now - last < this.#minIntervalMs) return;
    this.#pending.set(route.uid, route);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
  }

  /** Stops writing; pending writes are dropped (the next replica or start picks activity up again). */
  stop(): void {
    this.#stopped = true;
    // Stryker disable next-line CallExpression: equivalent; a stopped tracker never drains, this only frees memory
    this.#pending.clear();
  }

  #drain(): void {
    this.#scheduled = false;
    for (const [uid, route] of this.#pending) {
      if (this.#stopped || this.#inFlight >= this.#concurrency) break;
      this.#pending.delete(uid);
      this.#write(route);
    }
  }

  #write(route: Route): void {
    const now = this.#now();
    const remainingMs = (this.#hooks.timerOf(route)?.deadline ?? now) - now;
    this.#lastWrite.delete(route.uid);
    this.#lastWrite.set(route.uid, now);
    // Stryker disable next-line CallExpression: equivalent; bounds memory only (keptAwake prunes before counting, and a pruned entry is past the interval)
    this.#prune(now);
    this.#inFlight += 1;
    this.#hooks
      .write(route, new Date(now))
      .then(
        () => this.#hooks.onWrite?.('applied', remainingMs),
        (error: unknown) => this.#hooks.onWrite?.('failed', remainingMs, error),
      )
      .finally(() => {
        this.#inFlight -= 1;
        // Stryker disable next-line ConditionalExpression,EqualityOperator: equivalent; a drain with nothing pending does nothing
        if (this.#pending.size > 0) this.#drain();
      });
  }

  #prune(now: number): void {
    const horizon = Math.max(this.#minIntervalMs, KEPT_AWAKE_WINDOW_MS);
    for (const [uid, at] of this.#lastWrite) {
      if (now - at < horizon) break;
      this.#lastWrite.delete(uid);
    }
  }
}
