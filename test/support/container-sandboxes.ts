// OpenKruise sandboxes as real containers on a Docker network, for the container suites, driven by
// OpenKruise agents' own controller: the controller (test/support/openkruise.ts) and the cluster's
// node (kube-controller-manager's garbage collector and kwok, test/support/cluster.ts) run on the host
// against the suite's API server, kwok's node takes its pod IPs from a range of the Docker network, and
// the pod runtime (test/support/pod-runtime.ts) runs each pod's container at its IP. Every sandbox's
// container answers HTTP on the E2B agent port (its name, its address, the request's path and headers,
// and a request count) and upgrades to a websocket that echoes. A pause is the controller's: it deletes
// the pod, and the container goes with it; a resume is a new pod and a new container.
import type { V1Container } from '@kubernetes/client-node';
import { Cluster } from './cluster.ts';
import type { ControlPlane } from './controlplane.ts';
import { docker, type DockerNetwork } from './docker.ts';
import { isPaused, isRunning, OpenKruiseController, OpenKruiseSandboxes, podIP, SANDBOX_ID_LABEL, type NewSandbox } from './openkruise.ts';
import { POD_LABEL, POD_UID_LABEL, PodRuntime } from './pod-runtime.ts';

export const SANDBOX_PORT = 49983;
const IMAGE = 'node:24-bookworm-slim';

// The sandbox's server: JSON answers; /slow?ms=N answers after N ms; upgrades become an echoing socket.
// It exits on SIGTERM, as a server should when its pod is deleted.
const SERVER = `
const http = require('node:http'), crypto = require('node:crypto');
process.on('SIGTERM', () => process.exit(0));
let count = 0;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== '/count') count++;
  const answer = () => { res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sandbox: process.env.SANDBOX_NAME, ip: req.socket.localAddress, count, path: req.url, headers: req.headers, peer: req.socket.remoteAddress })); };
  if (url.pathname === '/slow') setTimeout(answer, Number(url.searchParams.get('ms') ?? 1000)); else answer();
});
server.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  socket.on('data', (d) => socket.write(d));
  socket.on('error', () => {});
});
server.listen(${SANDBOX_PORT}, '0.0.0.0', () => console.log('sandbox listening'));
`;

/** The sandbox's container, as its pod template states it: the server, under the chart's restrictions. */
function container(name: string): V1Container {
  return {
    name: 'sandbox',
    image: IMAGE,
    command: ['node', '-e', SERVER],
    env: [{ name: 'SANDBOX_NAME', value: name }],
    ports: [{ containerPort: SANDBOX_PORT }],
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    },
  };
}

export interface ContainerSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly id: string;
  /** Its pod IP when created (the controller keeps reporting it while the sandbox is paused). */
  readonly ip: string;
}

export class ContainerSandboxes {
  readonly #plane: ControlPlane;
  readonly #network: DockerNetwork;
  readonly #labels: Record<string, string>;
  #parts: { cluster: Cluster; controller: OpenKruiseController; runtime: PodRuntime; sandboxes: OpenKruiseSandboxes } | undefined;

  constructor(plane: ControlPlane, network: DockerNetwork, labels: Record<string, string>) {
    this.#plane = plane;
    this.#network = network;
    this.#labels = labels;
  }

  /** The users' calls on OpenKruise Sandboxes (get, patch, waitFor, ...). */
  get openkruise(): OpenKruiseSandboxes {
    return this.#started.sandboxes;
  }

  get #started() {
    if (this.#parts === undefined) throw new Error('ContainerSandboxes: not started');
    return this.#parts;
  }

  /** Starts the cluster's node (garbage collector, kwok, the pod runtime) and the controller. */
  async start(): Promise<void> {
    const [cluster, controller] = await Promise.all([
      Cluster.start(this.#plane, { podCIDR: this.#network.podCIDR }),
      OpenKruiseController.start(this.#plane),
    ]);
    const runtime = new PodRuntime(cluster, { network: this.#network, labels: this.#labels, listening: /sandbox listening/ });
    this.#parts = { cluster, controller, runtime, sandboxes: new OpenKruiseSandboxes(this.#plane, cluster) };
    await runtime.start();
  }

  /** Removes the sandboxes' containers, then stops the controller and the node. */
  async stop(): Promise<void> {
    const parts = this.#parts;
    if (parts === undefined) return;
    await parts.runtime.stop();
    await Promise.all([parts.controller.stop(), parts.cluster.stop()]);
  }

  /**
   * Creates a sandbox and returns once the controller reports it running, its container answering (or,
   * with paused, once it reports the pause complete: its pod and container gone). Its pods carry the
   * runtime's readiness gate; readyDelay holds each new pod Pending that long first (a slow start).
   */
  async create(sandbox: Omit<NewSandbox, 'hold' | 'container'>, timeoutMs = 60_000): Promise<ContainerSandbox> {
    const { sandboxes, runtime, cluster } = this.#started;
    const { paused, ...rest } = sandbox;
    await sandboxes.createOnly({ ...rest, hold: true, container: container(sandbox.name) });
    const why = () => [...runtime.failures, cluster.tail()].join('\n');
    const running = await sandboxes.waitFor(sandbox.namespace, sandbox.name, isRunning, timeoutMs, 'running').catch((error: Error) => {
      throw new Error(`${error.message}\n${why()}`, { cause: error });
    });
    if (paused) {
      await sandboxes.pause(sandbox.namespace, sandbox.name);
      await sandboxes.waitFor(sandbox.namespace, sandbox.name, isPaused, timeoutMs, 'paused');
    }
    return {
      namespace: sandbox.namespace,
      name: sandbox.name,
      id: sandbox.labels?.[SANDBOX_ID_LABEL] ?? `${sandbox.namespace}--${sandbox.name}`,
      ip: podIP(running),
    };
  }

  /**
   * The pods of this sandbox that have containers on the engine (running or not), by UID: the runtime
   * labels each container with its pod.
   */
  async podsWithContainers(namespace: string, name: string): Promise<string[]> {
    const filters = Object.entries({ ...this.#labels, [POD_LABEL]: `${namespace}/${name}` }).flatMap(([k, v]) => [
      '--filter',
      `label=${k}=${v}`,
    ]);
    const out = await docker(['ps', '-a', ...filters, '--format', `{{.Label "${POD_UID_LABEL}"}}`]);
    return [...new Set(out.split('\n').filter(Boolean))];
  }
}
