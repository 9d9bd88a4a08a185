// Wakes paused sandboxes and holds their requests until the route table shows them running.
// - One wake per sandbox: every request for it joins the same entry and the resume patch is sent once.
// - Release comes from the registry's watch-fed change events, never from polling.
// - A sandbox still pausing is resumed the moment its route shows the pause complete.
// - Each waiter has its own deadline and leaves at once when its client goes away; waiters are
//   bounded per sandbox and in total, beyond which requests get 503 at once.
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Answers, ErrorAnswer } from '../protocol/answers.ts';
import type { RequestFacts } from '../protocol/facts.ts';
import type { RouteRegistry } from '../routes/registry.ts';
import type { Route } from '../routes/route.ts';
import type { PendingAnswer, ProcessResult, Waker } from '../server/processor.ts';
import type { Resumer } from './resumer.ts';

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

interface Waiter {
  readonly port: number;
  readonly joinedAt: number;
  readonly resolve: (answer: Buffer) => void;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  signal: AbortSignal;
}

type Phase = 'awaiting-pause' | 'patching' | 'patched' | 'failed';

interface Wake {
  readonly id: string;
  route: Route;
  phase: Phase;
  readonly startedAt: number;
  patchedAt: number | undefined;
  readonly waiters: Set<Waiter>;
  readonly abort: AbortController;
}

export class WakeCoordinator implements Waker {
  readonly #wakes = new Map<string, Wake>();
  readonly #registry: RouteRegistry;
  readonly #resumer: Resumer;
  readonly #answers: Answers;
  readonly #options: WakeOptions;
  readonly #metrics: Pick<Metrics, 'wakes' | 'wakePatchSeconds' | 'wakeWaitSeconds' | 'waiters'>;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  readonly #listeners = new Set<(waiting: number) => void>();
  #waiting = 0;

  constructor(deps: {
    registry: RouteRegistry;
    resumer: Resumer;
    answers: Answers;
    options: WakeOptions;
    metrics: Pick<Metrics, 'wakes' | 'wakePatchSeconds' | 'wakeWaitSeconds' | 'waiters'>;
    logger: Logger;
    now?: () => number;
  }) {
    this.#registry = deps.registry;
    this.#resumer = deps.resumer;
    this.#answers = deps.answers;
    this.#options = deps.options;
    this.#metrics = deps.metrics;
    this.#log = deps.logger.child({ component: 'wake' });
    this.#now = deps.now ?? Date.now;
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

  /** Tells the listener the number of waiting requests each time it changes (metrics, the demo). */
  onWaitersChange(listener: (waiting: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  hold(route: Route, port: number, _facts: RequestFacts, signal: AbortSignal): ProcessResult {
    let wake = this.#wakes.get(route.id);
    if (this.#waiting >= this.#options.maxWaiters || (wake !== undefined && wake.waiters.size >= this.#options.maxWaitersPerSandbox)) {
      return this.#answers.error({ code: 'wake_capacity_exceeded', sandboxId: route.id });
    }
    if (wake === undefined) wake = this.#begin(route);
    return this.#join(wake, port, signal, this.#deadlineMs(route));
  }

  /** Answers every waiter (as the shutdown answer) and stops listening. */
  close(): void {
    this.#unsubscribe();
    for (const wake of this.#wakes.values())
      this.#finish(wake, { error: { code: 'sandbox_wake_failed', sandboxId: wake.id, reason: 'the service is shutting down' } }, 'failed');
  }

  #deadlineMs(route: Route): number {
    const own = (route.wake?.timeoutSeconds ?? 0) * 1000;
    return Math.min(own > 0 ? own : this.#options.timeoutMs, this.#options.maxHoldMs - ENVOY_MARGIN_MS);
  }

  #begin(route: Route): Wake {
    const wake: Wake = {
      id: route.id,
      route,
      phase: 'awaiting-pause',
      startedAt: this.#now(),
      patchedAt: undefined,
      waiters: new Set(),
      abort: new AbortController(),
    };
    this.#wakes.set(route.id, wake);
    if (!route.pauseRequested) {
      // spec.paused is already false: a resume is under way (another replica, or a person); just wait.
      wake.phase = 'patched';
      wake.patchedAt = wake.startedAt;
    } else if (!route.pausing) {
      this.#patch(wake);
    }
    return wake;
  }

  #join(wake: Wake, port: number, signal: AbortSignal, deadlineMs: number): PendingAnswer {
    let resolve!: (answer: Buffer) => void;
    const answer = new Promise<Buffer>((r) => (resolve = r));
    const waiter: Waiter = { port, joinedAt: this.#now(), resolve, timer: undefined, onAbort: undefined, signal };
    waiter.timer = setTimeout(() => this.#expire(wake, waiter), deadlineMs);
    waiter.onAbort = () => this.#leave(wake, waiter, 'abandoned');
    signal.addEventListener('abort', waiter.onAbort, { once: true });
    wake.waiters.add(waiter);
    this.#setWaiting(this.#waiting + 1);
    return { overrideMs: deadlineMs + ENVOY_MARGIN_MS, answer };
  }

  #patch(wake: Wake): void {
    wake.phase = 'patching';
    const started = this.#now();
    // Retries of the patch stop at the wake deadline, whether or not anyone still waits.
    const deadline = setTimeout(() => wake.abort.abort(), this.#deadlineMs(wake.route));
    this.#resumer.resume(wake.route, wake.abort.signal).then(
      () => {
        clearTimeout(deadline);
        this.#metrics.wakePatchSeconds.observe((this.#now() - started) / 1000);
        if (wake.phase !== 'patching') return;
        wake.phase = 'patched';
        wake.patchedAt = this.#now();
        if (wake.waiters.size === 0) this.#drop(wake);
      },
      (error: unknown) => {
        clearTimeout(deadline);
        if (wake.phase !== 'patching') return;
        this.#log.warn({ sandboxId: wake.id, err: (error as Error).message }, 'sandbox wake failed');
        this.#finish(
          wake,
          {
            error: {
              code: 'sandbox_wake_failed',
              sandboxId: wake.id,
              reason: `the sandbox could not be resumed: ${(error as Error).message}`,
            },
          },
          'failed',
        );
      },
    );
  }

  #onRouteChange(wake: Wake, route: Route | undefined): void {
    if (route === undefined) {
      this.#finish(wake, { error: { code: 'sandbox_not_found', sandboxId: wake.id } }, 'failed');
      return;
    }
    wake.route = route;
    if (route.state === 'running') {
      this.#release(wake, route);
    } else if (route.state === 'dead' || route.deleting) {
      this.#finish(wake, { error: { code: 'sandbox_not_running', sandboxId: wake.id } }, 'failed');
    } else if (wake.phase === 'awaiting-pause' && !route.pausing) {
      // The pause completed: now a resume will be accepted.
      if (route.pauseRequested) this.#patch(wake);
      else wake.phase = 'patched';
    }
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
    this.#finish(wake, { route }, 'woken');
  }

  #expire(wake: Wake, waiter: Waiter): void {
    waiter.timer = undefined;
    this.#leave(wake, waiter, 'timeout');
  }

  /**
   * Removes one waiter: answered 503 at its deadline, or silently when its client went away (the
   * stream is gone). When nobody is left, the wake is no longer watched; a resume already sent still
   * completes in the controller, so later requests find the sandbox running.
   */
  #leave(wake: Wake, waiter: Waiter, why: 'timeout' | 'abandoned'): void {
    if (!wake.waiters.delete(waiter)) return;
    this.#detach(waiter);
    waiter.resolve(this.#answers.error({ code: why === 'timeout' ? 'sandbox_wake_timeout' : 'sandbox_wake_failed', sandboxId: wake.id }));
    if (wake.waiters.size > 0) return;
    this.#metrics.wakes.inc({ outcome: why });
    if (wake.phase !== 'patching') this.#drop(wake);
  }

  #finish(wake: Wake, outcome: { route: Route } | { error: ErrorAnswer }, label: 'woken' | 'failed'): void {
    wake.phase = label === 'woken' ? 'patched' : 'failed';
    const now = this.#now();
    for (const waiter of wake.waiters) {
      this.#detach(waiter);
      waiter.resolve(
        'route' in outcome
          ? this.#answers.forwardAfterWake(outcome.route, waiter.port, now - waiter.joinedAt)
          : this.#answers.error(outcome.error),
      );
    }
    this.#metrics.wakes.inc({ outcome: label });
    wake.waiters.clear();
    this.#drop(wake);
  }

  #detach(waiter: Waiter): void {
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    if (waiter.onAbort !== undefined) waiter.signal.removeEventListener('abort', waiter.onAbort);
    this.#setWaiting(this.#waiting - 1);
  }

  #setWaiting(waiting: number): void {
    this.#waiting = waiting;
    this.#metrics.waiters.set(waiting);
    for (const listener of this.#listeners) listener(waiting);
  }

  #drop(wake: Wake): void {
    if (this.#wakes.get(wake.id) === wake) this.#wakes.delete(wake.id);
    wake.abort.abort();
  }
}
