// Sandboxes as real containers on a Docker network, for the container suites: each answers HTTP on the
// E2B agent port (its name, the request's path and headers, and a request count), and upgrades to a
// websocket that echoes. The test controller (sandbox-controller.ts) plays OpenKruise against the real
// API server with the container's IP as the pod IP; a paused sandbox's container is frozen with
// `docker pause` (the cgroup freezer), and thawed with `docker unpause` when the resume patch arrives,
// before the controller reports it Running.
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { Backoff, delay } from '../../src/routes/backoff.ts';
import { docker, inspect, waitForContainerLog, type DockerNetwork } from './docker.ts';
import { GROUP, PLURAL, SandboxController, VERSION, type NewSandbox, type SandboxObject } from './sandbox-controller.ts';

export const SANDBOX_PORT = 49983;
const IMAGE = 'node:24-bookworm-slim';

// The sandbox's server: JSON answers; /slow?ms=N answers after N ms; upgrades become an echoing socket.
const SERVER = `
const http = require('node:http'), crypto = require('node:crypto');
let count = 0;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname !== '/count') count++;
  const answer = () => { res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ sandbox: process.env.SANDBOX_NAME, count, path: req.url, headers: req.headers, peer: req.socket.remoteAddress })); };
  if (url.pathname === '/slow') setTimeout(answer, Number(url.searchParams.get('ms') ?? 1000)); else answer();
});
server.on('upgrade', (req, socket) => {
  const accept = crypto.createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  socket.on('data', (d) => socket.write(d));
  socket.on('error', () => {});
});
server.listen(${SANDBOX_PORT}, () => console.log('sandbox listening'));
`;

export interface ContainerSandbox {
  readonly namespace: string;
  readonly name: string;
  readonly id: string;
  readonly container: string;
  readonly ip: string;
}

export class ContainerSandboxes {
  readonly controller: SandboxController;
  readonly #stuck = new Set<string>();
  readonly #sandboxes = new Map<string, ContainerSandbox>();
  readonly #frozen = new Map<string, number>();
  readonly #resumeWaiters = new Map<string, (() => void)[]>();
  readonly #network: DockerNetwork;
  readonly #labels: Record<string, string>;
  readonly #admin: KubeConfig;
  #watch: AbortController | undefined;
  readonly #stop = new AbortController();
  /** Unpauses done on resume patches, in order. */
  readonly thawed: string[] = [];

  constructor(admin: KubeConfig, network: DockerNetwork, labels: Record<string, string>) {
    this.#admin = admin;
    this.#network = network;
    this.#labels = labels;
    // Every container sandbox is "stuck" in the controller until its container is thawed.
    this.controller = new SandboxController(admin, { stuck: this.#stuck, resumeDelayMs: 0 });
  }

  /**
   * Starts the controller, and a watch for resume patches that re-watches after any end (the API server
   * answers 429 while a new CRD's watch cache initialises, and ends watches now and then), from the
   * last version seen.
   */
  async start(): Promise<void> {
    await this.controller.start();
    const backoff = new Backoff(50, 1000);
    let resourceVersion: string | undefined;
    const run = async (): Promise<void> => {
      if (this.#stop.signal.aborted) return;
      this.#watch = await new Watch(this.#admin).watch(
        `/apis/${GROUP}/${VERSION}/${PLURAL}`,
        resourceVersion === undefined ? {} : { resourceVersion },
        (type, object: SandboxObject & { code?: number }) => {
          backoff.reset();
          if (type === 'ERROR') resourceVersion = object.code === 410 ? undefined : resourceVersion;
          else resourceVersion = object.metadata.resourceVersion ?? resourceVersion;
          if ((type === 'ADDED' || type === 'MODIFIED') && object.spec?.paused === false) {
            void this.#thaw(object.metadata.namespace, object.metadata.name);
          }
        },
        () => void delay(backoff.next(), this.#stop.signal).then(run),
      );
    };
    await run();
  }

  /** Stops the controller and removes the sandboxes' containers. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#watch?.abort();
    this.controller.stop();
    const ids = [...this.#sandboxes.values()].map((s) => s.container);
    if (ids.length > 0) await docker(['rm', '-f', ...ids]).catch(() => undefined);
  }

  /**
   * Starts the sandbox's container, then creates its Sandbox (frozen and paused, if asked). A paused
   * sandbox is thawed `thawDelayMs` after its resume patch arrives (a slow resume).
   */
  async create(sandbox: Omit<NewSandbox, 'podIP'>, options: { thawDelayMs?: number } = {}): Promise<ContainerSandbox> {
    const key = `${sandbox.namespace}/${sandbox.name}`;
    const labelArgs = Object.entries(this.#labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const container = (
      await docker([
        'run',
        '-d',
        '--pull',
        'never',
        '--name',
        `${this.#network.name}-sbx-${sandbox.namespace}-${sandbox.name}`,
        ...labelArgs,
        '--network',
        this.#network.name,
        '--env',
        `SANDBOX_NAME=${sandbox.name}`,
        '--read-only',
        '--user',
        '65532:65532',
        '--cap-drop',
        'ALL',
        IMAGE,
        'node',
        '-e',
        SERVER,
      ])
    ).trim();
    await waitForContainerLog(container, /sandbox listening/);
    const ip = (await inspect(container)).ip(this.#network.name);
    const entry = {
      namespace: sandbox.namespace,
      name: sandbox.name,
      id: sandbox.id ?? `${sandbox.namespace}--${sandbox.name}`,
      container,
      ip,
    };
    this.#sandboxes.set(key, entry);
    if (sandbox.paused) {
      await docker(['pause', container]);
      this.#frozen.set(key, options.thawDelayMs ?? 0);
      this.#stuck.add(sandbox.name);
    }
    await this.controller.create({ ...sandbox, podIP: ip });
    return entry;
  }

  async frozen(namespace: string, name: string): Promise<boolean> {
    const entry = this.#sandboxes.get(`${namespace}/${name}`);
    if (entry === undefined) throw new Error(`no sandbox ${namespace}/${name}`);
    return (await inspect(entry.container)).paused;
  }

  /** Resolves when the resume patch for this sandbox has arrived (spec.paused=false seen). */
  resumeRequested(namespace: string, name: string): Promise<void> {
    const key = `${namespace}/${name}`;
    if (!this.#frozen.has(key)) return Promise.resolve();
    return new Promise((resolve) => this.#resumeWaiters.set(key, [...(this.#resumeWaiters.get(key) ?? []), resolve]));
  }

  /** The resume patch arrived: thaw the container, then let the controller report it Running. */
  async #thaw(namespace: string, name: string): Promise<void> {
    const key = `${namespace}/${name}`;
    const entry = this.#sandboxes.get(key);
    const delayMs = this.#frozen.get(key);
    if (entry === undefined || delayMs === undefined) return;
    this.#frozen.delete(key);
    for (const resolve of this.#resumeWaiters.get(key) ?? []) resolve();
    this.#resumeWaiters.delete(key);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    await docker(['unpause', entry.container]);
    this.thawed.push(key);
    this.controller.release(namespace, name);
  }
}
