// What a cluster has beyond its API server, for the real Sandbox controllers to run against, from real
// components: kube-controller-manager (only its garbage collector: orphaned pods are deleted, so a
// re-created Sandbox of the same name gets a pod of its own) and kwok (the kubelet's part of a pod's
// life: pod IP, phase, Ready with its lastTransitionTime, Ready kept through a graceful termination,
// the deletion finished), with one node whose pod CIDR is on loopback, where the test upstreams listen
// (addNode() adds others, each with its own pod CIDR).
// kwok's stages are in test/fixtures/kwok-stages.yaml (why they differ from kwok's defaults is there).
//
// Holding a pod: a pod whose spec lists the readiness gate HOLD_GATE stays un-Ready (as the kubelet
// keeps it) until release() sets that condition, as the gate's owning controller would. Only this, and
// waiting on pods, is test code; everything else a pod does here is kwok's and the API server's.
import { CoreV1Api, PatchStrategy, setHeaderOptions, Watch, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { REPO_ROOT, toolPath } from './tools.ts';
import { TestProcess } from './process.ts';
import { waitForObject, type ControlPlane } from './controlplane.ts';

/** The node every sandbox pod runs on (its pod template names it: no scheduler runs here). */
export const NODE_NAME = 'kwok-node';
/** The readiness gate that holds a pod un-Ready until released. */
export const HOLD_GATE = 'sandbox-extproc.test/released';
const STAGES = `${REPO_ROOT}test/fixtures/kwok-stages.yaml`;

export interface ClusterOptions {
  /** The node's pod CIDR: kwok gives pods addresses from it, in order, reusing freed ones. */
  readonly podCIDR?: string;
}

export const DEFAULT_POD_CIDR = '127.1.0.0/24';

/** The usable addresses of an IPv4 CIDR, in the order kwok hands them out (network address + 1 first). */
export function addressesOf(cidr: string): string[] {
  const [base, bits] = cidr.split('/') as [string, string];
  const start = base.split('.').reduce((n, part) => n * 256 + Number(part), 0);
  const size = 2 ** (32 - Number(bits));
  const addresses: string[] = [];
  for (let i = 1; i < size - 1; i += 1) {
    const n = start + i;
    addresses.push([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'));
  }
  return addresses;
}

export class Cluster {
  readonly plane: ControlPlane;
  readonly podCIDR: string;
  readonly #processes: TestProcess[];
  readonly #core: CoreV1Api;

  private constructor(plane: ControlPlane, podCIDR: string, processes: TestProcess[]) {
    this.plane = plane;
    this.podCIDR = podCIDR;
    this.#processes = processes;
    this.#core = plane.admin.makeApiClient(CoreV1Api);
  }

  static async start(plane: ControlPlane, options: ClusterOptions = {}): Promise<Cluster> {
    const podCIDR = options.podCIDR ?? DEFAULT_POD_CIDR;
    const processes: TestProcess[] = [];
    try {
      const gc = new TestProcess('kube-controller-manager', toolPath('SBX_KUBE_CONTROLLER_MANAGER'), [
        `--kubeconfig=${plane.adminKubeconfig}`,
        '--controllers=garbage-collector-controller',
        '--leader-elect=false',
        '--secure-port=0',
      ]);
      processes.push(gc);
      await createKwokNode(plane.admin.makeApiClient(CoreV1Api), NODE_NAME, podCIDR);
      const kwok = new TestProcess('kwok', toolPath('SBX_KWOK'), [
        `--kubeconfig=${plane.adminKubeconfig}`,
        `--config=${STAGES}`,
        '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
        '--node-ip=127.1.255.254',
        '--server-address=',
      ]);
      processes.push(kwok);
      const cluster = new Cluster(plane, podCIDR, processes);
      // Up when the node is Ready (kwok's node stage ran) and the garbage collector has synced.
      await Promise.all([cluster.#waitForNodeReady(NODE_NAME, 30_000), gc.waitForLine(/Proceeding to collect garbage/, 60_000)]);
      return cluster;
    } catch (error) {
      await Promise.all(processes.map((p) => p.stop()));
      throw error;
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.stop()));
  }

  /** The processes' recent output, for a failure message. */
  tail(): string {
    return this.#processes.map((p) => `--- ${p.name}\n${p.tail(15)}`).join('\n');
  }

  /**
   * Adds another kwok node with its own pod CIDR and resolves once it is Ready. Pods land on it when
   * their template names it (NewSandbox's nodeName): a test gets pod IPs from a network nothing here
   * listens on (e.g. link-local 169.254.169.0/24), assigned by kwok as any pod's are.
   */
  async addNode(name: string, podCIDR: string, timeoutMs = 30_000): Promise<void> {
    await createKwokNode(this.#core, name, podCIDR);
    await this.#waitForNodeReady(name, timeoutMs);
  }

  async #waitForNodeReady(name: string, timeoutMs: number): Promise<void> {
    await waitForObject(
      this.plane.admin,
      '/api/v1/nodes',
      { fieldSelector: `metadata.name=${name}` },
      (node) =>
        (node as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions?.some(
          (c) => c.type === 'Ready' && c.status === 'True',
        ) === true,
      timeoutMs,
      `node ${name} Ready`,
    );
  }

  /** The pods in a namespace owned (ownerReferences) by the object with this UID. */
  async podsOwnedBy(namespace: string, uid: string): Promise<V1Pod[]> {
    const pods = await this.#core.listNamespacedPod({ namespace });
    return pods.items.filter((p) => p.metadata?.ownerReferences?.some((o) => o.uid === uid));
  }

  /**
   * Resolves with the first pod (existing or to come) in the namespace, owned by `ownerUid`, that the
   * predicate accepts.
   */
  waitForPod(namespace: string, ownerUid: string, predicate: (pod: V1Pod) => boolean, timeoutMs: number, what: string): Promise<V1Pod> {
    return waitForObject(
      this.plane.admin,
      `/api/v1/namespaces/${namespace}/pods`,
      {},
      (object) => {
        const pod = object as V1Pod;
        return pod.metadata?.ownerReferences?.some((o) => o.uid === ownerUid) === true && predicate(pod);
      },
      timeoutMs,
      what,
    ) as Promise<V1Pod>;
  }

  /** Resolves once the pod with this UID no longer exists (gone already, or on its DELETED event). */
  waitForPodGone(namespace: string, uid: string, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      let controller: AbortController | undefined;
      let done = false;
      const finish = (error?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        controller?.abort();
        if (error === undefined) resolve();
        else reject(error);
      };
      const timer = setTimeout(() => finish(new Error(`${what}: still there after ${timeoutMs} ms`)), timeoutMs);
      // List, then watch from the list's version; a watch the API server ends is started again the same way.
      const start = async (): Promise<void> => {
        const list = await this.#core.listNamespacedPod({ namespace });
        if (!list.items.some((p) => p.metadata?.uid === uid)) return finish();
        controller = await new Watch(this.plane.admin).watch(
          `/api/v1/namespaces/${namespace}/pods`,
          { resourceVersion: list.metadata?.resourceVersion ?? '' },
          (type, pod: V1Pod) => {
            if (type === 'DELETED' && pod.metadata?.uid === uid) finish();
          },
          () => {
            if (!done) start().catch((error: unknown) => finish(error instanceof Error ? error : new Error(String(error))));
          },
        );
        if (done) controller.abort();
      };
      start().catch((error: unknown) => finish(error instanceof Error ? error : new Error(String(error))));
    });
  }

  /** Releases the current held pod of a sandbox (its newest live one with an IP, waited for). */
  async releaseOwnedBy(namespace: string, ownerUid: string, timeoutMs: number, what: string): Promise<V1Pod> {
    const pod = await this.waitForPod(
      namespace,
      ownerUid,
      (p) => p.metadata?.deletionTimestamp === undefined && (p.status?.podIP ?? '') !== '',
      timeoutMs,
      `a pod of ${what}`,
    );
    await this.release(namespace, pod.metadata?.name as string);
    return pod;
  }

  /** Releases a held pod: sets its hold gate's condition True; kwok then makes it Ready. */
  async release(namespace: string, podName: string): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    await this.#core.patchNamespacedPodStatus(
      {
        namespace,
        name: podName,
        body: { status: { conditions: [{ type: HOLD_GATE, status: 'True', lastTransitionTime: now }] } },
      },
      // A strategic merge patch merges conditions by type, as a gate's controller does.
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
  }
}

/** What a test says about a sandbox pod's life: kwok's delays, the hold gate, where it runs. */
export interface PodBehaviour {
  /** Every pod stays un-Ready until released (release()); the first one is released by create(). */
  readonly hold?: boolean;
  /** How long each pod takes to become Ready once created (kwok's delay, e.g. "2s"). */
  readonly readyDelay?: string;
  /** How long its containers take to stop once deleted (keep within the grace period). */
  readonly stopDelay?: string;
  /** The pods' termination grace period, seconds (default 30, as Kubernetes's). */
  readonly gracePeriodSeconds?: number;
  /** The node its pods run on (default: the cluster's first node, NODE_NAME); see Cluster.addNode. */
  readonly nodeName?: string;
  /** Its container, as its pod template states it (default: a placeholder, for pods nothing runs). */
  readonly container?: V1Container;
}

/** The pod template every test sandbox uses: a kwok node, one container, the hold gate if asked. */
export function kwokPodTemplate(behaviour: PodBehaviour): Record<string, unknown> {
  const annotations: Record<string, string> = {};
  if (behaviour.readyDelay !== undefined) annotations['pod-ready.stage.kwok.x-k8s.io/delay'] = behaviour.readyDelay;
  if (behaviour.stopDelay !== undefined) annotations['pod-delete.stage.kwok.x-k8s.io/delay'] = behaviour.stopDelay;
  return {
    metadata: { labels: { app: 'sandbox' }, annotations },
    spec: {
      nodeName: behaviour.nodeName ?? NODE_NAME,
      containers: [behaviour.container ?? { name: 'sandbox', image: 'sandbox-extproc/test-sandbox:kwok' }],
      ...(behaviour.gracePeriodSeconds === undefined ? {} : { terminationGracePeriodSeconds: behaviour.gracePeriodSeconds }),
      ...(behaviour.hold ? { readinessGates: [{ conditionType: HOLD_GATE }] } : {}),
    },
  };
}

/** A node kwok manages (its annotation selector), with the pod CIDR kwok takes its pods' IPs from. */
async function createKwokNode(core: CoreV1Api, name: string, podCIDR: string): Promise<void> {
  await core.createNode({
    body: {
      metadata: { name, annotations: { 'kwok.x-k8s.io/node': 'fake' }, labels: { type: 'kwok' } },
      spec: { podCIDR },
    },
  });
}
