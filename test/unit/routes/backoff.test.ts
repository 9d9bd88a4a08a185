// The backoff between Kubernetes retries: exponential with full jitter, capped, reset by success.
import { describe, expect, it } from 'vitest';
import { Backoff, delay } from '../../../src/routes/backoff.ts';

describe('Backoff', () => {
  it('waits between half and all of a ceiling that doubles from the base to the cap', () => {
    const backoff = new Backoff(200, 5000);
    for (const ceiling of [200, 400, 800, 1600, 3200, 5000, 5000, 5000]) {
      const wait = backoff.next();
      expect(wait).toBeGreaterThanOrEqual(ceiling / 2);
      expect(wait).toBeLessThanOrEqual(ceiling);
    }
  });

  it('draws waits apart (jitter), so replicas do not retry in step', () => {
    const waits = new Set(Array.from({ length: 20 }, () => new Backoff(200, 5000).next()));
    expect(waits.size).toBeGreaterThan(1);
  });

  it('starts over after reset', () => {
    const backoff = new Backoff(200, 5000);
    for (let i = 0; i < 10; i += 1) backoff.next();
    backoff.reset();
    expect(backoff.next()).toBeLessThanOrEqual(200);
  });
});

describe('delay', () => {
  it('resolves at once when its signal aborts', async () => {
    const abort = new AbortController();
    const waited = delay(60_000, abort.signal);
    abort.abort();
    await expect(waited).resolves.toBeUndefined();
  });
});
