// `npm run bench [-- --quick] [-- --sandboxes N] [-- --only a,b]`: every performance figure, side by side
// in one run, against the real Envoy, kube-apiserver and etcd, with real load generators (hey, h2load,
// ghz). Prints a table, writes test/bench/results/latest.json, and exits 1 when a target is missed.
// Full mode checks the product targets; --quick (CI) runs smaller and checks looser regression guards.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { runBuilt } from '../test/support/service-process.ts';
import { measureActivity } from '../test/bench/activity.ts';
import { measureAnswerMemory } from '../test/bench/answer-memory.ts';
import { latencySamples, measureEnvoyPath } from '../test/bench/envoy-path.ts';
import { measureStreams } from '../test/bench/grpc-load.ts';
import { Report } from '../test/bench/report.ts';
import { measureLookup, measureScale } from '../test/bench/scale.ts';
import { measureWake } from '../test/bench/wake.ts';

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, sandboxes: { type: 'string' }, only: { type: 'string' } },
});
const quick = values.quick === true;
const sandboxes = Number(values.sandboxes ?? (quick ? 2000 : 100_000));
const only = values.only?.split(',');
// Measure what ships: the bundled service in dist/, as the image runs it.
execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
runBuilt.value = true;
const report = new Report();
const step = async (name: string, work: () => Promise<unknown> | unknown) => {
  if (only && !only.includes(name)) return;
  const started = Date.now();
  console.log(`bench: ${name}...`);
  await work();
  console.log(`bench: ${name} done in ${Math.round((Date.now() - started) / 1000)} s`);
};

await step('lookup', () => measureLookup(report, quick));
await step('answers', () => measureAnswerMemory(report, quick));
await step('path', () => measureEnvoyPath(report, quick));
await step('streams', () => measureStreams(report, quick));
let wakeLatencies: number[] = [];
await step('wake', async () => {
  wakeLatencies = (await measureWake(report, quick)).timeline;
});
await step('activity', () => measureActivity(report, quick));
await step('scale', () => measureScale(report, sandboxes, quick));

console.log(`\n${report.table()}\n`);
const written = report.write();
// Raw samples for the plots in docs/benchmarks.md (node scripts/bench-plots.ts).
writeFileSync(written.replace('latest.json', 'samples.json'), JSON.stringify({ latency: latencySamples, wake: wakeLatencies }));
console.log(`written to ${written} (${quick ? 'quick' : 'full'} mode)`);
process.exit(report.passed ? 0 : 1);
