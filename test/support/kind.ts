// A real kind cluster for the e2e suite, made with scripts/kind.sh: the project's offline node image, and
// docker's --privileged replaced where this host's engine refuses it. The node's NodePorts are published
// on loopback only (every test request goes to 127.0.0.1), and the API server writes an audit log that
// the suite streams from the node (`tail -F`), so waits on API activity are on logged lines; likewise
// `nft monitor` shows when kube-proxy has programmed a Service's endpoints.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { Exec, KubeConfig, Watch } from '@kubernetes/client-node';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { TestProcess } from './process.ts';
import { REPO_ROOT } from './tools.ts';

const run = promisify(execFile);
const KIND = `${REPO_ROOT}scripts/kind.sh`;
const BASE_CONFIG = `${REPO_ROOT}scripts/kind-node/cluster.yaml`;
const AUDIT_POLICY = `${REPO_ROOT}test/fixtures/kind-audit-policy.yaml`;
const AUDIT_LOG = '/var/log/kubernetes/audit/audit.log';

/** Why no cluster can be made here (no Docker engine answers), or undefined when one can. */
export function whyNoEngine(): string | undefined {
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    return undefined;
  } catch (error) {
    const e = error as { code?: string; stderr?: Buffer; message: string };
    if (e.code === 'ENOENT') return 'no docker command on PATH';
    return (e.stderr?.toString() || e.message).trim().split('\n')[0];
  }
}

export interface AuditEvent {
  readonly stage: string;
  readonly verb: string;
  readonly requestURI: string;
  readonly user: { username: string };
  readonly sourceIPs?: string[];
  readonly objectRef?: { resource?: string; apiGroup?: string; namespace?: string; name?: string; subresource?: string };
  readonly responseStatus?: { code?: number };
}

export class KindCluster {
  readonly name: string;
  readonly kubeconfigPath: string;
  readonly admin: KubeConfig;
  readonly node: string;
  /** The API server's audit log, streamed from the node. */
  readonly audit: TestProcess;
  /** The node's nftables rule changes (kube-proxy runs in nftables mode), streamed from the node. */
  readonly nft: TestProcess;
  readonly #hostPorts: Map<number, number>;

  private constructor(name: string, kubeconfigPath: string, hostPorts: Map<number, number>) {
    this.name = name;
    this.kubeconfigPath = kubeconfigPath;
    this.node = `${name}-control-plane`;
    this.admin = new KubeConfig();
    this.admin.loadFromFile(kubeconfigPath);
    this.#hostPorts = hostPorts;
    this.audit = new TestProcess('audit', 'docker', ['exec', this.node, 'tail', '-n', '+1', '-F', AUDIT_LOG]);
    this.nft = new TestProcess('nft', 'docker', ['exec', this.node, 'nft', 'monitor', 'rules']);
  }

  /**
   * Resolves once kube-proxy has programmed the Service port's load-balancing rule with every one of
   * these pod IPs (the `add rule` of its service chain, as `nft monitor` reports the committed change).
   * The monitor starts with the cluster, before any Service of the suite exists.
   */
  async waitForServiceEndpoints(
    namespace: string,
    service: string,
    portName: string,
    podIPs: readonly string[],
    timeoutMs: number,
  ): Promise<void> {
    const chain = `-${namespace}/${service}/tcp/${portName} `;
    await this.nft.waitFor(
      (line) =>
        line.startsWith('add rule ip kube-proxy service-') && line.includes(chain) && podIPs.every((ip) => line.includes(`__${ip}/`)),
      timeoutMs,
      `kube-proxy rule for ${namespace}/${service}:${portName || '(unnamed)'} with ${podIPs.join(', ')}`,
    );
  }

  /**
   * Creates the cluster (deleting a leftover one of the same name first), with `nodePorts` published
   * on 127.0.0.1 at free ports. `kind create cluster --wait` returns once the node is Ready.
   */
  static async create(name: string, nodePorts: readonly number[]): Promise<KindCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'sbx-kind-'));
    const kubeconfigPath = join(dir, 'kubeconfig');
    const configPath = join(dir, 'cluster.yaml');
    writeFileSync(configPath, toYaml(clusterConfig(nodePorts)));
    await kind(['delete', 'cluster', '--name', name]);
    await kind(['create', 'cluster', '--name', name, '--config', configPath, '--kubeconfig', kubeconfigPath, '--wait', '5m']);
    const hostPorts = new Map<number, number>();
    for (const nodePort of nodePorts) {
      const { stdout } = await run('docker', ['port', `${name}-control-plane`, `${nodePort}/tcp`]);
      const match = /^127\.0\.0\.1:(\d+)$/m.exec(stdout);
      if (!match) throw new Error(`node port ${nodePort} is not published on 127.0.0.1: ${stdout}`);
      hostPorts.set(nodePort, Number(match[1]));
    }
    return new KindCluster(name, kubeconfigPath, hostPorts);
  }

  /** The loopback port where the node's `nodePort` is published. */
  hostPort(nodePort: number): number {
    const port = this.#hostPorts.get(nodePort);
    if (port === undefined) throw new Error(`node port ${nodePort} was not published`);
    return port;
  }

  /**
   * Imports local Docker images into the node's containerd (`kind load docker-image`), in one archive:
   * layers the images share are sent once.
   */
  async loadImages(images: readonly string[]): Promise<void> {
    await kind(['load', 'docker-image', ...images, '--name', this.name]);
  }

  /** Runs a command on the node. */
  async exec(args: readonly string[]): Promise<string> {
    return (await run('docker', ['exec', this.node, ...args], { maxBuffer: 64 << 20 })).stdout;
  }

  /** Resolves with the first audit event (already logged or future) that satisfies the predicate. */
  async waitForAudit(predicate: (event: AuditEvent) => boolean, timeoutMs: number, what: string): Promise<AuditEvent> {
    const line = await this.audit.waitFor((l) => predicate(parseAudit(l)), timeoutMs, what);
    return parseAudit(line);
  }

  auditEvents(): AuditEvent[] {
    return this.audit.lines.map(parseAudit).filter((e) => e.verb !== '');
  }

  async delete(): Promise<void> {
    await Promise.all([this.audit.stop(), this.nft.stop()]);
    await kind(['delete', 'cluster', '--name', this.name]);
  }
}

async function kind(args: readonly string[]): Promise<void> {
  try {
    await run(KIND, args, { maxBuffer: 64 << 20 });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`scripts/kind.sh ${args.join(' ')} failed:\n${e.stderr ?? ''}${e.stdout ?? ''}`, { cause: error });
  }
}

function parseAudit(line: string): AuditEvent {
  try {
    return JSON.parse(line) as AuditEvent;
  } catch {
    return { stage: '', verb: '', requestURI: '', user: { username: '' } };
  }
}

/** The node image's cluster configuration, plus published NodePorts and the API server's audit log. */
function clusterConfig(nodePorts: readonly number[]): Record<string, unknown> {
  const config = parseYaml(readFileSync(BASE_CONFIG, 'utf8')) as { nodes: Record<string, unknown>[]; kubeadmConfigPatches: string[] };
  const node = config.nodes[0] as Record<string, unknown>;
  node['extraPortMappings'] = nodePorts.map((containerPort) => ({ containerPort, hostPort: 0, listenAddress: '127.0.0.1' }));
  node['extraMounts'] = [{ hostPath: AUDIT_POLICY, containerPath: '/etc/kubernetes/audit-policy.yaml', readOnly: true }];
  config.kubeadmConfigPatches.push(
    toYaml({
      kind: 'ClusterConfiguration',
      apiServer: {
        // kind writes kubeadm's v1beta3 configuration for 1.35: extraArgs is a map.
        extraArgs: { 'audit-policy-file': '/etc/kubernetes/audit-policy.yaml', 'audit-log-path': AUDIT_LOG },
        extraVolumes: [
          {
            name: 'audit-policy',
            hostPath: '/etc/kubernetes/audit-policy.yaml',
            mountPath: '/etc/kubernetes/audit-policy.yaml',
            readOnly: true,
            pathType: 'File',
          },
          {
            name: 'audit-log',
            hostPath: '/var/log/kubernetes/audit',
            mountPath: '/var/log/kubernetes/audit',
            pathType: 'DirectoryOrCreate',
          },
        ],
      },
    }),
  );
  return config;
}

/**
 * Watches `path` until `done` returns true for the state so far (every event, deletions included, is
 * passed in order); rejects at the deadline or on a watch error. The initial list arrives as ADDED
 * events. The client ends a watch every 30 s or so: it is resumed from the last resourceVersion seen, so
 * no event is lost or repeated.
 */
export function watchUntil(
  config: KubeConfig,
  path: string,
  query: Record<string, string>,
  done: (type: string, object: unknown) => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let controller: AbortController | undefined;
    let finished = false;
    let resourceVersion: string | undefined;
    const finish = (fn: () => void) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      controller?.abort();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`${what}: not within ${timeoutMs} ms`))), timeoutMs);
    const start = () => {
      if (finished) return;
      new Watch(config)
        .watch(
          path,
          resourceVersion === undefined ? query : { ...query, resourceVersion },
          (type, object: { metadata?: { resourceVersion?: string }; code?: number; message?: string }) => {
            if (type === 'ERROR') return finish(() => reject(new Error(`${what}: watch error ${object.code}: ${object.message}`)));
            resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
            if (done(type, object)) finish(resolve);
          },
          (error) => {
            if (finished) return;
            const aborted = error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
            if (error && !aborted) finish(() => reject(new Error(`${what}: the watch failed: ${String(error)}`)));
            else start();
          },
        )
        .then(
          (c) => {
            controller = c;
            if (finished) c.abort();
          },
          (error: unknown) => finish(() => reject(error as Error)),
        );
    };
    start();
  });
}

/** Runs a command in a container through the API server and the kubelet; resolves with its output and status. */
export function podExec(
  admin: KubeConfig,
  namespace: string,
  pod: string,
  container: string,
  command: string[],
): Promise<{ out: string; status: string }> {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      out += chunk.toString();
      callback();
    },
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exec in ${namespace}/${pod}: no status within 60 s`)), 60_000);
    new Exec(admin)
      .exec(namespace, pod, container, command, sink, sink, null, false, (status) => {
        clearTimeout(timer);
        // The socket's last output frames may trail the status frame by a tick.
        setImmediate(() => resolve({ out, status: status.status ?? '' }));
      })
      .catch((error: unknown) => {
        clearTimeout(timer);
        reject(error as Error);
      });
  });
}
