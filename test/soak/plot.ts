// The soak run as a picture: four panels over time (memory, handles, event-loop delay, traffic), plain
// SVG turned into PNG by rsvg-convert (Debian's librsvg2-bin).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { Sample } from './trend.ts';

interface Line {
  readonly label: string;
  readonly color: string;
  readonly value: (s: Sample) => number;
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly lines: readonly Line[];
}

const PANEL_W = 560;
const PANEL_H = 240;
const PAD = { left: 60, right: 16, top: 34, bottom: 36 };

function panel(p: Panel, samples: readonly Sample[], ox: number, oy: number, marks: readonly number[]): string {
  const tMax = Math.max(...samples.map((s) => s.t), 1);
  const yMax = Math.max(...p.lines.flatMap((l) => samples.map(l.value)), 1e-9) * 1.1;
  const x = (t: number) => ox + PAD.left + (t / tMax) * (PANEL_W - PAD.left - PAD.right);
  const y = (v: number) => oy + PANEL_H - PAD.bottom - (v / yMax) * (PANEL_H - PAD.top - PAD.bottom);
  const out = [`<text x="${ox + PANEL_W / 2}" y="${oy + 20}" text-anchor="middle" font-weight="bold">${p.title} (${p.unit})</text>`];
  for (let i = 0; i <= 4; i += 1) {
    const v = (yMax * i) / 4;
    out.push(
      `<line x1="${ox + PAD.left}" x2="${ox + PANEL_W - PAD.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e6e6e6"/>`,
      `<text x="${ox + PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${v >= 100 ? v.toFixed(0) : v.toPrecision(2)}</text>`,
    );
  }
  for (let i = 0; i <= 5; i += 1) {
    const t = (tMax * i) / 5;
    out.push(`<text x="${x(t)}" y="${oy + PANEL_H - PAD.bottom + 16}" text-anchor="middle">${(t / 60).toFixed(1)} min</text>`);
  }
  for (const t of marks)
    out.push(
      `<line x1="${x(t)}" x2="${x(t)}" y1="${oy + PAD.top}" y2="${oy + PANEL_H - PAD.bottom}" stroke="#d33" stroke-dasharray="4 3"/>`,
    );
  p.lines.forEach((l, i) => {
    out.push(
      `<polyline fill="none" stroke="${l.color}" stroke-width="1.6" points="${samples.map((s) => `${x(s.t).toFixed(1)},${y(l.value(s)).toFixed(1)}`).join(' ')}"/>`,
      `<rect x="${ox + PAD.left + 8}" y="${oy + PAD.top + 4 + i * 16}" width="12" height="3" fill="${l.color}"/>`,
      `<text x="${ox + PAD.left + 24}" y="${oy + PAD.top + 9 + i * 16}">${l.label}</text>`,
    );
  });
  return out.join('\n');
}

/** Writes `<base>.svg` and `<base>.png`; `marks` are times (s) drawn as dashed lines (the API server restart). */
/** Writes `<base>.svg`, and `<base>.png` with `png` (rsvg-convert: `scripts/provision.sh plot`). */
export function drawSoak(samples: readonly Sample[], base: string, title: string, marks: readonly number[], png: boolean): void {
  const panels: Panel[] = [
    {
      title: 'Memory',
      unit: 'MB',
      lines: [
        { label: 'RSS', color: '#1f77b4', value: (s) => s.rssMB },
        { label: 'heap used', color: '#ff7f0e', value: (s) => s.heapMB },
      ],
    },
    { title: 'Active handles', unit: 'count', lines: [{ label: 'handles', color: '#2ca02c', value: (s) => s.handles }] },
    { title: 'Event-loop delay p99', unit: 'ms', lines: [{ label: 'p99', color: '#9467bd', value: (s) => s.loopP99ms }] },
    {
      title: 'Traffic per 5 s',
      unit: 'requests',
      lines: [
        { label: 'answered', color: '#17becf', value: (s) => s.requests },
        { label: 'transport errors', color: '#d62728', value: (s) => s.errors },
      ],
    },
  ];
  const width = PANEL_W * 2;
  const height = PANEL_H * 2 + 40;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>`,
    ...panels.map((p, i) => panel(p, samples, (i % 2) * PANEL_W, 40 + Math.floor(i / 2) * PANEL_H, marks)),
    '</svg>',
  ].join('\n');
  writeFileSync(`${base}.svg`, svg);
  if (png) execFileSync('rsvg-convert', ['-o', `${base}.png`, `${base}.svg`]);
}
