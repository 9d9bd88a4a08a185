// A Kubernetes pod, run on the Docker engine the way the kubelet would run the chart's rendered pod spec,
// for the container suites: no cluster runs here, and kind (test/e2e/kind.test.ts) covers the
// scheduler, Services and probes. What the pod spec says is what runs:
// - one network namespace (a holder container on the Docker network, the pod IP), shared by every
//   container; native sidecars (init containers with restartPolicy Always) start first;
// - image, command/args (command replaces the entrypoint, args the image's arguments), env (values,
//   and fieldRefs to the pod's name, namespace and IP), the Kubernetes service variables;
// - securityContext: user and group, fsGroup, read-only root filesystem, dropped capabilities,
//   no privilege escalation; runAsNonRoot is checked;
// - volumes: emptyDir, configMap, secret and projected (serviceAccountToken, configMap, downwardAPI),
//   with their modes and the fsGroup, mounted where the containers ask, read-only where asked;
// - termination as the kubelet does it: each main container's preStop hook (exec, sleep or httpGet),
//   then SIGTERM, then SIGKILL at the grace period's end; sidecars only after every main container
//   has exited, in reverse order.
// Readiness is waited for on each process's own log line (given by the caller), then its
// readinessProbe is asked once: no polling.
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import type { V1Container, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { docker, inspect, LocalContainer, signal, waitForExit, type DockerNetwork, type StartedTestContainer } from './docker.ts';

const HOLDER_IMAGE = 'node:24-bookworm-slim';

export interface PodOptions {
  readonly name: string;
  /** The prefix of its containers' names on the engine (default: the pod's name), when pod names repeat. */
  readonly dockerName?: string;
  /** Its IP on the network (the network needs a subnet given at creation); default: the engine picks one. */
  readonly ip?: string;
  readonly namespace: string;
  readonly spec: V1PodSpec;
  readonly network: DockerNetwork;
  /** DNS names that resolve to this pod on the network (the Services that select it). */
  readonly aliases?: readonly string[];
  readonly labels: Record<string, string>;
  readonly configMaps?: Record<string, Record<string, string>>;
  readonly secrets?: Record<string, Record<string, string>>;
  /** A token for the pod's ServiceAccount (a TokenRequest on the real API server). */
  readonly serviceAccountToken?: () => Promise<string>;
  /** KUBERNETES_SERVICE_HOST / _PORT, as the kubelet sets them. */
  readonly apiServer?: { readonly host: string; readonly port: number };
  /** Per container: the log line that says it is up. */
  readonly ready: Record<string, RegExp>;
  readonly timeoutMs?: number;
}

export interface HookRun {
  readonly container: string;
  readonly output: string;
}

export class Pod {
  readonly name: string;
  ip = '';
  readonly #options: PodOptions;
  readonly #dir: string;
  readonly #containers = new Map<string, StartedTestContainer>();
  readonly #lines = new Map<string, string[]>();
  readonly #waiters = new Set<{ container: string; test: (line: string) => boolean; resolve: (line: string) => void }>();
  #holder: string | undefined;
  /** Output of the preStop hooks run by terminate(). */
  readonly hooks: HookRun[] = [];

  private constructor(options: PodOptions) {
    this.name = options.name;
    this.#options = options;
    this.#dir = mkdtempSync(join(tmpdir(), `sbx-pod-${options.name}-`));
    chmodSync(this.#dir, 0o755);
  }

  static async start(options: PodOptions): Promise<Pod> {
    const pod = new Pod(options);
    try {
      await pod.#start();
      return pod;
    } catch (error) {
      await pod.remove();
      throw error;
    }
  }

  get #dockerName(): string {
    return this.#options.dockerName ?? this.name;
  }

  /** The containers in start order: native sidecars, then the main containers. */
  get #ordered(): V1Container[] {
    const sidecars = (this.#options.spec.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
    return [...sidecars, ...this.#options.spec.containers];
  }

  async #start(): Promise<void> {
    const { network, labels, aliases = [] } = this.#options;
    if ((this.#options.spec.initContainers ?? []).some((c) => c.restartPolicy !== 'Always')) {
      throw new Error('pod: run-to-completion init containers are not supported here');
    }
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const aliasArgs = [this.name, ...aliases].flatMap((a) => ['--network-alias', a]);
    this.#holder = (
      await docker([
        'run',
        '-d',
        '--name',
        `${this.#dockerName}-pod`,
        ...labelArgs,
        '--network',
        network.name,
        ...(this.#options.ip === undefined ? [] : ['--ip', this.#options.ip]),
        ...aliasArgs,
        '--pull',
        'never',
        '--entrypoint',
        'sleep',
        HOLDER_IMAGE,
        'infinity',
      ])
    ).trim();
    this.ip = (await inspect(this.#holder)).ip(network.name);
    const volumes = await this.#volumes();
    for (const container of this.#ordered) await this.#startContainer(container, volumes);
    await Promise.all(this.#ordered.map((c) => this.#ready(c)));
  }

  async #startContainer(spec: V1Container, volumes: Map<string, string>): Promise<void> {
    const pod = this.#options.spec.securityContext ?? {};
    const ctx = spec.securityContext ?? {};
    const user = ctx.runAsUser ?? pod.runAsUser;
    const group = ctx.runAsGroup ?? pod.runAsGroup;
    if ((ctx.runAsNonRoot ?? pod.runAsNonRoot) === true && (user === undefined || user === 0)) {
      throw new Error(`pod ${this.name}: container ${spec.name} must run as non-root but names no non-root user`);
    }
    const lines: string[] = [];
    this.#lines.set(spec.name, lines);
    const container = new LocalContainer(spec.image as string)
      .withName(`${this.#dockerName}-${spec.name}`)
      .withLabels(this.#options.labels)
      .withNetworkMode(`container:${this.#holder}`)
      .withEnvironment(this.#env(spec))
      .withLogConsumer((stream) => this.#consume(spec.name, stream, lines));
    if (user !== undefined) container.withUser(group === undefined ? String(user) : `${user}:${group}`);
    if (pod.fsGroup !== undefined) container.withGroupAdd(String(pod.fsGroup));
    if (ctx.readOnlyRootFilesystem) container.withReadOnlyRootFilesystem();
    if (ctx.allowPrivilegeEscalation === false) container.withSecurityOpt('no-new-privileges');
    if (ctx.privileged) throw new Error(`pod ${this.name}: privileged containers are not run here`);
    const drop = ctx.capabilities?.drop ?? [];
    if (drop.length > 0) container.withDroppedCapabilities(...(drop as never[]));
    const add = ctx.capabilities?.add ?? [];
    if (add.length > 0) container.withAddedCapabilities(...(add as never[]));
    if (spec.command) container.withEntrypoint(spec.command).withCommand(spec.args ?? []);
    else if (spec.args) container.withCommand(spec.args);
    container.withBindMounts(
      (spec.volumeMounts ?? []).map((m) => {
        const source = volumes.get(m.name);
        if (source === undefined) throw new Error(`pod ${this.name}: container ${spec.name} mounts unknown volume ${m.name}`);
        return { source, target: m.mountPath, mode: m.readOnly || this.#readOnlyVolume(m.name) ? ('ro' as const) : ('rw' as const) };
      }),
    );
    this.#containers.set(spec.name, await container.start());
  }

  #readOnlyVolume(name: string): boolean {
    const volume = (this.#options.spec.volumes ?? []).find((v) => v.name === name);
    return volume?.configMap !== undefined || volume?.secret !== undefined || volume?.projected !== undefined;
  }

  #env(spec: V1Container): Record<string, string> {
    const env: Record<string, string> = { HOSTNAME: this.name };
    if (this.#options.apiServer) {
      env['KUBERNETES_SERVICE_HOST'] = this.#options.apiServer.host;
      env['KUBERNETES_SERVICE_PORT'] = String(this.#options.apiServer.port);
    }
    for (const variable of spec.env ?? []) {
      const field = variable.valueFrom?.fieldRef?.fieldPath;
      if (variable.valueFrom !== undefined && field === undefined) throw new Error(`pod: env ${variable.name}: only fieldRef is supported`);
      env[variable.name] =
        field === undefined
          ? (variable.value ?? '')
          : ({ 'metadata.name': this.name, 'metadata.namespace': this.#options.namespace, 'status.podIP': this.ip }[field] ?? '');
    }
    return env;
  }

  /** Writes each volume's files as the kubelet would, owned by the pod's fsGroup. */
  async #volumes(): Promise<Map<string, string>> {
    const paths = new Map<string, string>();
    const fsGroup = this.#options.spec.securityContext?.fsGroup;
    for (const volume of this.#options.spec.volumes ?? []) {
      const path = join(this.#dir, volume.name);
      mkdirSync(path);
      const files = await this.#volumeFiles(volume);
      if (files === undefined) {
        chmodSync(path, 0o777);
      } else {
        for (const [name, { content, mode }] of files) {
          const file = join(path, name);
          writeFileSync(file, content);
          chmodSync(file, mode);
          if (fsGroup !== undefined) chownSync(file, 0, fsGroup);
        }
        chmodSync(path, 0o755);
      }
      if (fsGroup !== undefined) chownSync(path, 0, fsGroup);
      paths.set(volume.name, path);
    }
    // A mount inside another volume's mount (/etc/envoy/tls in /etc/envoy) needs its mount point there,
    // which the kubelet makes and a read-only bind mount cannot.
    for (const container of this.#ordered) {
      const mounts = container.volumeMounts ?? [];
      for (const inner of mounts) {
        const outer = mounts.find((m) => m !== inner && inner.mountPath.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
        if (outer !== undefined)
          mkdirSync(join(paths.get(outer.name) as string, inner.mountPath.slice(outer.mountPath.length)), { recursive: true });
      }
    }
    return paths;
  }

  /** The files of a configMap, secret or projected volume; undefined for an emptyDir. */
  async #volumeFiles(volume: V1Volume): Promise<Map<string, { content: string; mode: number }> | undefined> {
    if (volume.emptyDir !== undefined) return undefined;
    const files = new Map<string, { content: string; mode: number }>();
    const fromData = (
      kind: string,
      name: string,
      data: Record<string, string> | undefined,
      items: { key: string; path: string }[] | undefined,
      mode: number,
    ) => {
      if (data === undefined) throw new Error(`pod ${this.name}: volume ${volume.name} needs ${kind} ${name}, which was not given`);
      for (const { key, path } of items ?? Object.keys(data).map((k) => ({ key: k, path: k }))) {
        if (data[key] === undefined) throw new Error(`pod ${this.name}: ${kind} ${name} has no key ${key}`);
        files.set(path, { content: data[key], mode });
      }
    };
    if (volume.configMap) {
      const name = volume.configMap.name as string;
      fromData('configMap', name, this.#options.configMaps?.[name], volume.configMap.items, volume.configMap.defaultMode ?? 0o644);
      return files;
    }
    if (volume.secret) {
      const name = volume.secret.secretName as string;
      fromData('secret', name, this.#options.secrets?.[name], volume.secret.items, volume.secret.defaultMode ?? 0o644);
      return files;
    }
    if (volume.projected) {
      const mode = volume.projected.defaultMode ?? 0o644;
      for (const source of volume.projected.sources ?? []) {
        if (source.serviceAccountToken) {
          if (!this.#options.serviceAccountToken) throw new Error(`pod ${this.name}: a token volume needs serviceAccountToken`);
          files.set(source.serviceAccountToken.path, { content: await this.#options.serviceAccountToken(), mode });
        } else if (source.configMap) {
          const name = source.configMap.name as string;
          fromData('configMap', name, this.#options.configMaps?.[name], source.configMap.items, mode);
        } else if (source.downwardAPI) {
          for (const item of source.downwardAPI.items ?? []) {
            const field = item.fieldRef?.fieldPath;
            const value = { 'metadata.namespace': this.#options.namespace, 'metadata.name': this.name }[field ?? ''];
            if (value === undefined) throw new Error(`pod ${this.name}: downwardAPI ${field} is not supported`);
            files.set(item.path, { content: value, mode });
          }
        } else {
          throw new Error(`pod ${this.name}: projected source ${JSON.stringify(source)} is not supported`);
        }
      }
      return files;
    }
    throw new Error(`pod ${this.name}: volume ${volume.name}: only emptyDir, configMap, secret and projected are supported`);
  }

  #consume(container: string, stream: Readable, lines: string[]): void {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line);
      if (lines.length > 20_000) lines.splice(0, 5_000);
      for (const waiter of this.#waiters) if (waiter.container === container && waiter.test(line)) waiter.resolve(line);
    });
  }

  /** The container's log lines so far. */
  logs(container: string): readonly string[] {
    return this.#lines.get(container) ?? [];
  }

  /** Resolves with the first log line (seen or to come) matching the pattern; rejects at the deadline. */
  waitForLog(container: string, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
    const seen = this.logs(container).find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        container,
        test: (line: string) => pattern.test(line),
        resolve: (line: string) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `pod ${this.name}/${container}: no log line matching ${pattern} within ${timeoutMs} ms; last lines:\n${this.logs(container).slice(-20).join('\n')}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** GET on a port only the pod itself reaches (Envoy's admin on 127.0.0.1), from inside its network namespace. */
  async localGet(port: number, path: string): Promise<string> {
    const script = `fetch('http://127.0.0.1:${port}${path}').then(async (r) => process.stdout.write(await r.text()))`;
    return docker(['exec', this.#holder as string, 'node', '-e', script]);
  }

  containerId(name: string): string {
    const container = this.#containers.get(name);
    if (container === undefined) throw new Error(`pod ${this.name} has no container ${name}`);
    return container.getId();
  }

  async #ready(spec: V1Container): Promise<void> {
    const pattern = this.#options.ready[spec.name];
    if (pattern === undefined) throw new Error(`pod ${this.name}: no readiness line given for ${spec.name}`);
    const id = this.containerId(spec.name);
    const exited = waitForExit(id).then((code) => {
      throw new Error(`pod ${this.name}/${spec.name} exited (${code}) before it was up:\n${this.logs(spec.name).slice(-20).join('\n')}`);
    });
    await Promise.race([this.waitForLog(spec.name, pattern, this.#options.timeoutMs ?? 60_000), exited]);
    exited.catch(() => undefined);
    const probe = spec.readinessProbe;
    if (probe?.httpGet) {
      const port = this.#port(spec, probe.httpGet.port);
      const res = await fetch(`http://${this.ip}:${port}${probe.httpGet.path ?? '/'}`);
      if (!res.ok) throw new Error(`pod ${this.name}/${spec.name}: readiness probe answered ${res.status}: ${await res.text()}`);
    } else if (probe?.tcpSocket) {
      const port = this.#port(spec, probe.tcpSocket.port);
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, this.ip, () => socket.end(resolve));
        socket.once('error', reject);
      });
    }
  }

  #port(spec: V1Container, port: number | string | object): number {
    if (typeof port === 'number') return port;
    const named = (spec.ports ?? []).find((p) => p.name === port);
    if (named === undefined) throw new Error(`pod ${this.name}/${spec.name}: no port named ${String(port)}`);
    return named.containerPort;
  }

  /**
   * Deletes the pod as the kubelet does: main containers' preStop hooks, SIGTERM, SIGKILL at the end
   * of the grace period (the pod's, or the one its deletion asked for); then the sidecars, in reverse
   * order. Resolves with each container's exit code.
   */
  async terminate(graceSeconds = this.#options.spec.terminationGracePeriodSeconds ?? 30): Promise<Record<string, number>> {
    const grace = graceSeconds * 1000;
    const deadline = Date.now() + grace;
    const codes: Record<string, number> = {};
    const stop = async (spec: V1Container) => {
      const id = this.containerId(spec.name);
      await this.#preStop(spec, id, deadline);
      await signal(id, 'TERM').catch(() => undefined);
      const timer = setTimeout(() => void signal(id, 'KILL').catch(() => undefined), Math.max(0, deadline - Date.now()));
      codes[spec.name] = await waitForExit(id);
      clearTimeout(timer);
    };
    const sidecars = (this.#options.spec.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
    await Promise.all(this.#options.spec.containers.map(stop));
    for (const sidecar of [...sidecars].reverse()) await stop(sidecar);
    return codes;
  }

  async #preStop(spec: V1Container, id: string, deadline: number): Promise<void> {
    const hook = spec.lifecycle?.preStop;
    if (hook === undefined) return;
    const left = Math.max(0, deadline - Date.now());
    if (hook.exec?.command) {
      const output = await docker(['exec', id, ...hook.exec.command], { timeoutMs: left }).catch((e: Error) => `hook failed: ${e.message}`);
      this.hooks.push({ container: spec.name, output });
    } else if (hook.sleep) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, hook.sleep!.seconds * 1000)));
    } else if (hook.httpGet) {
      const port = this.#port(spec, hook.httpGet.port);
      await fetch(`http://${this.ip}:${port}${hook.httpGet.path ?? '/'}`, { signal: AbortSignal.timeout(left) }).catch(() => undefined);
    }
  }

  /** Removes every container of the pod and its volumes' files. */
  async remove(): Promise<void> {
    const ids = [...[...this.#containers.values()].map((c) => c.getId()), ...(this.#holder ? [this.#holder] : [])];
    if (ids.length > 0) await docker(['rm', '-f', '-v', ...ids]).catch(() => undefined);
    this.#containers.clear();
    this.#holder = undefined;
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
