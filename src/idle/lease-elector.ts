// One leader among the replicas, elected with a coordination.k8s.io Lease, by the rules of client-go's
// leaderelection: a candidate takes the Lease when it is free or its holder has not renewed it for the
// holder's lease duration, measured on the candidate's own clock from when it saw the last renewal (so
// clock skew between replicas does not matter); the leader renews it every third of the duration and
// stops leading at once when a renewal finds another holder, or when it could not renew for two thirds
// of the duration, before anyone else may take it. Every write carries the resourceVersion read, so two
// candidates never both win. A leader that stops releases the Lease (holder cleared), so the next one
// need not wait the duration out.
//
// Nothing polls: every replica watches the one Lease, so a candidate sees each renewal as it happens and
// acts exactly when the last one it saw expires; a leader killed outright is replaced within the lease
// duration of its last renewal.
import { CoordinationV1Api, KubeConfig, V1MicroTime, Watch, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from '../observability/logger.ts';
import { Backoff, delay } from '../routes/backoff.ts';

export interface LeaseOptions {
  readonly namespace: string;
  readonly name: string;
  /** This replica's identity in the Lease (unique per process). */
  readonly identity: string;
  readonly durationMs: number;
}

export interface LeaderCallbacks {
  /** This replica leads now; `signal` aborts the moment it stops leading. */
  readonly onStartedLeading: (signal: AbortSignal) => void;
}

interface Observed {
  readonly holder: string;
  readonly renewTime: string;
  /** Local time when this record was first seen (the expiry clock). */
  readonly seenAt: number;
  /** The holder's own lease duration (a released Lease says 1 s). */
  readonly durationMs: number;
}

const httpStatus = (error: unknown) => (error as { code?: unknown }).code;

/** The promise's outcome, or a rejection once `ms` have passed (the request itself is left to end). */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} got no answer within ${Math.round(ms)} ms`)), ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export class LeaseElector {
  readonly #api: CoordinationV1Api;
  readonly #kubeConfig: KubeConfig;
  readonly #o: LeaseOptions;
  readonly #log: Logger;
  readonly #callbacks: LeaderCallbacks;
  readonly #stop = new AbortController();
  readonly #now: () => number;
  #observed: Observed | undefined;
  #leading: AbortController | undefined;
  #lease: V1Lease | undefined;
  #run: Promise<void> | undefined;
  #watch: AbortController | undefined;
  /** Cuts the current wait short: a watch event moved the expiry it waits for. */
  #nudge: AbortController = new AbortController();

  constructor(kubeConfig: KubeConfig, options: LeaseOptions, callbacks: LeaderCallbacks, logger: Logger, now: () => number = Date.now) {
    this.#kubeConfig = kubeConfig;
    this.#api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.#o = options;
    this.#callbacks = callbacks;
    this.#log = logger.child({ component: 'leader-election', lease: `${options.namespace}/${options.name}` });
    this.#now = now;
  }

  get leading(): boolean {
    return this.#leading !== undefined;
  }

  start(): void {
    if (this.#run !== undefined) return;
    void this.#watchLease();
    this.#run = this.#loop();
  }

  /** Stops campaigning; a leader stops leading and releases the Lease. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#nudge.abort();
    this.#watch?.abort();
    await this.#run;
    if (this.#leading !== undefined) {
      this.#stepDown('stopping');
      await this.#release();
    }
  }

  async #loop(): Promise<void> {
    const retry = this.#o.durationMs / 3;
    const renewDeadline = (this.#o.durationMs * 2) / 3;
    const backoff = new Backoff(200, retry);
    let lastRenewed = 0;
    while (!this.#stop.signal.aborted) {
      const observed = this.#observed;
      const expiry = observed === undefined || observed.holder === '' ? 0 : observed.seenAt + observed.durationMs;
      const mayTry = this.#leading !== undefined || observed?.holder === this.#o.identity || this.#now() >= expiry;
      let wait: number;
      if (!mayTry) {
        wait = expiry - this.#now();
      } else {
        try {
          // A request the API server never answers must not hold a leader past its renew deadline.
          const held = await withDeadline(this.#tryAcquireOrRenew(), retry, 'the lease request');
          backoff.reset();
          if (held) {
            lastRenewed = this.#now();
            if (this.#leading === undefined) this.#startLeading();
          } else if (this.#leading !== undefined) {
            this.#stepDown('another replica holds the lease');
          }
          wait = held ? retry : 0;
        } catch (error) {
          this.#log.warn({ err: (error as Error).message }, 'lease request failed');
          if (this.#leading !== undefined && this.#now() - lastRenewed >= renewDeadline)
            this.#stepDown('could not renew the lease in time');
          wait = backoff.next();
        }
      }
      if (wait > 0) await this.#wait(wait);
    }
  }

  /** Waits, unless a watch event changes what there is to wait for. */
  async #wait(ms: number): Promise<void> {
    if (this.#nudge.signal.aborted) this.#nudge = new AbortController();
    const nudge = this.#nudge.signal;
    await delay(ms, AbortSignal.any([nudge, this.#stop.signal]));
  }

  /** Follows the Lease: every renewal, every change of holder, as it happens. */
  async #watchLease(): Promise<void> {
    const backoff = new Backoff(200, 5000);
    const path = `/apis/coordination.k8s.io/v1/namespaces/${this.#o.namespace}/leases`;
    while (!this.#stop.signal.aborted) {
      await new Promise<void>((resolve) => {
        new Watch(this.#kubeConfig)
          .watch(
            path,
            { fieldSelector: `metadata.name=${this.#o.name}` },
            (type, lease: V1Lease) => {
              backoff.reset();
              if (type === 'ADDED' || type === 'MODIFIED') this.#remember(lease);
              else if (type === 'DELETED') this.#observed = undefined;
              // A follower recomputes when to try; a leader keeps its own rhythm.
              if (this.#leading === undefined) this.#nudge.abort();
            },
            () => resolve(),
          )
          .then(
            (controller) => {
              this.#watch = controller;
              if (this.#stop.signal.aborted) controller.abort();
            },
            () => resolve(),
          );
      });
      await delay(backoff.next(), this.#stop.signal);
    }
  }

  /** One round: take or renew the Lease if this replica may. Returns whether it holds it. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.#o;
    const now = new V1MicroTime(this.#now());
    let lease = this.#lease;
    if (lease === undefined || lease.spec?.holderIdentity !== identity) {
      try {
        lease = await this.#api.readNamespacedLease({ name, namespace });
      } catch (error) {
        if (httpStatus(error) !== 404) throw error;
        try {
          this.#remember(
            await this.#api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.#spec(now, now, 0) } }),
          );
          return true;
        } catch (createError) {
          if (httpStatus(createError) === 409) return false;
          throw createError;
        }
      }
      this.#remember(lease);
      const holder = lease.spec?.holderIdentity ?? '';
      const observed = this.#observed as Observed;
      if (holder !== '' && holder !== identity && this.#now() < observed.seenAt + observed.durationMs) return false;
    }
    const mine = lease.spec?.holderIdentity === identity;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1);
    const acquireTime = mine && lease.spec?.acquireTime !== undefined ? new V1MicroTime(lease.spec.acquireTime) : now;
    try {
      this.#remember(
        await this.#api.replaceNamespacedLease({
          name,
          namespace,
          body: { metadata: { ...lease.metadata, name, namespace }, spec: this.#spec(acquireTime, now, transitions) },
        }),
      );
      return true;
    } catch (error) {
      // Another replica wrote first (or the Lease went): read it again next round.
      if (httpStatus(error) === 409 || httpStatus(error) === 404) {
        this.#lease = undefined;
        return false;
      }
      throw error;
    }
  }

  /** MicroTime fields go out with six fractional digits (V1MicroTime): the API server refuses three. */
  #spec(acquireTime: V1MicroTime, renewTime: V1MicroTime, transitions: number): NonNullable<V1Lease['spec']> {
    return {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.ceil(this.#o.durationMs / 1000),
      acquireTime,
      renewTime,
      leaseTransitions: transitions,
    };
  }

  #remember(lease: V1Lease): void {
    this.#lease = lease;
    const holder = lease.spec?.holderIdentity ?? '';
    const renewTime = String(lease.spec?.renewTime?.valueOf() ?? '');
    const previous = this.#observed;
    if (previous === undefined || previous.holder !== holder || previous.renewTime !== renewTime) {
      const durationMs = (lease.spec?.leaseDurationSeconds ?? Math.ceil(this.#o.durationMs / 1000)) * 1000;
      this.#observed = { holder, renewTime, seenAt: this.#now(), durationMs };
    }
  }

  #startLeading(): void {
    const leading = new AbortController();
    this.#leading = leading;
    this.#log.info({ identity: this.#o.identity }, 'started leading');
    this.#callbacks.onStartedLeading(leading.signal);
  }

  #stepDown(why: string): void {
    const leading = this.#leading;
    if (leading === undefined) return;
    this.#leading = undefined;
    leading.abort();
    this.#log.warn({ identity: this.#o.identity, why }, 'stopped leading');
  }

  /** Gives the Lease up (holder cleared, 1 s duration), so a successor need not wait the duration out. */
  async #release(): Promise<void> {
    const lease = this.#lease;
    if (lease?.spec?.holderIdentity !== this.#o.identity) return;
    try {
      await this.#api.replaceNamespacedLease({
        name: this.#o.name,
        namespace: this.#o.namespace,
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: new V1MicroTime(this.#now()),
            ...(lease.spec.acquireTime === undefined ? {} : { acquireTime: new V1MicroTime(lease.spec.acquireTime) }),
          },
        },
      });
    } catch (error) {
      this.#log.warn({ err: (error as Error).message }, 'releasing the lease failed; the next leader waits for it to expire');
    }
  }
}
