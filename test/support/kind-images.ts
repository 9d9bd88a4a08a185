// The images the e2e suite loads into the kind node: the project's image, built from the Dockerfile,
// the Envoy image the chart names, and the Sandbox families' controllers (scripts/controller-images.sh,
// made by `scripts/provision.sh kind`). No registry is reachable: all must be in the local engine.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { CHART } from './helm.ts';
import { provisionedValue, REPO_ROOT } from './tools.ts';

const run = promisify(execFile);

export interface ImageRef {
  readonly repository: string;
  readonly tag: string;
  readonly ref: string;
}

const image = (repository: string, tag: string): ImageRef => ({ repository, tag, ref: `${repository}:${tag}` });

export interface E2eImages {
  readonly service: ImageRef;
  readonly envoy: ImageRef;
  readonly openkruiseController: ImageRef;
  readonly agentSandboxController: ImageRef;
}

const parse = (ref: string): ImageRef => {
  const at = ref.lastIndexOf(':');
  return image(ref.slice(0, at), ref.slice(at + 1));
};

export async function e2eImages(): Promise<E2eImages> {
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
  const openkruiseController = parse(provisionedValue('SBX_OPENKRUISE_IMAGE'));
  const agentSandboxController = parse(provisionedValue('SBX_AGENT_SANDBOX_IMAGE'));
  for (const [what, ref, how] of [
    ["the chart's Envoy image", envoy.ref, 'scripts/provision.sh images'],
    ["OpenKruise agents' controller image", openkruiseController.ref, 'scripts/provision.sh kind'],
    ["agent-sandbox's controller image", agentSandboxController.ref, 'scripts/provision.sh kind'],
  ] as const) {
    try {
      await run('docker', ['image', 'inspect', ref]);
    } catch (error) {
      throw new Error(`${what} ${ref} is not in the local engine: run ${how}`, { cause: error });
    }
  }
  return { service, envoy, openkruiseController, agentSandboxController };
}
