// agent-sandbox's own SDK end-to-end suites, from its Go module v1.0.1, run in kind against this chart in
// place of agent-sandbox's router (issue 25): the Python suite (test/e2e/clients/python/
// test_e2e_python_sdk.py, with PyPI's k8s-agent-sandbox 1.0.8, the SDK it imports) and the TypeScript
// suite (test/e2e/clients/typescript, with the TypeScript client from the same module), with agent-sandbox's
// real controller and its extensions (test/support/kind-agent-sandbox-sdk.ts) and their sandbox runtime
// image (scripts/agent-sandbox-sdk.sh). The module has no Go SDK suite (test/e2e/clients holds Python
// and TypeScript only): its Go client's own example (clients/go/examples/basic) stands for one. Their
// TypeScript suite at v1.0.1 only claims sandboxes (its runtime tests are skipped upstream), so the
// routing proof is the Python suite's and the Go example's.
// Their suites run unchanged but for these, each for a reason:
// - the router manifest their Python suite applies in each test namespace is this chart, rendered to
//   present as their router (routerManifest): that is the point;
// - images are named by their variables (IMAGE_PREFIX, IMAGE_TAG) for the locally built runtime image;
// - their gateway-mode tests need a Gateway of class cloud-provider-kind, and cloud-provider-kind is not
//   on the Go module proxy: a GatewayClass of that name is served by Envoy Gateway (installed from its
//   chart, its proxies on the chart's Envoy image), and a stand-in gives its LoadBalancer Services the
//   kind node's address (test/support/kind-agent-sandbox-sdk.ts);
// - the cluster gets a default StorageClass with local volumes for their volumeClaimTemplates test (the
//   project's node image has no dynamic provisioner).
// Where no Docker engine can run, the suite skips with one line saying why.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cloudProviderKindClass,
  installAgentSandbox,
  localStorage,
  routerManifest,
  standInLoadBalancer,
} from '../support/kind-agent-sandbox-sdk.ts';
import { ENVOY_GATEWAY_NAMESPACE, gatewayImages, installEnvoyGateway } from '../support/kind-gateway.ts';
import { e2eImages, type E2eImages } from '../support/kind-images.ts';
import { KindCluster, whyNoEngine } from '../support/kind.ts';
import { provisionedPaths, REPO_ROOT } from '../support/tools.ts';

const skipReason = whyNoEngine();
if (skipReason !== undefined) console.warn(`agent-sandbox SDK e2e suite skipped: no Docker engine can run here (${skipReason})`);

const CLUSTER = 'sbx-as-sdk';
const MINUTE = 60_000;
const ROUTER_MANIFEST = 'clients/python/agentic-sandbox-client/sandbox-router/sandbox_router.yaml';
/**
 * Their gateway-mode tests, and Envoy Gateway for them, run unless SBX_E2E_SDK_GATEWAY=0
 * (about 80 s of the suite's 220 to 250 s warm: see the README), which leaves them out (deselected by name) for
 * a quicker run of the rest.
 */
const GATEWAY_MODE = process.env['SBX_E2E_SDK_GATEWAY'] !== '0';
const PYTHON_TESTS = [
  'test_python_sdk_router_mode',
  'test_python_sdk_annotation',
  'test_python_sdk_router_mode_warmpool',
  ...(GATEWAY_MODE ? ['test_python_sdk_gateway_mode', 'test_python_sdk_gateway_mode_warmpool'] : []),
  'test_python_sdk_volume_claim_templates',
];
if (!GATEWAY_MODE) console.warn('agent-sandbox SDK e2e: their gateway-mode tests left out (SBX_E2E_SDK_GATEWAY=0)');

interface Run {
  readonly code: number | null;
  readonly output: string;
}

/** Runs a command to its end, its output kept (and echoed on failure by the assertion's message). */
function runToEnd(command: string, args: readonly string[], cwd: string, env: Record<string, string>, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe.skipIf(skipReason !== undefined)("agent-sandbox's own SDK suites, against the chart as its router", () => {
  let cluster: KindCluster;
  let images: E2eImages;
  let paths: Record<string, string>;
  /** Their work tree, with this chart as their router manifest (the rest linked from the provisioned copy). */
  let tree: string;
  let env: Record<string, string>;
  let stopLoadBalancer: (() => void) | undefined;

  beforeAll(async () => {
    let started = Date.now();
    const lap = (what: string) => {
      console.info(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      started = Date.now();
    };
    paths = provisionedPaths();
    const runtime = paths['SBX_AGENT_SANDBOX_RUNTIME_IMAGE'] as string;
    images = await e2eImages();
    lap('images ready');
    cluster = await KindCluster.create(CLUSTER, []);
    lap('kind cluster created, node Ready');
    await cluster.loadImages([
      images.service.ref,
      images.envoy.ref,
      images.agentSandboxController.ref,
      runtime,
      ...(GATEWAY_MODE ? [gatewayImages().envoyGateway] : []),
    ]);
    lap('images loaded into the node');
    await Promise.all([
      installAgentSandbox(cluster.admin, images.agentSandboxController.ref),
      GATEWAY_MODE
        ? installEnvoyGateway(cluster.admin, cluster.kubeconfigPath, join(REPO_ROOT, 'examples/envoy-gateway/envoy-gateway-values.yaml'))
        : undefined,
    ]);
    const objects = KubernetesObjectApi.makeApiClient(cluster.admin);
    for (const object of [...localStorage(4), ...(GATEWAY_MODE ? cloudProviderKindClass(images.envoy.ref, ENVOY_GATEWAY_NAMESPACE) : [])]) {
      await objects.create(object as KubernetesObject);
    }
    if (GATEWAY_MODE) {
      const nodeIP = execFileSync('docker', ['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', cluster.node], {
        encoding: 'utf8',
      }).trim();
      stopLoadBalancer = standInLoadBalancer(cluster.admin, ENVOY_GATEWAY_NAMESPACE, nodeIP);
    }
    lap(`agent-sandbox's controller (with extensions), storage${GATEWAY_MODE ? ' and Envoy Gateway' : ''} installed`);

    const provisioned = paths['SBX_AGENT_SANDBOX_SDK_TREE'] as string;
    tree = mkdtempSync(join(tmpdir(), 'sbx-as-sdk-'));
    symlinkSync(join(provisioned, 'test'), join(tree, 'test'));
    symlinkSync(join(provisioned, 'examples'), join(tree, 'examples'));
    mkdirSync(join(tree, dirname(ROUTER_MANIFEST)), { recursive: true });
    symlinkSync(
      join(provisioned, 'clients/python/agentic-sandbox-client/gateway-kind'),
      join(tree, 'clients/python/agentic-sandbox-client/gateway-kind'),
    );
    symlinkSync(join(provisioned, 'clients/typescript'), join(tree, 'clients/typescript'));
    writeFileSync(join(tree, ROUTER_MANIFEST), routerManifest(images.service));
    const at = runtime.lastIndexOf(':');
    env = {
      KUBECONFIG: cluster.kubeconfigPath,
      // Their suites run kubectl (apply, port-forward): the one built with the node's binaries.
      PATH: `${dirname(paths['SBX_KUBECTL'] as string)}:${process.env['PATH'] ?? ''}`,
      IMAGE_PREFIX: runtime.slice(0, at).replace(/python-runtime-sandbox$/, ''),
      IMAGE_TAG: runtime.slice(at + 1),
    };
  }, 30 * MINUTE);

  afterAll(async () => {
    stopLoadBalancer?.();
    // SBX_E2E_KEEP=1 leaves the cluster up to look at (scripts/kind.sh delete cluster --name sbx-as-sdk).
    if (process.env['SBX_E2E_KEEP'] === '1') await cluster?.audit.stop();
    else await cluster?.delete();
  }, 5 * MINUTE);

  it(
    `the Python SDK suite passes: router (tunnel)${GATEWAY_MODE ? ' and gateway modes' : ' mode'}, with and without a warm pool, the claim annotation, volume claim templates`,
    async () => {
      const venv = paths['SBX_AGENT_SANDBOX_SDK_VENV'] as string;
      const junit = join(tree, 'python-junit.xml');
      const result = await runToEnd(
        join(venv, 'bin', 'python'),
        [
          '-m',
          'pytest',
          'test/e2e/clients/python/test_e2e_python_sdk.py',
          '-v',
          '-p',
          'no:cacheprovider',
          `--junitxml=${junit}`,
          ...(GATEWAY_MODE ? [] : ['-k', 'not gateway_mode']),
        ],
        tree,
        env,
        25 * MINUTE,
      );
      expect(result.code, result.output).toBe(0);
      const report = readFileSync(junit, 'utf8');
      const tests = Number(/tests="(\d+)"/.exec(report)?.[1]);
      expect(Number(/failures="(\d+)"/.exec(report)?.[1]), result.output).toBe(0);
      expect(Number(/errors="(\d+)"/.exec(report)?.[1]), result.output).toBe(0);
      // Every test of theirs (but the gateway-mode ones when left out) ran and passed.
      expect(tests - Number(/skipped="(\d+)"/.exec(report)?.[1] ?? 0)).toBe(PYTHON_TESTS.length);
      for (const name of PYTHON_TESTS) expect(report).toContain(`name="${name}"`);
      // Their SDK's tunnels went to the chart's pods (the only way on from there to a sandbox is its Envoy
      // and sandbox-extproc): port-forwards to sandbox-router-deployment's pods in the suite's namespaces.
      const tunnels = cluster
        .auditEvents()
        .filter((e) => e.objectRef?.subresource === 'portforward' && (e.objectRef.namespace ?? '').startsWith('py-sdk-e2e-'))
        .map((e) => e.objectRef?.name ?? '');
      expect(tunnels.length).toBeGreaterThanOrEqual(3);
      for (const pod of tunnels) expect(pod).toMatch(/^sandbox-router-deployment-/);
    },
    30 * MINUTE,
  );

  it(
    "their Go client's own example runs through the chart: its tunnel finds sandbox-router-svc's ready endpoint and port-forwards to its port 8080",
    async () => {
      // clients/go/examples/basic, unchanged: namespace default, warm pool my-warmpool; a command, a file
      // written and read back, a listing, the sandbox re-attached by its claim.
      const template = readFileSync(join(tree, 'test/e2e/clients/python/test_manifests/sandbox_template.yaml'), 'utf8')
        .replaceAll('{image_prefix}', env['IMAGE_PREFIX'] as string)
        .replaceAll('{image_tag}', env['IMAGE_TAG'] as string);
      const pool =
        'apiVersion: extensions.agents.x-k8s.io/v1beta1\nkind: SandboxWarmPool\nmetadata: { name: my-warmpool }\n' +
        'spec: { replicas: 1, sandboxTemplateRef: { name: python-sdk-test-template } }\n';
      const kubectl = paths['SBX_KUBECTL'] as string;
      for (const manifest of [template, pool, readFileSync(join(tree, ROUTER_MANIFEST), 'utf8')]) {
        const file = join(tree, `apply-${Math.random().toString(36).slice(2)}.yaml`);
        writeFileSync(file, manifest);
        const applied = await runToEnd(kubectl, ['apply', '-n', 'default', '-f', file], tree, env, MINUTE);
        expect(applied.code, applied.output).toBe(0);
      }
      const rolled = await runToEnd(
        kubectl,
        ['rollout', 'status', '-n', 'default', 'deployment/sandbox-router-deployment', '--timeout=300s'],
        tree,
        env,
        6 * MINUTE,
      );
      expect(rolled.code, rolled.output).toBe(0);
      const result = await runToEnd(paths['SBX_AGENT_SANDBOX_GO_EXAMPLE'] as string, [], tree, env, 10 * MINUTE);
      expect(result.code, result.output).toBe(0);
      expect(result.output).toContain('stdout: Hello from Go!');
      expect(result.output).toContain('exit_code: 0');
      expect(result.output).toContain('file content: Hello, world!');
      expect(result.output).toContain('re-attach stdout: re-attached!');
      const tunnels = cluster
        .auditEvents()
        .filter((e) => e.objectRef?.subresource === 'portforward' && e.objectRef.namespace === 'default')
        .map((e) => e.objectRef?.name ?? '');
      expect(tunnels.length).toBeGreaterThanOrEqual(1);
      for (const pod of tunnels) expect(pod).toMatch(/^sandbox-router-deployment-/);
    },
    15 * MINUTE,
  );

  it(
    'the TypeScript SDK suite passes (claims from a cold and a warm pool)',
    async () => {
      const dir = join(tree, 'test/e2e/clients/typescript');
      // Their `pretest` builds the client, as the work tree's provisioning already did; vitest runs as `npm test` would.
      const run = await runToEnd(join(dir, 'node_modules', '.bin', 'vitest'), ['run', '--reporter=verbose'], dir, env, 15 * MINUTE);
      // eslint-disable-next-line no-control-regex -- its colours
      const result = { ...run, output: run.output.replace(/\u001b\[[0-9;]*m/g, '') };
      expect(result.code, result.output).toBe(0);
      expect(result.output).toMatch(/provisions and deletes a sandbox from a cold pool/);
      expect(result.output).toMatch(/provisions and deletes a sandbox from a warm pool/);
      expect(result.output).toMatch(/Tests\s+2 passed/);
    },
    20 * MINUTE,
  );
});
