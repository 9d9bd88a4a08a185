// `npm run build`: type-checks the service, then bundles it into one ESM file, dist/sandbox-extproc.mjs,
// which the image runs. One file instead of ~1,500 modules (client-node's generated API alone is
// ~1,000) costs ~50 MB less resident memory and starts faster; see docs/benchmarks.md. The bundle needs
// no node_modules at run time, only proto/ beside dist/.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

/** The commit stamped into the bundle (src/version.ts): BUILD_COMMIT (the image's build argument), else git's. */
function commit(): string {
  if ((process.env['BUILD_COMMIT'] ?? '') !== '') return process.env['BUILD_COMMIT'] as string;
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}
const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;

execFileSync('npx', ['--no-install', 'tsc', '-p', 'tsconfig.build.json', '--noEmit'], { stdio: 'inherit' });
await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/sandbox-extproc.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  sourcemap: true,
  // Bundled CommonJS dependencies call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
  define: { __BUILD_STAMP__: JSON.stringify({ version, commit: commit() }) },
});
