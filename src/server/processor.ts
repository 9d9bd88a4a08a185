// Turns one request's header list into its answer: read facts -> identify -> decide -> prepared answer.
// The only place that joins the pure core to metrics and the wake coordinator.
import { performance } from 'node:perf_hooks';
import { decide, type DecideOptions } from '../core/decide.ts';
import { identify, type IdentifyOptions } from '../identification/identify.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Answers } from '../protocol/answers.ts';
import { readFacts, type FactNames } from '../protocol/facts.ts';
import type { HeaderValue } from '../protocol/messages.ts';
import type { RouteLookup } from '../routes/registry.ts';
import type { ActivityNotes } from '../core/activity.ts';
import type { WakeResult, Waker } from '../core/waker.ts';

/** An answer that is not ready yet: Envoy's timer is extended by overrideMs, then the answer follows. */
export interface PendingAnswer {
  readonly overrideMs: number;
  readonly answer: Promise<Buffer>;
}

export type ProcessResult = Buffer | PendingAnswer;

export interface ProcessorOptions {
  readonly names: FactNames;
  readonly identify: IdentifyOptions;
  readonly decide: DecideOptions;
}

export class RequestProcessor {
  readonly #routes: RouteLookup;
  readonly #answers: Answers;
  readonly #options: ProcessorOptions;
  readonly #metrics: Pick<Metrics, 'requests' | 'decisionSeconds'>;
  readonly #log: Logger;
  readonly #waker: Waker | undefined;
  readonly #activity: ActivityNotes | undefined;
  /** Counter children by outcome: the label set is closed, so each is looked up once, not per request. */
  readonly #counted = new Map<string, { inc(): void }>();

  constructor(deps: {
    routes: RouteLookup;
    answers: Answers;
    options: ProcessorOptions;
    metrics: Pick<Metrics, 'requests' | 'decisionSeconds'>;
    logger: Logger;
    waker?: Waker;
    /** Told of every request forwarded to a sandbox, so a sandbox in use stays awake. */
    activity?: ActivityNotes;
  }) {
    this.#routes = deps.routes;
    this.#answers = deps.answers;
    this.#options = deps.options;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#waker = deps.waker;
    this.#activity = deps.activity;
    if (deps.options.decide.wakeEnabled && deps.waker === undefined) throw new Error('waking is enabled but no waker was given');
  }

  /** `signal` gives the stream's abort signal (made on demand: only a held request needs one). */
  process(headers: readonly HeaderValue[] | undefined, signal: () => AbortSignal): ProcessResult {
    const started = performance.now();
    const facts = readFacts(headers, this.#options.names);
    const identity = identify(facts, this.#options.identify);
    const decision = decide(identity, this.#routes, { now: Date.now(), accessToken: facts.accessToken }, this.#options.decide, this.#waker);
    let result: ProcessResult;
    let outcome: string;
    switch (decision.kind) {
      case 'forward':
        result = this.#answers.forward(decision.route, decision.port);
        outcome = 'forward';
        this.#activity?.note(decision.route);
        break;
      case 'pass':
        result = this.#answers.pass;
        outcome = 'pass';
        break;
      case 'wake': {
        // decide() returns 'wake' only when waking is enabled, which is when a waker exists.
        const held = (this.#waker as Waker).hold(decision.route, decision.port, signal());
        if ('result' in held) {
          result = { overrideMs: held.overrideMs, answer: held.result.then((r) => this.#encodeWake(r)) };
          outcome = 'wake';
        } else {
          result = this.#encodeWake(held);
          outcome = held.kind === 'forward' ? 'forward' : held.code;
        }
        break;
      }
      case 'reject':
        result = this.#answers.error(decision);
        outcome = decision.code;
        break;
    }
    this.#count(outcome);
    this.#metrics.decisionSeconds.observe((performance.now() - started) / 1000);
    if (this.#log.isLevelEnabled('debug')) {
      this.#log.debug(
        { requestId: facts.requestId, sandboxId: identity.kind === 'named' ? identity.sandboxId : undefined, outcome },
        'request decided',
      );
    }
    return result;
  }

  #encodeWake(result: WakeResult): Buffer {
    return result.kind === 'forward'
      ? this.#answers.forwardAfterWake(result.route, result.port, result.waitedMs)
      : this.#answers.error(result);
  }

  #count(outcome: string): void {
    let counter = this.#counted.get(outcome);
    if (counter === undefined) {
      counter = this.#metrics.requests.labels({ outcome });
      this.#counted.set(outcome, counter);
    }
    counter.inc();
  }
}
