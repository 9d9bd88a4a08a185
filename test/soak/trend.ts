// Least-squares slope of a series over time, for "does it grow without bound" checks.

export interface Sample {
  /** Seconds since the start. */
  readonly t: number;
  readonly rssMB: number;
  readonly heapMB: number;
  readonly handles: number;
  readonly loopP99ms: number;
  readonly routes: number;
  readonly requests: number;
  readonly errors: number;
}

/** Slope per hour of `value` over the samples (units of value per hour). */
export function slopePerHour(samples: readonly Sample[], value: (s: Sample) => number): number {
  const n = samples.length;
  if (n < 3) return 0;
  let sx = 0;
  let sy = 0;
  for (const s of samples) {
    sx += s.t;
    sy += value(s);
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (const s of samples) {
    num += (s.t - mx) * (value(s) - my);
    den += (s.t - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 3600;
}

/** The samples after warm-up: the last two thirds, when the process has settled. */
export function settled(samples: readonly Sample[]): Sample[] {
  return samples.slice(Math.floor(samples.length / 3));
}
