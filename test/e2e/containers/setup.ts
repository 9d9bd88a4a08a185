// Global setup of the container suites: probe the Docker engine once (no engine: every file skips, and
// this one line says why), sweep what a killed earlier run left, check the base images are there
// (scripts/provision.sh images), and build the project's image with the README's `docker build`. The teardown
// removes every container and network of this run, whatever the tests did.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { TestProject } from 'vitest/node';
import { docker, imageExists, removeLabelled, RUN_LABEL, staleRuns, whyNoEngine } from '../../support/docker.ts';
import { dockerBuildCommand } from '../../support/readme.ts';
import { REPO_ROOT } from '../../support/tools.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Why the container suites skip; empty when an engine answers. */
    containerSkip: string;
    runId: string;
    /** The image built from the Dockerfile. */
    image: string;
    /** What the README's `<your-registry>` placeholder stands for here. */
    registry: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const reason = await whyNoEngine();
  project.provide('containerSkip', reason ?? '');
  project.provide('runId', '');
  project.provide('image', '');
  project.provide('registry', '');
  if (reason !== undefined) {
    console.warn(`container suites skipped: ${reason}`);
    return undefined;
  }
  for (const stale of await staleRuns()) await removeLabelled(`${RUN_LABEL}=${stale}`);
  const runId = `${process.pid}-${Date.now().toString(36)}`;
  project.provide('runId', runId);

  const dockerfile = readFileSync(`${REPO_ROOT}Dockerfile`, 'utf8');
  const values = readFileSync(`${REPO_ROOT}charts/sandbox-extproc/values.yaml`, 'utf8');
  const envoy = /^envoy:\n(?:\s.*\n)*?\s+repository: (\S+)\n\s+tag: (\S+)/m.exec(values);
  const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1] as string).filter((b) => b !== 'scratch');
  for (const ref of [...bases, `${envoy?.[1]}:${envoy?.[2]}`]) {
    if (!(await imageExists(ref))) throw new Error(`${ref} is not in the Docker engine: run scripts/provision.sh images`);
  }
  // One image namespace per checkout, so that two checkouts on one engine never share a tag.
  const registry = `sbx-${createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 8)}`;
  const appVersion = /^appVersion: '?([^'\n]+)'?$/m.exec(readFileSync(`${REPO_ROOT}charts/sandbox-extproc/Chart.yaml`, 'utf8'))?.[1];
  const image = `${registry}/sandbox-extproc:${appVersion}`;
  // The README's own `docker build`, its <your-registry> placeholder standing for this checkout's.
  const build = dockerBuildCommand().map((word) => word.replaceAll('<your-registry>', registry));
  const tag = build[build.indexOf('--tag') + 1];
  if (tag !== image) throw new Error(`README: docker build tags ${tag}, but the chart's appVersion makes ${image}`);
  const started = Date.now();
  await docker([...build.slice(0, -1), '--quiet', build.at(-1) === '.' ? REPO_ROOT : (build.at(-1) as string)], {
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  console.log(
    `container suites: built ${image} from the Dockerfile in ${((Date.now() - started) / 1000).toFixed(1)} s (docker ${build.join(' ')})`,
  );
  project.provide('image', image);
  project.provide('registry', registry);
  return async () => {
    await removeLabelled(`${RUN_LABEL}=${runId}`);
  };
}
