// What this build is: the version and commit, stamped into the bundle by scripts/build.ts (esbuild's
// define); run from the sources (npm run dev, the tests), package.json's version and an "unknown" commit.
import { readFileSync } from 'node:fs';

declare const __BUILD_STAMP__: { readonly version: string; readonly commit: string } | undefined;

function fromSources(): { readonly version: string; readonly commit: string } {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return { version: pkg.version, commit: 'unknown' };
}

export const BUILD: { readonly version: string; readonly commit: string; readonly node: string } = Object.freeze({
  ...(typeof __BUILD_STAMP__ === 'undefined' ? fromSources() : __BUILD_STAMP__),
  node: process.versions.node,
});

/** `sandbox-extproc --version`. */
export const versionText = (): string => `sandbox-extproc ${BUILD.version} (commit ${BUILD.commit}, node ${BUILD.node})`;
