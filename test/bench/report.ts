// Benchmark figures: each is {name, value, unit, target, pass}, printed as a table and written, with the
// machine's facts and the percentile curves the plots are drawn from, to a results artifact
// (docs/bench/latest.json for a full run; docs/benchmarks.md is generated from it).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Human-readable target, such as "<= 0.3"; empty for context figures with no target. */
  readonly target: string;
  readonly pass: boolean;
}

/** Points [percentile, value] of one series. */
export type Curve = [number, number][];

export class Report {
  readonly figures: Figure[] = [];
  /** Plot name -> series label -> percentile curve. */
  readonly curves: Record<string, Record<string, Curve>> = {};

  /** A figure with an upper bound. */
  atMost(name: string, value: number, unit: string, limit: number): void {
    this.figures.push({ name, value: round(value), unit, target: `<= ${limit}`, pass: value <= limit });
  }

  atLeast(name: string, value: number, unit: string, limit: number): void {
    this.figures.push({ name, value: round(value), unit, target: `>= ${limit}`, pass: value >= limit });
  }

  equals(name: string, value: number, unit: string, expected: number): void {
    this.figures.push({ name, value, unit, target: `= ${expected}`, pass: value === expected });
  }

  /** A figure shown for context, with no target of its own. */
  info(name: string, value: number, unit: string): void {
    this.figures.push({ name, value: round(value), unit, target: '', pass: true });
  }

  curve(plot: string, label: string, points: Curve): void {
    (this.curves[plot] ??= {})[label] = points.map(([x, y]) => [x, round(y)]);
  }

  get passed(): boolean {
    return this.figures.every((f) => f.pass);
  }

  /** Writes the artifact: `meta` (date, machine, versions, ...) with the figures and curves. */
  write(path: string, meta: Record<string, unknown>): void {
    mkdirSync(dirname(path), { recursive: true });
    const artifact = { ...meta, passed: this.passed, figures: this.figures, curves: this.curves };
    writeFileSync(path, `${JSON.stringify(artifact, null, 2)}\n`);
  }

  table(): string {
    const rows = this.figures.map((f) => [f.name, String(f.value), f.unit, f.target, f.target === '' ? '' : f.pass ? 'pass' : 'FAIL']);
    const widths = [0, 1, 2, 3, 4].map((i) =>
      Math.max(...[['figure', 'value', 'unit', 'target', ''], ...rows].map((r) => (r[i] as string).length)),
    );
    const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ');
    return [line(['figure', 'value', 'unit', 'target', '']), ...rows.map(line)].join('\n');
  }
}

const round = (v: number) => Math.round(v * 1000) / 1000;

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** The percentiles the plots show (their x axis is in "nines": 50, 90, 99, 99.9 evenly spaced). */
export const CURVE_PERCENTILES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 98, 99, 99.5, 99.9, 100];

export function percentileCurve(sorted: readonly number[]): Curve {
  return CURVE_PERCENTILES.map((p) => [p, p === 0 ? (sorted[0] ?? NaN) : percentile(sorted, p)]);
}
