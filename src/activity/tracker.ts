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

/**
 * Records activity for a sandbox (the kind's activity patch), as of this observation of it: the write
 * must not apply to a later version of the object (a recycled or re-paused sandbox). Resolves with
 * 'applied', or 'superseded' when the object changed since (the next activity decides again, on the
 * newer version); rejects when it cannot write.
 */
export type ActivityWriter = (route: Route, now: Date) => Promise<'applied' | 'superseded'>;

export const ACTIVITY_OUTCOMES = ['applied', 'superseded', 'failed'] as const;
export type ActivityOutcome = (typeof ACTIVITY_OUTCOMES)[number];

export interface ActivityHooks {
  readonly timerOf: (route: Route) => ActivityTimer | undefined;
  /**
   * The latest observation of an object (by UID), undefined once it is gone. A write waits in a queue;
   * by the time it goes out the sandbox may have been recycled, paused or deleted, so it is decided
   * again on what the watch shows then, never on what was noted.
   */
  readonly latest: (uid: string) => Route | undefined;
  readonly write: ActivityWriter;
  readonly onWrite?: (outcome: ActivityOutcome, remainingMs: number, error?: unknown) => void;
  readonly now?: () => number;
}

/** The default jitter of a replica's write threshold. */
export const DEFAULT_JITTER = 0.2;

/**
 * The longest activity can go unrecorded on the object under this rule: a use that comes while more
 * than the threshold's share of the timer is left writes nothing, and after a write the next waits at
 * least the minimum interval. What reads the record (the idle suspender) must allow for it.
 */
export function unrecordedForAtMostMs(options: Pick<ActivityOptions, 'fraction' | 'minIntervalMs' | 'jitter'>, timeoutMs: number): number {
  const lowestThreshold = options.fraction * (1 - (options.jitter ?? DEFAULT_JITTER));
  return Math.max((1 - lowestThreshold) * timeoutMs, options.minIntervalMs);
}

/** Failed records remembered at most (oldest dropped first): bounds memory through a long outage. */
const MAX_UNRECORDED = 10_000;

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
  /** UIDs noted for a write, in order; the write is decided on the latest observation when it goes out. */
  readonly #pending = new Set<string>();
  /**
   * UIDs whose last write failed (an API server away, a refusal), with when: the sandbox was in use then,
   * only its record is missing. Cleared by the next write that lands.
   */
  readonly #unrecorded = new Map<string, number>();
  #inFlight = 0;
  #scheduled = false;
  #stopped = false;

  constructor(options: ActivityOptions, hooks: ActivityHooks) {
    const jitter = options.jitter ?? DEFAULT_JITTER;
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
    this.#pending.add(route.uid);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#drain());
    }
  }

  /** Whether activity noted for this object waits to be written (it was in use just now). */
  pending(uid: string): boolean {
    return this.#pending.has(uid);
  }

  /**
   * Whether this replica saw the sandbox in use within the last `withinMs` but failed to record it: the
   * object's record is older than the truth (the idle suspender must not read it as idleness).
   */
  unrecorded(uid: string, withinMs: number): boolean {
    const at = this.#unrecorded.get(uid);
    return at !== undefined && this.#now() - at < withinMs;
  }

  /** Stops writing; pending writes are dropped (the next replica or start picks activity up again). */
  stop(): void {
    this.#stopped = true;
    // Stryker disable next-line CallExpression: equivalent; a stopped tracker never drains, this only frees memory
    this.#pending.clear();
  }

  #drain(): void {
    this.#scheduled = false;
    for (const uid of this.#pending.keys()) {
      if (this.#stopped || this.#inFlight >= this.#concurrency) break;
      this.#pending.delete(uid);
      const route = this.#hooks.latest(uid);
      // Gone, or no timer to push any more (paused, recycled into its pool, timer cleared): nothing to do.
      const timer = route === undefined ? undefined : this.#hooks.timerOf(route);
      if (route !== undefined && timer !== undefined) this.#write(route, timer);
    }
  }

  #write(route: Route, timer: ActivityTimer): void {
    const now = this.#now();
    const remainingMs = timer.deadline - now;
    this.#lastWrite.delete(route.uid);
    this.#lastWrite.set(route.uid, now);
    // Stryker disable next-line CallExpression: equivalent; bounds memory only (keptAwake prunes before counting, and a pruned entry is past the interval)
    this.#prune(now);
    this.#inFlight += 1;
    this.#hooks
      .write(route, new Date(now))
      .then(
        (outcome) => {
          // The object changed between the observation and the write: let the next activity try at once.
          if (outcome === 'superseded') this.#lastWrite.delete(route.uid);
          else this.#unrecorded.delete(route.uid);
          this.#hooks.onWrite?.(outcome, remainingMs);
        },
        (error: unknown) => {
          this.#unrecorded.delete(route.uid);
          this.#unrecorded.set(route.uid, now);
          if (this.#unrecorded.size > MAX_UNRECORDED) this.#unrecorded.delete(this.#unrecorded.keys().next().value as string);
          this.#hooks.onWrite?.('failed', remainingMs, error);
        },
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
