// The container runtime of the container suites' cluster: the one part of a node no real component
// plays there. kwok (test/support/cluster.ts) is the kubelet towards the API server (it gives each pod
// an IP from its node's pod CIDR, here a range of the suite's Docker network, and reports its phase and
// readiness) but runs nothing. This runs each pod kwok has given an IP as the kubelet would run it
// (test/support/pod.ts: the pod spec's containers, env and securityContext, in one network namespace
// whose address on the Docker network is the pod IP, `docker run --ip`), and stops it when the pod is
// deleted:
// - readiness: the pods it runs carry the readiness gate HOLD_GATE, which keeps them un-Ready (kwok's
//   stages); it sets the gate once every container has logged the line that says it listens, so Ready
//   means the server answers, as a readinessProbe would make it;
// - start: once kwok has made the pod Running (its IP is then settled: kwok's pod-create stage, which
//   takes an address from the pool each time it runs, can run twice for one pod when the pod is
//   changed before its first write lands, so a pod is not touched before that);
// - deletion: it holds every pod it runs with a finalizer and lifts it once the containers have
//   stopped (preStop, SIGTERM, SIGKILL at the end of the deletion's grace period) and are removed; kwok
//   then finishes the deletion. A pod that is gone has no container, as on a node, and an IP that kwok
//   hands out again is free on the network by then.
// Everything else (which pods exist, when they are deleted, what the Sandboxes report) is the real
// controllers', the garbage collector's and kwok's.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { NODE_NAME, type Cluster } from './cluster.ts';
import { keepWatching } from './watch.ts';
import type { DockerNetwork } from './docker.ts';
import { Pod } from './pod.ts';

const FINALIZER = 'sandbox-extproc.test/containers';
/** On each container: the pod it belongs to (namespace/name) and that pod's UID. */
export const POD_LABEL = 'sandbox-extproc.test/pod';
export const POD_UID_LABEL = 'sandbox-extproc.test/pod-uid';

interface Entry {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** Every step for this pod runs after the one before (start, stop). */
  chain: Promise<void>;
  /** The pod IP its containers run at. */
  ip: string | undefined;
  adopted: boolean;
  starting: boolean;
  stopping: boolean;
  running: Pod | undefined;
  /** The grace period its deletion asked for. */
  grace: number | undefined;
}

export interface PodRuntimeOptions {
  readonly network: DockerNetwork;
  /** Labels on every container (the suite's run, for its cleanup). */
  readonly labels: Record<string, string>;
  /** The log line by which a container says it listens. */
  readonly listening: RegExp;
}

export class PodRuntime {
  readonly #cluster: Cluster;
  readonly #core: CoreV1Api;
  readonly #options: PodRuntimeOptions;
  readonly #pods = new Map<string, Entry>();
  readonly #stop = new AbortController();
  /** Pods whose containers could not be run, with why (a test's deadline message shows them). */
  readonly failures: string[] = [];

  constructor(cluster: Cluster, options: PodRuntimeOptions) {
    this.#cluster = cluster;
    this.#core = cluster.plane.admin.makeApiClient(CoreV1Api);
    this.#options = options;
  }

  /**
   * Lists the node's pods, then watches them from the list's version; a watch that ends is resumed
   * from the last version seen, and one that expired (410) starts over from a list.
   */
  async start(): Promise<void> {
    await keepWatching(
      this.#cluster.plane.admin,
      {
        path: '/api/v1/pods',
        query: { fieldSelector: `spec.nodeName=${NODE_NAME}` },
        list: async () => {
          const list = await this.#core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${NODE_NAME}` });
          return { items: list.items, resourceVersion: list.metadata?.resourceVersion };
        },
        onEvent: (type, object) => this.#observe(type, object as V1Pod),
        onError: (error) => this.#fail('the pod watch', error),
      },
      this.#stop.signal,
    );
  }

  /** Stops watching and removes every container it runs (the suite's end). */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.all([...this.#pods.values()].map((entry) => entry.running?.remove()));
    this.#pods.clear();
  }

  #observe(type: string, pod: V1Pod): void {
    const uid = pod.metadata?.uid as string;
    let entry = this.#pods.get(uid);
    if (entry === undefined) {
      // A pod already being deleted when first seen was never run here.
      if (type === 'DELETED' || pod.metadata?.deletionTimestamp) return;
      entry = {
        namespace: pod.metadata?.namespace as string,
        name: pod.metadata?.name as string,
        uid,
        chain: Promise.resolve(),
        ip: undefined,
        adopted: false,
        starting: false,
        stopping: false,
        running: undefined,
        grace: undefined,
      };
      this.#pods.set(uid, entry);
    }
    if (type === 'DELETED' || pod.metadata?.deletionTimestamp) {
      if (entry.stopping) return;
      entry.stopping = true;
      entry.grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
      this.#then(entry, () => this.#stopPod(entry as Entry));
    } else if (pod.status?.phase === 'Running' && pod.status.podIP && !entry.starting) {
      entry.starting = true;
      this.#then(entry, async () => {
        await this.#adopt(entry as Entry);
        await this.#startPod(entry as Entry, pod);
      });
    } else if (entry.ip !== undefined && pod.status?.podIP !== entry.ip) {
      // Never expected (see the header): said loudly, since the pod's containers are at the old address.
      this.#fail(`pod ${entry.namespace}/${entry.name}`, new Error(`its IP moved from ${entry.ip} to ${pod.status?.podIP}`));
    }
  }

  #then(entry: Entry, step: () => Promise<void>): void {
    entry.chain = entry.chain.then(step).catch((error: unknown) => this.#fail(`pod ${entry.namespace}/${entry.name}`, error));
  }

  #fail(what: string, error: unknown): void {
    if (this.#stop.signal.aborted) return;
    const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
    this.failures.push(message);
    console.error(`pod runtime: ${message}`);
  }

  /** Holds the pod with the finalizer (a pod already being deleted refuses new finalizers: it is not run). */
  async #adopt(entry: Entry): Promise<void> {
    if (entry.stopping) return;
    try {
      await this.#core.patchNamespacedPod(
        { namespace: entry.namespace, name: entry.name, body: { metadata: { uid: entry.uid, finalizers: [FINALIZER] } } },
        // A strategic merge patch adds to the finalizers a pod already has.
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
      entry.adopted = true;
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === 404 || code === 409 || code === 422) return;
      throw error;
    }
  }

  /** Runs the pod's containers at its IP, then sets its readiness gate once they listen. */
  async #startPod(entry: Entry, pod: V1Pod): Promise<void> {
    if (entry.stopping || !entry.adopted) return;
    const spec = pod.spec;
    if (spec === undefined) throw new Error('no pod spec');
    entry.ip = pod.status?.podIP as string;
    entry.running = await Pod.start({
      name: entry.name,
      dockerName: `${this.#options.network.name}-${entry.namespace}-${entry.name}-${entry.uid.slice(0, 8)}`,
      namespace: entry.namespace,
      spec,
      network: this.#options.network,
      ip: entry.ip,
      labels: { ...this.#options.labels, [POD_LABEL]: `${entry.namespace}/${entry.name}`, [POD_UID_LABEL]: entry.uid },
      ready: Object.fromEntries(spec.containers.map((c) => [c.name, this.#options.listening])),
    });
    if (entry.stopping) return;
    await this.#cluster.release(entry.namespace, entry.name);
  }

  /** Stops and removes the containers, then lets the deletion finish. */
  async #stopPod(entry: Entry): Promise<void> {
    if (entry.running !== undefined) {
      await entry.running.terminate(entry.grace);
      await entry.running.remove();
      entry.running = undefined;
    }
    this.#pods.delete(entry.uid);
    if (!entry.adopted) return;
    try {
      await this.#core.patchNamespacedPod(
        {
          namespace: entry.namespace,
          name: entry.name,
          body: { metadata: { uid: entry.uid, '$deleteFromPrimitiveList/finalizers': [FINALIZER] } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
    } catch (error) {
      if ((error as { code?: number }).code !== 404) throw error;
    }
  }
}
