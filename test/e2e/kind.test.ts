// End to end on a real cluster: kind (in Docker, driven through testcontainers), the project's image
// built and loaded, the Helm chart installed in sidecar mode (Envoy + sandbox-extproc in one pod), the
// Sandbox CRD, and stand-in sandbox pods. The test controller shared with the integration suite plays
// the OpenKruise controller. Where no Docker engine runs, the suite skips with one line saying why.
// Run it where Docker exists: `scripts/provision.sh kind helm && npm run test:e2e`.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, PortForward, type V1Deployment } from '@kubernetes/client-node';
import { GenericContainer, getContainerRuntimeClient } from 'testcontainers';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForObject } from '../support/controlplane.ts';
import { CHART, helm } from '../support/helm.ts';
import { httpGet } from '../support/http.ts';
import { SandboxController } from '../support/sandbox-controller.ts';
import { REPO_ROOT, toolPath } from '../support/tools.ts';

async function whyNoEngine(): Promise<string | undefined> {
  try {
    await getContainerRuntimeClient();
    return undefined;
  } catch (error) {
    return (error as Error).message.split('\n')[0];
  }
}

const skipReason = await whyNoEngine();
if (skipReason !== undefined) console.warn(`e2e suite skipped: no Docker engine is reachable (${skipReason})`);

const CLUSTER = 'sandbox-extproc-e2e';
const IMAGE = 'sandbox-extproc:e2e';
const SYSTEM = 'sandbox-system';
const TENANTS = 'tenants';

describe.skipIf(skipReason !== undefined)('kind cluster with the Helm chart', () => {
  let kubeconfigPath: string;
  let admin: KubeConfig;
  let controller: SandboxController;
  let forward: Server;
  let edge: string;
  const kind = (...args: string[]) =>
    execFileSync(toolPath('SANDBOX_EXTPROC_KIND'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

  beforeAll(async () => {
    kubeconfigPath = join(mkdtempSync(join(tmpdir(), 'sbx-e2e-')), 'kubeconfig');
    await GenericContainer.fromDockerfile(REPO_ROOT).build(IMAGE, { deleteOnExit: false });
    kind('create', 'cluster', '--name', CLUSTER, '--kubeconfig', kubeconfigPath, '--wait', '180s');
    kind('load', 'docker-image', IMAGE, '--name', CLUSTER);
    admin = new KubeConfig();
    admin.loadFromFile(kubeconfigPath);
    const objects = KubernetesObjectApi.makeApiClient(admin);
    await objects.create(parseYaml(readFileSync(`${REPO_ROOT}test/fixtures/sandbox-crd.yaml`, 'utf8')));
    const core = admin.makeApiClient(CoreV1Api);
    for (const name of [SYSTEM, TENANTS]) await core.createNamespace({ body: { metadata: { name } } });
    await admin.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: TENANTS, body: standInSandbox() });
    helm([
      'install',
      'edge',
      CHART,
      '--kubeconfig',
      kubeconfigPath,
      '--namespace',
      SYSTEM,
      '--set',
      'image.repository=sandbox-extproc',
      '--set',
      'image.tag=e2e',
      '--set',
      'image.pullPolicy=Never',
      '--set',
      `watchNamespaces[0]=${TENANTS}`,
      '--set',
      'replicaCount=1',
      '--wait',
      '--timeout',
      '5m',
    ]);
    await waitForObject(
      admin,
      `/apis/apps/v1/namespaces/${TENANTS}/deployments`,
      {},
      (d) => ((d as V1Deployment).status?.availableReplicas ?? 0) >= 1,
      180_000,
    );
    controller = new SandboxController(admin, { resumeDelayMs: 1000 });
    await controller.start();
    // Reach Envoy's edge port in the pod through the API server's port-forward.
    const pods = await core.listNamespacedPod({ namespace: SYSTEM, labelSelector: 'app.kubernetes.io/name=sandbox-extproc' });
    const pod = pods.items[0]?.metadata?.name as string;
    const portForward = new PortForward(admin);
    forward = createServer((socket) => void portForward.portForward(SYSTEM, pod, [8080], socket, null, socket));
    await new Promise<void>((resolve) => forward.listen(0, '127.0.0.1', resolve));
    edge = `http://127.0.0.1:${(forward.address() as AddressInfo).port}`;
  }, 900_000);

  afterAll(async () => {
    controller?.stop();
    forward?.close();
    if (kubeconfigPath) kind('delete', 'cluster', '--name', CLUSTER, '--kubeconfig', kubeconfigPath);
  });

  async function standInIP(): Promise<string> {
    const pods = await admin.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: TENANTS, labelSelector: 'app=stand-in' });
    return pods.items[0]?.status?.podIP as string;
  }

  it('routes to a running sandbox pod', async () => {
    await controller.create({ namespace: TENANTS, name: 'awake', podIP: await standInIP() });
    const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': `${TENANTS}--awake` });
    expect(res.status).toBe(200);
    expect(res.body).toContain('stand-in');
  });

  it('wakes a paused sandbox on traffic and serves the request', async () => {
    await controller.create({ namespace: TENANTS, name: 'asleep', podIP: await standInIP(), paused: true, wake: { by: 'policy' } });
    const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': `${TENANTS}--asleep` }, 60_000);
    expect(res.status).toBe(200);
    expect(Number(res.headers['x-sandbox-wake-ms'])).toBeGreaterThan(0);
    expect((await controller.get(TENANTS, 'asleep')).spec?.paused).toBe(false);
  });

  it('answers an unknown sandbox with the JSON error', async () => {
    const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': `${TENANTS}--nobody` });
    expect(res.status).toBe(502);
    expect(res.json()['error']).toBe('sandbox_not_found');
  });
});

/** A pod answering on the E2B agent port, built from the Node image the project's image already uses. */
function standInSandbox(): V1Deployment {
  const script = "require('http').createServer((q,s)=>s.end('stand-in '+require('os').hostname())).listen(49983)";
  return {
    metadata: { name: 'stand-in', namespace: TENANTS },
    spec: {
      selector: { matchLabels: { app: 'stand-in' } },
      template: {
        metadata: { labels: { app: 'stand-in' } },
        spec: {
          containers: [
            {
              name: 'sandbox',
              image: 'node:24-bookworm-slim',
              command: ['node', '-e', script],
              ports: [{ containerPort: 49983 }],
              securityContext: {
                runAsNonRoot: true,
                runAsUser: 65532,
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
        },
      },
    },
  };
}
