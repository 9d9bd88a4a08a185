// `npm run build`: type-checks the service, then bundles it into one ESM file, dist/sandbox-extproc.mjs,
// which the image runs. One file instead of ~1,500 modules (client-node's generated API alone is
// ~1,000) costs ~50 MB less resident memory and starts faster; see docs/benchmarks.md. The bundle needs
// no node_modules at run time, only proto/ beside dist/.
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';

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
});
