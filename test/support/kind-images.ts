// The images the e2e suite loads into the kind node: the project's image, built from the Dockerfile,
// and the Envoy image the chart names. No registry is reachable: both must be in the local engine.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { CHART } from './helm.ts';
import { REPO_ROOT } from './tools.ts';

const run = promisify(execFile);

export interface ImageRef {
  readonly repository: string;
  readonly tag: string;
  readonly ref: string;
}

const image = (repository: string, tag: string): ImageRef => ({ repository, tag, ref: `${repository}:${tag}` });

export async function e2eImages(): Promise<{ service: ImageRef; envoy: ImageRef }> {
  const values = parseYaml(readFileSync(`${CHART}/values.yaml`, 'utf8')) as { envoy: { image: { repository: string; tag: string } } };
  const envoy = image(values.envoy.image.repository, values.envoy.image.tag);
  const service = image('sandbox-extproc', 'e2e');
  try {
    await run('docker', ['build', '--quiet', '-t', service.ref, REPO_ROOT], {
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
      maxBuffer: 64 << 20,
    });
  } catch (error) {
    throw new Error(`building ${service.ref} from the Dockerfile failed: ${(error as { stderr?: string }).stderr ?? String(error)}`, {
      cause: error,
    });
  }
  try {
    await run('docker', ['image', 'inspect', envoy.ref]);
  } catch (error) {
    throw new Error(`the chart's Envoy image ${envoy.ref} is not in the local engine`, { cause: error });
  }
  return { service, envoy };
}
