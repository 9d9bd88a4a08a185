// The idle suspender's leader election (src/idle/lease-elector.ts) against the real API server: one
// leader at a time, a successor within the lease duration, and a leader that stops at once when its
// Lease is no longer its own or cannot be renewed in time. Waits follow the electors' own signals.
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseElector } from '../../src/idle/lease-elector.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { ControlPlane } from '../support/controlplane.ts';

const NS = 'leases';
const DURATION_MS = 3_000;
let plane: ControlPlane;
const electors: LeaseElector[] = [];

beforeAll(async () => {
  plane = await ControlPlane.start({ auditPolicy: false, crds: [] });
  await plane.ensureNamespace(NS);
});

afterAll(async () => {
  await Promise.all(electors.map((e) => e.stop()));
  await plane?.stop();
});

interface Candidate {
  readonly elector: LeaseElector;
  /** Resolves with the leadership's signal when this candidate starts leading. */
  readonly leads: Promise<AbortSignal>;
}

function candidate(identity: string, name: string): Candidate {
  let started!: (signal: AbortSignal) => void;
  const leads = new Promise<AbortSignal>((resolve) => (started = resolve));
  const elector = new LeaseElector(
    plane.admin,
    { namespace: NS, name, identity, durationMs: DURATION_MS },
    { onStartedLeading: (signal) => started(signal) },
    createLogger('silent'),
  );
  electors.push(elector);
  elector.start();
  return { elector, leads };
}
const ended = (signal: AbortSignal) =>
  new Promise<number>((resolve) => signal.addEventListener('abort', () => resolve(Date.now()), { once: true }));
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);

describe('one leader at a time', () => {
  it('elects one of two candidates; when it stops, it releases the Lease and the other leads at once', async () => {
    const [a, b] = [candidate('a', 'pair'), candidate('b', 'pair')];
    const first = await within(Promise.race([a.leads.then(() => a), b.leads.then(() => b)]), 10_000, 'a leader');
    const other = first === a ? b : a;
    expect(other.elector.leading).toBe(false);
    const stoppedAt = Date.now();
    await first.elector.stop();
    await within(other.leads, DURATION_MS, 'the successor after a release');
    // A released Lease is taken at once, not after the duration.
    expect(Date.now() - stoppedAt).toBeLessThan(DURATION_MS);
  });

  it('stops leading at once when another holder takes the Lease', async () => {
    const leader = candidate('c', 'taken');
    const signal = await within(leader.leads, 10_000, 'a leader');
    const leases = plane.admin.makeApiClient(CoordinationV1Api);
    const lease = await leases.readNamespacedLease({ name: 'taken', namespace: NS });
    const now = new V1MicroTime(Date.now());
    const takenAt = Date.now();
    await leases.replaceNamespacedLease({
      name: 'taken',
      namespace: NS,
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'intruder', renewTime: now, acquireTime: now } },
    });
    // Its next renewal, a third of the duration later at most, finds the intruder.
    const stoppedAt = await within(ended(signal), DURATION_MS, 'stepping down');
    expect(stoppedAt - takenAt).toBeLessThanOrEqual(DURATION_MS / 3 + 500);
    expect(leader.elector.leading).toBe(false);
  });

  it('stops leading before anyone else may take over when it cannot renew (API server down)', async () => {
    const leader = candidate('d', 'cut');
    const signal = await within(leader.leads, 10_000, 'a leader');
    const stepsDown = ended(signal);
    const downAt = Date.now();
    await plane.stopApiserver();
    try {
      const stoppedAt = await within(stepsDown, DURATION_MS * 2, 'stepping down');
      // Two thirds of the duration after its last renewal: before the Lease may expire for the others.
      expect(stoppedAt - downAt).toBeLessThan(DURATION_MS);
    } finally {
      await plane.startApiserver();
    }
  });
});
