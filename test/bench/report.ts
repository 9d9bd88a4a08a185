// Benchmark figures: each is {name, value, unit, target, pass}, printed as a table and written to
// test/bench/results/latest.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { REPO_ROOT } from '../support/tools.ts';

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** Human-readable target, such as "<= 0.3"; empty for context figures with no target. */
  readonly target: string;
  readonly pass: boolean;
}

export class Report {
  readonly figures: Figure[] = [];

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

  get passed(): boolean {
    return this.figures.every((f) => f.pass);
  }

  write(): string {
    const dir = `${REPO_ROOT}test/bench/results`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/latest.json`, `${JSON.stringify(this.figures, null, 2)}\n`);
    return `${dir}/latest.json`;
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
