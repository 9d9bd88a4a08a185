// The Sandbox families' own CRDs, as their releases ship them (provisioned with their controllers by
// scripts/provision.sh), which every test control plane installs unless told otherwise:
// - OpenKruise agents 0b72c83's config/crd/bases. That snapshot predates spec.autoPausePolicy (upstream
//   added it a week later, and the snapshot's schema would prune it), so the Sandbox CRD gets that one
//   property grafted on from test/fixtures/sandbox-crd.yaml: the controller ignores it either way; only
//   sandbox-extproc reads it.
// - agent-sandbox v1.0.1's k8s/crds (v1beta1 only; test/fixtures/agent-sandbox-crd-v1alpha1.yaml is the
//   older v1alpha1-only form, for the suite that covers it).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT, toolPath } from './tools.ts';

interface CrdShape {
  metadata: { name: string };
  spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: Record<string, unknown> } } } } }[] };
}

const specProperties = (crd: CrdShape): Record<string, unknown> =>
  (crd.spec.versions[0] as CrdShape['spec']['versions'][number]).schema.openAPIV3Schema.properties.spec.properties;

const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => join(dir, f));

/** OpenKruise agents' CRDs, the Sandbox one with spec.autoPausePolicy grafted on. */
export function openKruiseCrds(): object[] {
  const fixture = parseYaml(readFileSync(`${REPO_ROOT}test/fixtures/sandbox-crd.yaml`, 'utf8')) as CrdShape;
  const autoPausePolicy = specProperties(fixture)['autoPausePolicy'];
  return yamlFiles(join(toolPath('SBX_OPENKRUISE'), 'crds')).map((file) => {
    const crd = parseYaml(readFileSync(file, 'utf8')) as CrdShape;
    if (crd.metadata.name === 'sandboxes.agents.kruise.io') specProperties(crd)['autoPausePolicy'] = autoPausePolicy;
    return crd;
  });
}

/** agent-sandbox's CRD files. */
export function agentSandboxCrds(): string[] {
  return yamlFiles(join(toolPath('SBX_AGENT_SANDBOX'), 'crds'));
}

/** Both families' CRDs. */
export const familyCrds = (): (string | object)[] => [...openKruiseCrds(), ...agentSandboxCrds()];

/** The older agent-sandbox CRD that serves only v1alpha1 (agent-sandbox-v1alpha1.test.ts). */
export const AGENT_SANDBOX_V1ALPHA1_CRD = `${REPO_ROOT}test/fixtures/agent-sandbox-crd-v1alpha1.yaml`;
