// `node scripts/measure-image.ts [--runs 5] [--sandboxes 100]`: the image's figures for
// docs/benchmarks.md, on the real Docker engine. Builds the Dockerfile, then measures
// - its size (the engine's count of the image's bytes);
// - start to ready: from the container's start (the engine's StartedAt) to the log line saying its
//   routes are loaded (the engine's timestamp of that line), with file routes, and with a real
//   kube-apiserver holding N Sandboxes (in-cluster config, the chart's ServiceAccount rights);
// - idle RSS: the process's VmRSS 10 s after ready, with no traffic.
// Medians of --runs runs. Needs a Docker engine and the base images (scripts/provision.sh docker images).
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { ControlPlane } from '../test/support/controlplane.ts';
import { buildImage, createNetwork, docker, inspect, removeLabelled, runLabels, waitForContainerLog } from '../test/support/docker.ts';
import { writeSandbox } from '../test/support/sandbox-objects.ts';
import { REPO_ROOT } from '../test/support/tools.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, sandboxes: { type: 'string', default: '100' } } });
const runs = Number(values.runs);
const sandboxCount = Number(values.sandboxes);
const runId = `${process.pid}-measure`;
const labels = runLabels(runId);
const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
const image = 'sandbox-extproc:measure';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

interface Sample {
  readyMs: number;
  rssMb: number;
}

/** Starts a container (created first, so that only the start is timed) and measures it. */
async function sample(args: string[], readyLine: RegExp): Promise<Sample> {
  const id = (await docker(['create', '--pull', 'never', ...labelArgs, '--read-only', '--cap-drop', 'ALL', ...args])).trim();
  await docker(['start', id]);
  await waitForContainerLog(id, readyLine, 60_000);
  const started = Date.parse(JSON.parse(await docker(['inspect', '--format', '{{json .State.StartedAt}}', id])) as string);
  const logs = await docker(['logs', '--timestamps', id]);
  const line = logs.split('\n').find((l) => readyLine.test(l)) as string;
  const readyMs = Date.parse(line.slice(0, line.indexOf(' '))) - started;
  await new Promise((resolve) => setTimeout(resolve, 10_000));
  const status = readFileSync(`/proc/${(await inspect(id)).pid}/status`, 'utf8');
  const rssMb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
  await docker(['rm', '-f', id]);
  return { readyMs, rssMb };
}

try {
  console.log(`building ${image} from the Dockerfile`);
  await buildImage(REPO_ROOT, image);
  const size = Number(await docker(['image', 'inspect', '--format', '{{.Size}}', image]));
  console.log(`image size: ${(size / 1e6).toFixed(1)} MB`);

  const dir = mkdtempSync(join(tmpdir(), 'sbx-measure-'));
  chmodSync(dir, 0o755);
  writeFileSync(
    join(dir, 'routes.yaml'),
    `routes:\n${Array.from({ length: 10 }, (_, i) => `  - { id: s${i}, podIP: 10.1.0.${i + 1} }`).join('\n')}\n`,
  );
  chmodSync(join(dir, 'routes.yaml'), 0o644);
  const file: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    file.push(
      await sample(
        [...['--volume', `${dir}/routes.yaml:/routes.yaml:ro`, image, '--route-source', 'file', '--routes-file', '/routes.yaml']],
        /"msg":"sandbox-extproc listening"/,
      ),
    );
  }

  // The service in-cluster, against a real API server on this host, as the chart's pod runs it.
  const network = await createNetwork(`${runId}-net`, labels);
  const plane = await ControlPlane.start({ bindAddress: network.gateway, auditPolicy: false });
  const kube: Sample[] = [];
  try {
    await plane.ensureNamespace('tenants');
    await plane.serviceIdentity('sandbox-extproc', ['tenants']);
    // Routes to hold at start-up, written as OpenKruise's controller leaves running sandboxes.
    for (let i = 0; i < sandboxCount; i++) {
      await writeSandbox(plane.admin, {
        family: 'openkruise',
        namespace: 'tenants',
        name: `s${i}`,
        state: { running: `10.2.${i >> 8}.${i & 255}` },
      });
    }
    const token = await plane.admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
      name: 'sandbox-extproc',
      namespace: 'sandbox-extproc-system',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600, audiences: [] } },
    });
    const sa = mkdtempSync(join(tmpdir(), 'sbx-measure-sa-'));
    chmodSync(sa, 0o755);
    writeFileSync(join(sa, 'token'), token.status?.token ?? '');
    writeFileSync(join(sa, 'ca.crt'), readFileSync(plane.certs.caCert));
    writeFileSync(join(sa, 'namespace'), 'sandbox-extproc-system');
    for (const f of ['token', 'ca.crt', 'namespace']) chmodSync(join(sa, f), 0o644);
    const api = new URL(plane.url);
    for (let i = 0; i < runs; i++) {
      kube.push(
        await sample(
          [
            ...['--network', network.name, '--volume', `${sa}:/var/run/secrets/kubernetes.io/serviceaccount:ro`],
            ...['--env', `KUBERNETES_SERVICE_HOST=${api.hostname}`, '--env', `KUBERNETES_SERVICE_PORT=${api.port}`],
            ...[image, '--namespaces', 'tenants'],
          ],
          /"msg":"routes synced from Kubernetes"/,
        ),
      );
    }
  } finally {
    await plane.stop();
  }
  const show = (name: string, xs: Sample[]) =>
    console.log(
      `${name}: start to ready ${median(xs.map((x) => x.readyMs))} ms (runs: ${xs.map((x) => x.readyMs).join(', ')}), idle RSS ${median(xs.map((x) => x.rssMb)).toFixed(1)} MB`,
    );
  show('file routes (10)', file);
  show(`Kubernetes routes (${sandboxCount} Sandboxes, in-cluster)`, kube);
} finally {
  await removeLabelled(`sandbox-extproc.test-run=${runId}`);
}
