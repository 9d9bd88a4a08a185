// Wakes paused sandboxes and holds their requests until the route table shows them running.
// - One wake per sandbox: every request for it joins the same entry and the resume patch is sent once.
// - Release comes from the registry's watch-fed change events, never from polling, and only to the
//   very object that was woken (same UID): an ID that now names another object fails its waiters.
// - A sandbox still pausing is resumed the moment its route shows the pause complete.
// - Each waiter has its own deadline and leaves at once when its client goes away; waiters are
//   bounded per sandbox and in total, beyond which requests get 503 at once.
// - A refused resume (403, 404, 422: RBAC, a webhook, validation) is remembered per object version
//   for a while, growing with repeated refusals: requests in that window get 503 with Retry-After at
//   once and no patch is sent. An unreachable API server is not remembered: each wake fails fast on
//   its own, so wakes work again the moment the API server is back.
// It resolves waiters to domain outcomes (core/waker.ts); the processor encodes them.
import type { ErrorCode } from '../core/errors.ts';
import type { HeldRequest, WakeResult, Waker } from '../core/waker.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { isNewerVersion, type RouteRegistry } from '../routes/registry.ts';
import type { Route } from '../routes/route.ts';
import type { WakeSpans, WakeTracer } from '../observability/tracing.ts';
import { ResumeError, type Resumer } from './resumer.ts';

export interface WakeOptions {
  /** Default wake deadline; a sandbox's own (wake.timeoutSeconds) overrides it. */
  readonly timeoutMs: number;
  /** Longest hold Envoy allows (its max_message_timeout): deadlines are capped to fit inside it. */
  readonly maxHoldMs: number;
  readonly maxWaitersPerSandbox: number;
  readonly maxWaiters: number;
}

/** Envoy's timer is set this much past our deadline, so the service always answers first. */
export const ENVOY_MARGIN_MS = 1000;
/** A wake this soon after an idle suspension counts as a flap (the idle timeout is too short for its use). */
export const FLAP_WINDOW_MS = 60_000;
/** How long a refused resume is remembered: doubling from the first to the last, per object. */
export const FAILURE_MEMORY_MS = { first: 2_000, max: 60_000 } as const;
const FAILURE_MEMORY_CAPACITY = 10_000;

type WakeMetrics = Pick<Metrics, 'wakes' | 'wakePatchSeconds' | 'wakeWaitSeconds' | 'waiters' | 'idleFlaps'>;
export const WAKE_OUTCOMES = ['woken', 'failed', 'timeout', 'abandoned'] as const;
export type Outcome = (typeof WAKE_OUTCOMES)[number];

interface Waiter {
  readonly port: number;
  readonly joinedAt: number;
  readonly resolve: (result: WakeResult) => void;
  readonly signal: AbortSignal;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
}

interface Wake {
  readonly id: string;
  readonly uid: string;
  route: Route;
  phase: 'awaiting-pause' | 'patching' | 'patched';
  readonly startedAt: number;
  patchedAt: number | undefined;
  /** The object version that asked it to run (our patch, or the one found already resumed). */
  resumedVersion: string | undefined;
  readonly waiters: Set<Waiter>;
  /** Aborts patch retries: at the wake deadline, or when the wake ends. */
  readonly abort: AbortController;
  /** Why the last waiter left, if every one has. */
  lastLeft: 'timeout' | 'abandoned' | undefined;
  /** Its spans, when tracing is on. */
  readonly trace: WakeSpans | undefined;
}

interface Failure {
  readonly until: number;
  readonly count: number;
  /** The object version refused: a changed object (a fixed policy, say) is tried again at once. */
  readonly resourceVersion: string;
}

export class WakeCoordinator implements Waker {
  readonly #wakes = new Map<string, Wake>();
  readonly #failures = new Map<string, Failure>();
  readonly #registry: RouteRegistry;
  readonly #resumer: Resumer;
  readonly #options: WakeOptions;
  readonly #metrics: WakeMetrics;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #tracer: WakeTracer | undefined;
  readonly #unsubscribe: () => void;
  readonly #listeners = new Set<(waiting: number) => void>();
  readonly #endListeners = new Set<(outcome: Outcome) => void>();
  #waiting = 0;

  constructor(deps: {
    registry: RouteRegistry;
    resumer: Resumer;
    options: WakeOptions;
    metrics: WakeMetrics;
    logger: Logger;
    now?: () => number;
    /** Spans per wake (patch, watch wait, release), when tracing is on. */
    tracer?: WakeTracer;
  }) {
    this.#registry = deps.registry;
    this.#resumer = deps.resumer;
    this.#options = deps.options;
    this.#metrics = deps.metrics;
    this.#log = deps.logger.child({ component: 'wake' });
    this.#now = deps.now ?? Date.now;
    this.#tracer = deps.tracer;
    this.#unsubscribe = this.#registry.subscribe((id, route) => {
      const wake = this.#wakes.get(id);
      if (wake !== undefined) this.#onRouteChange(wake, route);
    });
  }

  /** Requests waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Sandboxes being woken now. */
  get inFlight(): number {
    return this.#wakes.size;
  }

  /** Tells the listener each wake's outcome as it ends (once per wake, where it is counted). */
  onWakeEnd(listener: (outcome: Outcome) => void): () => void {
    this.#endListeners.add(listener);
    return () => this.#endListeners.delete(listener);
  }

  /** Tells the listener the number of waiting requests each time it changes (metrics, the demo). */
  onWaitersChange(listener: (waiting: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  waking(route: Route): boolean {
    return this.#wakes.get(route.id)?.uid === route.uid;
  }

  hold(route: Route, port: number, signal: AbortSignal, trace?: unknown): WakeResult | HeldRequest {
    let wake = this.#wakes.get(route.id);
    if (wake !== undefined && wake.uid !== route.uid) {
      // The ID moved to another object while a wake for the old one runs: that wake no longer applies.
      this.#fail(wake, 'sandbox_not_found');
      wake = undefined;
    }
    // Stryker disable next-line ConditionalExpression: equivalent; while a wake runs, no refusal of that object version is remembered, or it has expired
    if (wake === undefined) {
      const remembered = this.#recentFailure(route);
      if (remembered !== undefined) return { kind: 'reject', code: 'sandbox_wake_failed', sandboxId: route.id, retryAfter: remembered };
    }
    if (this.#waiting >= this.#options.maxWaiters || (wake !== undefined && wake.waiters.size >= this.#options.maxWaitersPerSandbox)) {
      return { kind: 'reject', code: 'wake_capacity_exceeded', sandboxId: route.id };
    }
    if (wake === undefined) wake = this.#begin(route, trace);
    else if (trace !== undefined) wake.trace?.joined(trace);
    return this.#join(wake, port, signal, this.#deadlineMs(route));
  }

  /** Answers every waiter (as the shutdown answer) and stops listening. */
  close(): void {
    this.#unsubscribe();
    for (const wake of this.#wakes.values()) this.#fail(wake, 'sandbox_wake_failed');
  }

  #deadlineMs(route: Route): number {
    const own = (route.wake?.timeoutSeconds ?? 0) * 1000;
    return Math.min(own > 0 ? own : this.#options.timeoutMs, this.#options.maxHoldMs - ENVOY_MARGIN_MS);
  }

  /** Seconds left of a remembered refusal of this object version, or undefined. */
  #recentFailure(route: Route): number | undefined {
    const failure = this.#failures.get(route.uid);
    if (failure === undefined || failure.resourceVersion !== route.resourceVersion) return undefined;
    const left = failure.until - this.#now();
    return left > 0 ? Math.ceil(left / 1000) : undefined;
  }

  #rememberFailure(route: Route): void {
    const { uid, resourceVersion } = route;
    const now = this.#now();
    const previous = this.#failures.get(uid);
    const count = previous === undefined ? 1 : previous.count + 1;
    const memoryMs = Math.min(FAILURE_MEMORY_MS.first * 2 ** (count - 1), FAILURE_MEMORY_MS.max);
    this.#failures.delete(uid);
    this.#failures.set(uid, { until: now + memoryMs, count, resourceVersion });
    if (this.#failures.size > FAILURE_MEMORY_CAPACITY) {
      // Oldest first (insertion order); entries past their window and long forgotten go first.
      for (const [key, held] of this.#failures) {
        if (this.#failures.size <= FAILURE_MEMORY_CAPACITY / 2) break;
        if (held.until <= now || this.#failures.size > FAILURE_MEMORY_CAPACITY) this.#failures.delete(key);
      }
    }
  }

  #begin(route: Route, trace: unknown): Wake {
    const wake: Wake = {
      id: route.id,
      uid: route.uid,
      route,
      phase: 'awaiting-pause',
      startedAt: this.#now(),
      patchedAt: undefined,
      resumedVersion: undefined,
      waiters: new Set(),
      abort: new AbortController(),
      lastLeft: undefined,
      trace: this.#tracer?.begin(route, trace),
    };
    this.#wakes.set(route.id, wake);
    if (route.idleSuspendedAt !== undefined && wake.startedAt - route.idleSuspendedAt < FLAP_WINDOW_MS) this.#metrics.idleFlaps.inc();
    if (!route.pauseRequested) {
      // spec.paused is already false: a resume is under way (another replica, or a person); just wait.
      wake.trace?.waitStarted();
      wake.phase = 'patched';
      wake.patchedAt = wake.startedAt;
      wake.resumedVersion = route.resourceVersion;
    } else if (!route.pausing) {
      this.#patch(wake);
    }
    return wake;
  }

  #join(wake: Wake, port: number, signal: AbortSignal, deadlineMs: number): HeldRequest {
    let resolve!: (result: WakeResult) => void;
    const result = new Promise<WakeResult>((r) => (resolve = r));
    const waiter: Waiter = { port, joinedAt: this.#now(), resolve, signal, timer: undefined, onAbort: undefined };
    waiter.timer = setTimeout(() => this.#leave(wake, waiter, 'timeout'), deadlineMs);
    waiter.onAbort = () => this.#leave(wake, waiter, 'abandoned');
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent; #detach removes the listener whichever way the waiter goes
    signal.addEventListener('abort', waiter.onAbort, { once: true });
    wake.waiters.add(waiter);
    wake.lastLeft = undefined;
    this.#setWaiting(this.#waiting + 1);
    return { overrideMs: deadlineMs + ENVOY_MARGIN_MS, result };
  }

  #patch(wake: Wake): void {
    wake.phase = 'patching';
    const started = this.#now();
    // Retries of the patch stop at the wake deadline, whether or not anyone still waits.
    const deadline = setTimeout(() => wake.abort.abort(), this.#deadlineMs(wake.route));
    wake.trace?.patchStarted();
    this.#resumer.resume(wake.route, wake.abort.signal).then(
      (resumedVersion) => {
        clearTimeout(deadline);
        this.#metrics.wakePatchSeconds.observe((this.#now() - started) / 1000);
        this.#failures.delete(wake.uid);
        wake.trace?.patchEnded();
        // A wake that ended meanwhile (the sandbox deleted, its ID moved) has nothing left to wait for. Its
        // phase is still 'patching' (only this callback moves it on), so that is the whole question.
        if (this.#wakes.get(wake.id) !== wake) return;
        wake.trace?.waitStarted();
        wake.phase = 'patched';
        wake.patchedAt = this.#now();
        wake.resumedVersion = resumedVersion;
        if (wake.waiters.size === 0) this.#end(wake, wake.lastLeft ?? 'abandoned');
      },
      (error: unknown) => {
        clearTimeout(deadline);
        wake.trace?.patchEnded(error instanceof ResumeError ? error.failure : 'unknown');
        // A wake that already ended (released, failed) aborted its own retries: nothing failed.
        if (this.#wakes.get(wake.id) !== wake) return;
        const failure = error instanceof ResumeError ? error.failure : 'unknown';
        // The API server's words stay in the log: they name namespaces, objects and identities.
        this.#log.warn({ sandboxId: wake.id, uid: wake.uid, failure, err: (error as Error).message }, 'sandbox wake failed');
        if (failure === 'refused') this.#rememberFailure(wake.route);
        this.#fail(wake, failure === 'replaced' ? 'sandbox_not_found' : 'sandbox_wake_failed');
      },
    );
  }

  /**
   * Follows the woken object through the watch, as the reference gateway's resume does: it waits until
   * the sandbox is Ready, through every state of a resume (new pod, Running not yet Ready while the
   * runtime is initialised), and fails only when the sandbox can no longer run: deleted or gone, a
   * terminal phase, or asked to pause again after it was asked to run.
   */
  #onRouteChange(wake: Wake, route: Route | undefined): void {
    if (route === undefined || route.uid !== wake.uid) {
      // Gone, or the ID now names another object (relabelled, recreated, or claimed twice).
      const conflict = this.#registry.conflicted(wake.id);
      this.#failOn(wake, route, conflict ? 'the sandbox ID is claimed by more than one object' : 'the sandbox was deleted or its ID moved');
      this.#fail(wake, conflict ? 'sandbox_id_conflict' : 'sandbox_not_found');
      return;
    }
    wake.route = route;
    if (route.state === 'running') {
      this.#release(wake, route);
    } else if (route.state === 'dead' || route.deleting) {
      this.#failOn(wake, route, route.deleting ? 'the sandbox is being deleted' : 'the sandbox can no longer run');
      this.#fail(wake, 'sandbox_not_running');
    } else if (route.pauseRequested && this.#pausedSinceResume(wake, route)) {
      this.#failOn(wake, route, 'the sandbox was asked to pause again while it was being woken');
      this.#fail(wake, 'sandbox_wake_failed');
    } else if (wake.phase === 'awaiting-pause' && !route.pausing) {
      // The pause completed: now a resume will be accepted.
      if (route.pauseRequested) this.#patch(wake);
      else {
        wake.trace?.waitStarted();
        wake.phase = 'patched';
        wake.resumedVersion = route.resourceVersion;
      }
    }
  }

  /**
   * Whether this observation, asking for a pause, is newer than the version that asked the sandbox to
   * run. Only a wake in phase 'patched' has that version (the two are always set together).
   */
  #pausedSinceResume(wake: Wake, route: Route): boolean {
    return wake.resumedVersion !== undefined && isNewerVersion(route.resourceVersion, wake.resumedVersion);
  }

  /** Logs a wake that the sandbox's own state failed, with that state. */
  #failOn(wake: Wake, route: Route | undefined, why: string): void {
    this.#log.warn(
      {
        sandboxId: wake.id,
        uid: wake.uid,
        waiters: wake.waiters.size,
        ...(route === undefined
          ? {}
          : {
              state: route.state,
              phase: route.phase,
              deleting: route.deleting,
              pauseRequested: route.pauseRequested,
              resourceVersion: route.resourceVersion,
            }),
      },
      `sandbox wake failed: ${why}`,
    );
  }

  #release(wake: Wake, route: Route): void {
    const now = this.#now();
    this.#metrics.wakeWaitSeconds.observe((now - (wake.patchedAt ?? wake.startedAt)) / 1000);
    this.#log.info(
      {
        sandboxId: wake.id,
        waiters: wake.waiters.size,
        podIP: route.podIP,
        wakeMs: now - wake.startedAt,
        patchMs: wake.patchedAt === undefined ? undefined : wake.patchedAt - wake.startedAt,
      },
      'sandbox woken',
    );
    wake.trace?.released(wake.waiters.size);
    for (const waiter of this.#takeWaiters(wake)) {
      waiter.resolve({ kind: 'forward', route, port: waiter.port, waitedMs: now - waiter.joinedAt });
    }
    this.#end(wake, 'woken');
  }

  /** Answers every waiter with an error and ends the wake. */
  #fail(wake: Wake, code: ErrorCode): void {
    for (const waiter of this.#takeWaiters(wake)) waiter.resolve({ kind: 'reject', code, sandboxId: wake.id });
    this.#end(wake, 'failed', code);
  }

  /**
   * Removes one waiter: answered 503 at its deadline, or silently when its client went away (the
   * stream is gone). When nobody is left and no patch is in flight, the wake ends; a resume already
   * sent still completes in the controller, so later requests find the sandbox running.
   */
  #leave(wake: Wake, waiter: Waiter, why: 'timeout' | 'abandoned'): void {
    if (!wake.waiters.delete(waiter)) return;
    this.#detach(waiter);
    waiter.resolve({ kind: 'reject', code: why === 'timeout' ? 'sandbox_wake_timeout' : 'sandbox_wake_failed', sandboxId: wake.id });
    if (wake.waiters.size > 0) return;
    wake.lastLeft = why;
    if (wake.phase !== 'patching') this.#end(wake, why);
  }

  #takeWaiters(wake: Wake): Waiter[] {
    const waiters = [...wake.waiters];
    // Stryker disable next-line CallExpression: equivalent; the wake ends at once, its waiters already detached
    wake.waiters.clear();
    for (const waiter of waiters) this.#detach(waiter);
    return waiters;
  }

  #detach(waiter: Waiter): void {
    // Stryker disable next-line ConditionalExpression: equivalent; clearTimeout(undefined) does nothing
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    if (waiter.onAbort !== undefined) waiter.signal.removeEventListener('abort', waiter.onAbort);
    this.#setWaiting(this.#waiting - 1);
  }

  #setWaiting(waiting: number): void {
    this.#waiting = waiting;
    this.#metrics.waiters.set(waiting);
    for (const listener of this.#listeners) listener(waiting);
  }

  /** Ends a wake exactly once: the one place it leaves the table and is counted. */
  #end(wake: Wake, outcome: Outcome, code?: ErrorCode): void {
    if (this.#wakes.get(wake.id) !== wake) return;
    this.#wakes.delete(wake.id);
    wake.abort.abort();
    wake.trace?.end(outcome, code);
    this.#metrics.wakes.inc({ outcome });
    for (const listener of this.#endListeners) listener(outcome);
  }
}
