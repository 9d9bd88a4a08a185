// Draws the plots in docs/benchmarks.md from test/bench/results/samples.json (written by npm run bench):
// latency percentiles with and without sandbox-extproc (and the bare Go server floor), and the wake
// latency distribution. Plain SVG,
// no dependencies.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';

interface Series {
  readonly label: string;
  readonly color: string;
  readonly points: readonly [number, number][];
}

const W = 720;
const H = 360;
const M = { left: 64, right: 24, top: 40, bottom: 48 };

function chart(title: string, xLabel: string, yLabel: string, series: readonly Series[], xTicks: readonly [number, string][]): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const y1 = niceCeil(Math.max(...ys));
  const px = (x: number) => M.left + ((x - x0) / (x1 - x0 || 1)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - (y / y1) * (H - M.top - M.bottom);
  const yTicks = Array.from({ length: 6 }, (_, i) => (y1 * i) / 5);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>`,
    ...yTicks.map(
      (t) =>
        `<line x1="${M.left}" x2="${W - M.right}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/><text x="${M.left - 8}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`,
    ),
    ...xTicks.map(
      ([x, label]) =>
        `<line x1="${px(x)}" x2="${px(x)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#f0f0f0"/><text x="${px(x)}" y="${H - M.bottom + 16}" text-anchor="middle">${label}</text>`,
    ),
    `<text x="${W / 2}" y="${H - 10}" text-anchor="middle">${xLabel}</text>`,
    `<text transform="translate(16 ${H / 2}) rotate(-90)" text-anchor="middle">${yLabel}</text>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="#333"/><line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="#333"/>`,
    ...series.map(
      (s) =>
        `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`,
    ),
    ...series.map(
      (s, i) =>
        `<rect x="${M.left + 12}" y="${M.top + 6 + i * 18}" width="14" height="4" fill="${s.color}"/><text x="${M.left + 32}" y="${M.top + 12 + i * 18}">${s.label}</text>`,
    ),
    '</svg>',
  ];
  return parts.join('\n');
}

const fmt = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(1));
function niceCeil(v: number): number {
  const step = 10 ** Math.floor(Math.log10(v || 1));
  return Math.ceil(v / step) * step;
}

/** Percentile curve: x is the percentile on a "nines" scale (50, 90, 99, 99.9 evenly spaced). */
function percentileCurve(sorted: readonly number[]): [number, number][] {
  const nines = (p: number) => -Math.log10(1 - p / 100);
  const points: [number, number][] = [];
  for (const p of [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 98, 99, 99.5, 99.9]) {
    const v = sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
    points.push([nines(p), v]);
  }
  return points;
}

const samples = JSON.parse(readFileSync(new URL('../test/bench/results/samples.json', import.meta.url), 'utf8')) as {
  latency?: { withService: number[]; baseline: number[]; floorGo?: number[] };
  wake: number[];
};
const out = new URL('../docs/img/', import.meta.url);
mkdirSync(out, { recursive: true });
const ninesTicks: [number, string][] = [0, 50, 90, 99, 99.9].map((p) => [-Math.log10(1 - p / 100), `p${p}`]);
if (samples.latency) {
  writeFileSync(
    new URL('latency.svg', out),
    chart(
      'Request latency at 1,000 req/s through Envoy',
      'percentile',
      'latency (ms)',
      [
        { label: 'Envoy alone (static route)', color: '#2b7bb9', points: percentileCurve(samples.latency.baseline) },
        { label: 'Envoy + sandbox-extproc', color: '#d9480f', points: percentileCurve(samples.latency.withService) },
        ...(samples.latency.floorGo
          ? [
              {
                label: 'Envoy + a bare Go server sending the same answer (the floor)',
                color: '#868e96',
                points: percentileCurve(samples.latency.floorGo),
              },
            ]
          : []),
      ],
      ninesTicks,
    ),
  );
}
if (samples.wake.length > 0) {
  const sorted = [...samples.wake].sort((a, b) => a - b);
  writeFileSync(
    new URL('wake.svg', out),
    chart(
      'Wake: Running status written -> held request at the upstream',
      'percentile',
      'latency (ms)',
      [{ label: `${sorted.length} wakes through Envoy and the real API server`, color: '#2f9e44', points: percentileCurve(sorted) }],
      ninesTicks,
    ),
  );
}
console.log('plots written to docs/img/');
