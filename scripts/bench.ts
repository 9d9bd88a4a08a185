// `npm run bench [-- --quick] [-- --sandboxes N] [-- --only a,b] [-- --out path] [-- --baseline ref]`: every performance
// figure, side by side in one run, against the real Envoy, kube-apiserver and etcd, with real load
// generators (vegeta, h2load, ghz). Prints a table, writes a results artifact (figures, percentile
// curves, the machine's facts, versions, date) and exits 1 when a target is missed or a step fails.
// Full mode checks the product targets and writes docs/bench/latest.json, from which
// `node scripts/bench-docs.ts` generates docs/benchmarks.md and its plots; --quick (CI) runs smaller,
// checks looser regression guards and writes test/bench/results/latest.json unless told --out.
// Whatever happens (a failed step, a missing tool, Ctrl-C), no process the bench started outlives it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runBuilt } from '../test/support/service-process.ts';
import { REPO_ROOT, toolPath, type Tool } from '../test/support/tools.ts';
import { measureActivity } from '../test/bench/activity.ts';
import { measureAnswerMemory } from '../test/bench/answer-memory.ts';
import { measureIdle } from '../test/bench/idle.ts';
import { measureEnvoyPath } from '../test/bench/envoy-path.ts';
import { measureStreams, type Baseline } from '../test/bench/grpc-load.ts';
import { Report } from '../test/bench/report.ts';
import { measureKwokScale } from '../test/bench/kwok-scale.ts';
import { measureRouter } from '../test/bench/router.ts';
import { measureLookup, measureScale } from '../test/bench/scale.ts';
import { measureTail } from '../test/bench/tail.ts';
import { measureWake } from '../test/bench/wake.ts';

const STEPS = ['lookup', 'answers', 'path', 'streams', 'tail', 'wake', 'activity', 'idle', 'scale', 'kwok', 'router'] as const;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    sandboxes: { type: 'string' },
    // Sandboxes per family in the kwok step, through the real controllers (default 10,000; --quick 200).
    'kwok-sandboxes': { type: 'string' },
    // Sandbox counts the router step's memory figures are taken at, comma-separated (default 10000).
    'router-tiers': { type: 'string' },
    only: { type: 'string' },
    out: { type: 'string' },
    // A git ref (main, a commit) whose build the streams step measures beside this one, interleaved.
    baseline: { type: 'string' },
    // Runs the sources instead of the bundle (tests of the bench itself; never for figures).
    'no-build': { type: 'boolean', default: false },
  },
});
const quick = values.quick === true;
const sandboxes = Number(values.sandboxes ?? (quick ? 2000 : 100_000));
const only = values.only?.split(',');
const unknown = only?.filter((s) => !(STEPS as readonly string[]).includes(s)) ?? [];
if (unknown.length > 0) {
  console.error(`bench: unknown step ${unknown.join(', ')} (steps: ${STEPS.join(', ')})`);
  process.exit(2);
}
const kwokSandboxes = values['kwok-sandboxes'] === undefined ? undefined : Number(values['kwok-sandboxes']);
const complete =
  only === undefined && values.sandboxes === undefined && kwokSandboxes === undefined && values['router-tiers'] === undefined;
const out = values.out ?? `${REPO_ROOT}${!quick && complete ? 'docs/bench' : 'test/bench/results'}/latest.json`;

const startedAt = new Date();
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? '',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  loadAverageAtStart: loadavg(),
};
if (values['no-build'] !== true) {
  // Measure what ships: the bundled service in dist/, as the image runs it.
  execFileSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  runBuilt.value = true;
}
const baseline = values.baseline === undefined ? undefined : buildBaseline(values.baseline);
const report = new Report();
const failedSteps: { step: string; error: string }[] = [];
const stepSeconds: Record<string, number> = {};
const step = async (name: (typeof STEPS)[number], work: () => Promise<unknown> | unknown) => {
  if (only && !only.includes(name)) return;
  const started = Date.now();
  console.log(`bench: ${name}...`);
  try {
    await work();
  } catch (error) {
    console.error(`bench: ${name} failed: ${(error as Error).stack ?? String(error)}`);
    failedSteps.push({ step: name, error: (error as Error).message });
  }
  stepSeconds[name] = Math.round((Date.now() - started) / 1000);
  console.log(`bench: ${name} done in ${stepSeconds[name]} s`);
};

await step('lookup', () => measureLookup(report, quick));
await step('answers', () => measureAnswerMemory(report, quick));
await step('path', () => measureEnvoyPath(report, quick));
await step('streams', () => measureStreams(report, quick, baseline));
await step('tail', () => measureTail(report, quick, baseline));
await step('wake', () => measureWake(report, quick));
await step('activity', () => measureActivity(report, quick));
await step('idle', () => measureIdle(report, quick));
await step('scale', () => measureScale(report, sandboxes, quick));
await step('kwok', () => measureKwokScale(report, { quick, ...(kwokSandboxes === undefined ? {} : { sandboxes: kwokSandboxes }) }));
const routerTiers = values['router-tiers']?.split(',').map(Number);
await step('router', () => measureRouter(report, { quick, ...(routerTiers === undefined ? {} : { memoryTiers: routerTiers }) }));

console.log(`\n${report.table()}\n`);
report.write(out, {
  date: startedAt.toISOString(),
  mode: quick ? 'quick' : 'full',
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  steps: only ?? STEPS,
  sandboxes,
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  stepSeconds,
  failedSteps,
  commit: git(['rev-parse', 'HEAD']),
  uncommittedChanges: git(['status', '--porcelain']) !== '',
  machine: { ...machine, loadAverageAtEnd: loadavg() },
  versions: versions(),
});
for (const f of failedSteps) console.error(`bench: step ${f.step} failed: ${f.error}`);
console.log(`written to ${out} (${quick ? 'quick' : 'full'} mode)`);
process.exit(report.passed && failedSteps.length === 0 ? 0 : 1);

/** Builds the service at `ref` (a detached worktree sharing this checkout's node_modules); its bundle. */
function buildBaseline(ref: string): Baseline {
  const commit = execFileSync('git', ['rev-parse', '--short', ref], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'sbx-baseline-'));
  execFileSync('git', ['worktree', 'add', '--detach', dir, commit], { cwd: REPO_ROOT, stdio: 'ignore' });
  process.on('exit', () => execFileSync('git', ['worktree', 'remove', '--force', dir], { cwd: REPO_ROOT, stdio: 'ignore' }));
  symlinkSync(`${REPO_ROOT}node_modules`, join(dir, 'node_modules'));
  execFileSync(process.execPath, ['scripts/build.ts'], { cwd: dir, stdio: 'inherit' });
  return { label: `${ref} (${commit})`, bundle: join(dir, 'dist/sandbox-extproc.mjs') };
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

/** The first line each real tool prints about its version. */
function versions(): Record<string, string> {
  const ask = (command: string, args: string[]) => {
    try {
      const text = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return text.trim().split('\n')[0] ?? '';
    } catch (error) {
      return `unknown (${(error as Error).message.split('\n')[0]})`;
    }
  };
  const tool = (variable: Tool) => {
    try {
      return toolPath(variable);
    } catch {
      return 'missing';
    }
  };
  // Tools go-installed by scripts/provision.sh report no version of their own: its pins say which.
  const pinned = (name: string) =>
    new RegExp(`^${name}_VERSION=(\\S+)$`, 'm').exec(readFileSync(`${REPO_ROOT}scripts/provision.sh`, 'utf8'))?.[1] ?? '';
  return {
    node: process.version,
    envoy: /\/(\d+\.\d+\.\d+)\//.exec(ask(tool('SBX_ENVOY'), ['--version']))?.[1] ?? 'unknown',
    kubeApiserver: ask(tool('SBX_KUBE_APISERVER'), ['--version']).replace(/^Kubernetes v/, ''),
    etcd: ask(tool('SBX_ETCD'), ['--version']).replace(/^etcd Version: /, ''),
    vegeta: pinned('VEGETA'),
    h2load: ask('h2load', ['--version']).replace(/^h2load nghttp2\//, ''),
    ghz: pinned('GHZ'),
  };
}
