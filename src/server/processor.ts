// Turns one request's header list into its answer: read facts -> identify -> decide -> prepared answer.
// The only place that joins the pure core to metrics and the wake coordinator.
import { performance } from 'node:perf_hooks';
import { decide, type DecideOptions } from '../core/decide.ts';
import { identify, type IdentifyOptions } from '../identification/identify.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Answers } from '../protocol/answers.ts';
import { factHeaderNames, readFacts, type FactNames, type RequestFacts } from '../protocol/facts.ts';
import type { RouterAuthorizer, RouterAuthzVerdict } from '../core/router-authz.ts';
import type { Identification } from '../identification/identify.ts';
import type { HeaderValue } from '../protocol/messages.ts';
import type { RouteLookup } from '../routes/registry.ts';
import type { ActivityNotes } from '../core/activity.ts';
import type { WakeResult, Waker } from '../core/waker.ts';
import type { TrafficTokens } from '../core/traffic-tokens.ts';
import type { Decision } from '../core/decide.ts';
import type { Tracing } from '../observability/tracing.ts';
import type { Span } from '@opentelemetry/api';

/**
 * An answer that is not ready yet: Envoy's timer is extended by overrideMs first (when given: a wake's
 * hold; a token check needs no more than Envoy's own timer), then the answer follows, which may itself
 * be pending (a token checked, then a wake).
 */
export interface PendingAnswer {
  readonly overrideMs?: number;
  readonly answer: Promise<ProcessResult>;
}

export type ProcessResult = Buffer | PendingAnswer;

interface Acted {
  readonly result: ProcessResult;
  readonly outcome: string;
}

export interface ProcessorOptions {
  readonly names: FactNames;
  readonly identify: IdentifyOptions;
  readonly decide: DecideOptions;
}

export class RequestProcessor {
  /** The request headers this processor reads (the others need not be decoded at all). */
  readonly headerNames: readonly string[];
  readonly #routes: RouteLookup;
  readonly #answers: Answers;
  readonly #options: ProcessorOptions;
  readonly #metrics: Pick<Metrics, 'requests' | 'decisionSeconds'>;
  readonly #log: Logger;
  readonly #waker: Waker | undefined;
  readonly #activity: ActivityNotes | undefined;
  readonly #trafficTokens: TrafficTokens | undefined;
  readonly #routerAuthz: RouterAuthorizer | undefined;
  readonly #routerAuthzDecisions: ((decision: 'allow' | 'deny') => void) | undefined;
  /** Spans per decision, when tracing is on; undefined costs the hot path one check. */
  readonly #tracing: Tracing | undefined;
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
    /** Checks traffic access tokens (JWTs); without it, sandboxes that require one are refused (503). */
    trafficTokens?: TrafficTokens;
    /** agent-sandbox's router authorization (--agent-sandbox-authz-mode other than allow-all). */
    routerAuthz?: RouterAuthorizer;
    /** Told of every verdict of routerAuthz (its router's sandbox_router_authz_decisions_total). */
    onRouterAuthz?: (decision: 'allow' | 'deny') => void;
    tracing?: Tracing;
  }) {
    this.#routes = deps.routes;
    this.#answers = deps.answers;
    this.#options = deps.options;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#waker = deps.waker;
    this.#activity = deps.activity;
    this.#trafficTokens = deps.trafficTokens;
    this.#routerAuthz = deps.routerAuthz;
    this.#routerAuthzDecisions = deps.onRouterAuthz;
    this.#tracing = deps.tracing;
    this.headerNames = [...factHeaderNames(deps.options.names), ...(deps.tracing?.headerNames ?? [])];
    if (deps.options.decide.wakeEnabled && deps.waker === undefined) throw new Error('waking is enabled but no waker was given');
  }

  /** `signal` gives the stream's abort signal (made on demand: only a held request needs one). */
  process(headers: readonly HeaderValue[] | undefined, signal: () => AbortSignal): ProcessResult {
    const started = performance.now();
    const span = this.#tracing?.decision(headers);
    const facts = readFacts(headers, this.#options.names);
    const identity = identify(facts, this.#options.identify);
    let acted: Acted;
    if (identity.kind === 'named' && identity.agentSandbox === true && this.#routerAuthz !== undefined) {
      // agent-sandbox's router authorizes before it resolves anything: a refused request learns nothing
      // of the sandbox and never wakes it.
      const slash = identity.sandboxId.indexOf('/');
      const verdict = this.#routerAuthz.authorize(
        facts.authorization,
        identity.sandboxId.slice(0, slash),
        identity.sandboxId.slice(slash + 1),
      );
      if (verdict instanceof Promise) {
        const wait = this.#routerAuthz.maxWaitMs;
        const answer = verdict.then((v) =>
          // The client left while its token was reviewed: nothing to answer, and nothing to wake for it.
          signal().aborted
            ? this.#answers.error({ code: 'internal_error' })
            : this.#countedAfter(this.#afterAuthz(v, identity, facts, signal, span)).result,
        );
        // Envoy's per-message timer (1 s) is extended to cover the review's own bound.
        acted = { result: wait === undefined ? { answer } : { overrideMs: wait + 1_000, answer }, outcome: 'authz' };
      } else {
        acted = this.#countedAfter(this.#afterAuthz(verdict, identity, facts, signal, span));
      }
    } else {
      acted = this.#decideAndAct(identity, facts, signal, span);
      if (acted.outcome !== 'verify') this.#count(acted.outcome);
    }
    this.#metrics.decisionSeconds.observe((performance.now() - started) / 1000);
    if (span !== undefined) this.#endSpan(span, acted.result, acted.outcome, identity.kind === 'named' ? identity.sandboxId : undefined);
    if (this.#log.isLevelEnabled('debug')) {
      this.#log.debug(
        { requestId: facts.requestId, sandboxId: identity.kind === 'named' ? identity.sandboxId : undefined, outcome: acted.outcome },
        'request decided',
      );
    }
    return acted.result;
  }

  #afterAuthz(
    verdict: RouterAuthzVerdict,
    identity: Identification & { kind: 'named' },
    facts: RequestFacts,
    signal: () => AbortSignal,
    span: Span | undefined,
  ): Acted {
    this.#routerAuthzDecisions?.(verdict.ok ? 'allow' : 'deny');
    if (!verdict.ok) {
      this.#log.debug({ sandboxId: identity.sandboxId, reason: verdict.reason }, 'agent-sandbox authorization refused');
      return { result: this.#answers.error({ code: verdict.code, sandboxId: identity.sandboxId }), outcome: verdict.code };
    }
    return this.#decideAndAct(identity, facts, signal, span);
  }

  /** Counts an outcome decided after an asynchronous step (a 'verify' counts itself once its check is done). */
  #countedAfter(acted: Acted): Acted {
    if (acted.outcome !== 'verify') this.#count(acted.outcome);
    return acted;
  }

  #decideAndAct(identity: Identification, facts: RequestFacts, signal: () => AbortSignal, span: Span | undefined): Acted {
    const decision = decide(
      identity,
      this.#routes,
      { now: Date.now(), accessToken: facts.accessToken, trafficTokensReady: this.#trafficTokens?.ready === true, path: facts.path },
      this.#options.decide,
      this.#waker,
    );
    const path = identity.kind === 'named' ? identity.path : undefined;
    if (decision.kind === 'verify') {
      // Counted once the check is done, by what it led to.
      return { result: { answer: this.#verifyThen(decision, facts.trafficToken, path, signal, span) }, outcome: 'verify' };
    }
    if (decision.kind === 'reject' && identity.kind === 'malformed' && identity.detail !== undefined) {
      return { result: this.#answers.error({ ...decision, detail: identity.detail }), outcome: decision.code };
    }
    return this.#act(decision, path, signal, span);
  }

  /** Ends a decision's span when its answer is ready: at once, or when a held or checked answer settles. */
  #endSpan(span: Span, result: ProcessResult, outcome: string, sandboxId: string | undefined): void {
    const tracing = this.#tracing as Tracing;
    if (Buffer.isBuffer(result)) tracing.decided(span, outcome, sandboxId);
    else {
      result.answer.then(
        () => tracing.decided(span, outcome, sandboxId),
        () => tracing.decided(span, 'internal_error', sandboxId),
      );
    }
  }

  /** The answer to a decision other than 'verify', and the outcome it is counted as. */
  #act(decision: Exclude<Decision, { kind: 'verify' }>, path: string | undefined, signal: () => AbortSignal, span?: Span): Acted {
    switch (decision.kind) {
      case 'forward':
        this.#activity?.note(decision.route);
        return { result: this.#answers.forward(decision.route, decision.port, path), outcome: 'forward' };
      case 'pass':
        return { result: this.#answers.pass, outcome: 'pass' };
      case 'health':
        return { result: this.#answers.health, outcome: 'health' };
      case 'wake': {
        // decide() returns 'wake' only when waking is enabled, which is when a waker exists.
        const held = (this.#waker as Waker).hold(decision.route, decision.port, signal(), span);
        if ('result' in held) {
          return { result: { overrideMs: held.overrideMs, answer: held.result.then((r) => this.#encodeWake(r, path)) }, outcome: 'wake' };
        }
        return { result: this.#encodeWake(held, path), outcome: held.kind === 'forward' ? 'forward' : held.code };
      }
      case 'reject':
        return { result: this.#answers.error(decision), outcome: decision.code };
    }
  }

  /**
   * Checks the traffic access token (decide() returns 'verify' only while a checker is ready), then
   * forwards or wakes as decided: a request that fails the check never wakes anything.
   */
  async #verifyThen(
    decision: Extract<Decision, { kind: 'verify' }>,
    token: string | undefined,
    path: string | undefined,
    signal: () => AbortSignal,
    span: Span | undefined,
  ): Promise<ProcessResult> {
    const { route, port } = decision;
    const verdict = await (this.#trafficTokens as TrafficTokens).verify(token, route);
    if (!verdict.ok) {
      this.#count('forbidden');
      this.#log.debug({ sandboxId: route.id, reason: verdict.reason }, 'traffic access token refused');
      return this.#answers.error({
        code: 'forbidden',
        sandboxId: route.id,
        ...(verdict.mismatch ? { reason: 'the traffic access token does not match the sandbox' } : {}),
      });
    }
    // The client left while its token was checked: nothing to answer, and nothing to wake for it.
    if (signal().aborted) return this.#answers.error({ code: 'internal_error' });
    const acted = this.#act({ kind: decision.then, route, port }, path, signal, span);
    this.#count(acted.outcome);
    return acted.result;
  }

  #encodeWake(result: WakeResult, path: string | undefined): Buffer {
    return result.kind === 'forward'
      ? this.#answers.forwardAfterWake(result.route, result.port, result.waitedMs, path)
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
