// A real Kubernetes control plane on loopback: etcd (data on tmpfs) and kube-apiserver, built by
// scripts/provision.sh. Waits follow the processes' own log lines and Kubernetes watches, each with a
// deadline. The Sandbox CRDs are installed (OpenKruise's, and agent-sandbox's by default); kubeconfigs are
// written for an admin and for the service's own ServiceAccount, whose rights come from
// charts/sandbox-extproc/files/rbac-rules.yaml (the rules of the families it runs).
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  loadYaml,
  RbacAuthorizationV1Api,
  Watch,
  type V1CustomResourceDefinition,
  type V1PolicyRule,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { makeCerts, type CertPaths } from './certs.ts';
import { familyCrds } from './crds.ts';
import { freePort } from './ports.ts';
import { TestProcess } from './process.ts';
import { REPO_ROOT, toolPath } from './tools.ts';

export const RBAC_RULES_FILE = `${REPO_ROOT}charts/sandbox-extproc/files/rbac-rules.yaml`;

/** The rules rbac-rules.yaml grants each Sandbox family. */
export function rbacRules(kinds: readonly string[]): V1PolicyRule[] {
  const all = parseYaml(readFileSync(RBAC_RULES_FILE, 'utf8')) as Record<string, V1PolicyRule[]>;
  return kinds.flatMap((kind) => {
    const rules = all[kind];
    if (rules === undefined) throw new Error(`rbac-rules.yaml has no rules for ${kind}`);
    return rules;
  });
}
const AUDIT_POLICY = `${REPO_ROOT}test/fixtures/audit-policy.yaml`;

export interface AuditEvent {
  verb: string;
  stage?: string;
  /** The request's path and query (fieldManager tells resumes from activity records). */
  requestURI?: string;
  user: { username: string };
  objectRef?: { resource?: string; apiGroup?: string; apiVersion?: string; namespace?: string; name?: string; subresource?: string };
  responseStatus?: { code?: number };
}

export class ControlPlane {
  readonly dir: string;
  readonly certs: CertPaths;
  readonly url: string;
  readonly adminKubeconfig: string;
  readonly admin: KubeConfig;
  etcd: TestProcess;
  apiserver: TestProcess;
  readonly #apiserverArgs: string[];
  /** Every audit event, kept apart from the process's bounded line buffer, across restarts. */
  readonly #audit: AuditEvent[] = [];
  readonly #auditWaiters = new Set<(event: AuditEvent) => void>();

  /** etcd's client URL (its JSON gateway serves /v3/kv/...). */
  readonly etcdUrl: string;

  private constructor(dir: string, certs: CertPaths, url: string, etcd: TestProcess, apiserver: TestProcess, apiserverArgs: string[]) {
    this.etcdUrl = (/--etcd-servers=(\S+)/.exec(apiserverArgs.join(' ')) as RegExpExecArray)[1] as string;
    this.dir = dir;
    this.certs = certs;
    this.url = url;
    this.etcd = etcd;
    this.apiserver = apiserver;
    this.#apiserverArgs = apiserverArgs;
    this.adminKubeconfig = join(dir, 'admin.kubeconfig');
    writeFileSync(this.adminKubeconfig, kubeconfigYaml(url, certs.caCert, { cert: certs.adminCert, key: certs.adminKey }));
    this.admin = new KubeConfig();
    this.admin.loadFromFile(this.adminKubeconfig);
    this.#collectAudit(apiserver);
  }

  #collectAudit(apiserver: TestProcess): void {
    const take = (line: string) => {
      if (!line.startsWith('{') || !line.includes('"audit.k8s.io/v1"')) return;
      const event = JSON.parse(line) as AuditEvent;
      this.#audit.push(event);
      for (const waiter of this.#auditWaiters) waiter(event);
    };
    for (const line of apiserver.lines) take(line);
    apiserver.onLine(take);
  }

  /**
   * Starts etcd and kube-apiserver, with the audit log tests count patches from. `auditPolicy` names
   * another policy file (the scale bench records only resumes: every write of 100k objects would fill
   * this process with lines), or false for none. `crds` are the CRDs to install (default: both
   * families' own, test/support/crds.ts). `bindAddress`: where
   * kube-apiserver listens, loopback by default (containers reach a Docker network's gateway address).
   */
  static async start(
    options: { auditPolicy?: string | false; crds?: readonly (string | object)[]; bindAddress?: string } = {},
  ): Promise<ControlPlane> {
    const auditPolicy = options.auditPolicy ?? AUDIT_POLICY;
    // Loopback, or an address containers reach (a Docker network's gateway on this host).
    const address = options.bindAddress ?? '127.0.0.1';
    const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
    const dir = mkdtempSync(join(base, 'sbx-cp-'));
    const certs = makeCerts(dir, [address]);
    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcd = new TestProcess('etcd', toolPath('SBX_ETCD'), [
      '--data-dir',
      join(dir, 'etcd'),
      '--listen-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${etcdClient}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster',
      `default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync',
    ]);
    await etcd.waitForLine(/serving client traffic insecurely|ready to serve client requests/, 30_000);
    const args = [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${certs.serverCert}`,
      `--tls-private-key-file=${certs.serverKey}`,
      `--client-ca-file=${certs.caCert}`,
      `--secure-port=${apiPort}`,
      `--bind-address=${address}`,
      `--advertise-address=${address}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=RBAC',
      '--disable-admission-plugins=ServiceAccount',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${certs.saPub}`,
      `--service-account-signing-key-file=${certs.saKey}`,
      '--enable-priority-and-fairness=false',
      ...(auditPolicy === false
        ? []
        : [`--audit-policy-file=${auditPolicy}`, '--audit-log-path=-', '--audit-log-format=json', '--audit-log-mode=blocking']),
    ];
    const apiserver = ControlPlane.#spawnApiserver(args);
    await ControlPlane.#serving(apiserver);
    const plane = new ControlPlane(dir, certs, `https://${address}:${apiPort}`, etcd, apiserver, args);
    for (const crd of options.crds ?? familyCrds()) await plane.installCrd(crd);
    return plane;
  }

  static #spawnApiserver(args: string[]): TestProcess {
    return new TestProcess('kube-apiserver', toolPath('SBX_KUBE_APISERVER'), args);
  }

  /** Stops kube-apiserver (etcd keeps the data); resolves once it has exited. */
  async stopApiserver(): Promise<void> {
    await this.apiserver.stop(10_000);
  }

  /** Starts kube-apiserver again on the same port and data. */
  async startApiserver(): Promise<void> {
    this.apiserver = ControlPlane.#spawnApiserver(this.#apiserverArgs);
    this.#collectAudit(this.apiserver);
    await ControlPlane.#serving(this.apiserver);
  }

  /**
   * Until the CRD informer has synced, the API server answers custom resource paths with 503 ("made
   * before all known HTTP paths have been installed"): wait for its own line saying it has.
   */
  static async #serving(apiserver: TestProcess): Promise<void> {
    await apiserver.waitForLine(/Serving securely on/, 60_000);
    await apiserver.waitForLine(/initial CRD sync complete/, 30_000);
  }

  /**
   * Deletes a key straight from etcd, behind the API server's back (only while it is stopped): the way
   * to make a change no watch can deliver, so only a relist can find it.
   */
  async etcdDelete(key: string): Promise<number> {
    const res = await fetch(`${this.etcdUrl}/v3/kv/deleterange`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from(key).toString('base64') }),
    });
    const body = (await res.json()) as { deleted?: string };
    return Number(body.deleted ?? 0);
  }

  /** Compacts etcd's history up to its current revision; watches from older versions then get 410. */
  async etcdCompact(): Promise<void> {
    const status = (await (
      await fetch(`${this.etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) })
    ).json()) as {
      header: { revision: string };
    };
    await fetch(`${this.etcdUrl}/v3/kv/compaction`, {
      method: 'POST',
      body: JSON.stringify({ revision: status.header.revision, physical: true }),
    });
  }

  /** Audit events the API server wrote for sandboxes, so far. */
  auditEvents(filter: (event: AuditEvent) => boolean = () => true): AuditEvent[] {
    return this.#audit.filter(filter);
  }

  /** Resolves with the first audit event (already written or to come) matching the predicate. */
  waitForAudit(match: (event: AuditEvent) => boolean, timeoutMs: number, what: string): Promise<AuditEvent> {
    const seen = this.#audit.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = (event: AuditEvent) => {
        if (!match(event)) return;
        clearTimeout(timer);
        this.#auditWaiters.delete(waiter);
        resolve(event);
      };
      const timer = setTimeout(() => {
        this.#auditWaiters.delete(waiter);
        reject(new Error(`no audit event for ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#auditWaiters.add(waiter);
    });
  }

  /**
   * An audit barrier: an admin list of sandboxes that names a fresh label, and the wait for its audit
   * event. The API server writes a request's event before answering it (blocking audit mode), so once
   * the barrier's event is in, every request that was answered before the barrier was sent is too: a
   * test can then count what did not happen (no patch, no GET) without waiting on a clock.
   */
  async auditBarrier(): Promise<void> {
    const mark = `audit-barrier-${randomUUID()}`;
    const seen = this.waitForAudit((e) => e.requestURI?.includes(mark) === true, 30_000, `the audit barrier ${mark}`);
    await this.admin.makeApiClient(CustomObjectsApi).listClusterCustomObject({
      group: 'agents.kruise.io',
      version: 'v1alpha1',
      plural: 'sandboxes',
      labelSelector: `${mark}=x`,
    });
    await seen;
  }

  /**
   * Creates a namespace, a ServiceAccount and its binding to the rules rbac-rules.yaml gives the named
   * Sandbox families (a ClusterRole, bound cluster-wide or in the given namespaces), and returns a
   * kubeconfig path that authenticates as that ServiceAccount with a real TokenRequest token.
   */
  async serviceIdentity(
    name: string,
    watchNamespaces: readonly string[] = [],
    kinds: readonly string[] = ['openkruise'],
    options: { readonly tokenReview?: boolean } = {},
  ): Promise<string> {
    const core = this.admin.makeApiClient(CoreV1Api);
    const rbac = this.admin.makeApiClient(RbacAuthorizationV1Api);
    const namespace = 'sandbox-extproc-system';
    await this.ensureNamespace(namespace);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
    await rbac.createClusterRole({ body: { metadata: { name }, rules: rbacRules(kinds) } });
    const subjects = [{ kind: 'ServiceAccount', name, namespace }];
    const roleRef = { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name };
    if (watchNamespaces.length === 0) {
      await rbac.createClusterRoleBinding({ body: { metadata: { name }, subjects, roleRef } });
    } else {
      for (const ns of watchNamespaces) {
        await this.ensureNamespace(ns);
        await rbac.createNamespacedRoleBinding({ namespace: ns, body: { metadata: { name }, subjects, roleRef } });
      }
    }
    if (options.tokenReview === true) {
      // agent-sandbox's tokenreview authorization: the chart's cluster-wide rule, only for that mode.
      const reviewer = `${name}-tokenreview`;
      await rbac.createClusterRole({ body: { metadata: { name: reviewer }, rules: rbacRules(['agent-sandbox-tokenreview']) } });
      await rbac.createClusterRoleBinding({
        body: { metadata: { name: reviewer }, subjects, roleRef: { ...roleRef, name: reviewer } },
      });
    }
    if (kinds.includes('agent-sandbox')) await this.#leaseRights(namespace, name);
    return this.kubeconfigFor(namespace, name);
  }

  /**
   * The idle suspender's Lease rights, as the chart's templates/rbac.yaml grants them: create a Lease in
   * the service's namespace, read, watch and renew only the default one by name. Shared by every identity of
   * the same namespace (replicas campaign for one Lease).
   */
  async #leaseRights(namespace: string, serviceAccount: string): Promise<void> {
    const rbac = this.admin.makeApiClient(RbacAuthorizationV1Api);
    const role = 'sandbox-extproc-idle-lease';
    try {
      await rbac.createNamespacedRole({
        namespace,
        body: {
          metadata: { name: role },
          rules: [
            { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
            {
              apiGroups: ['coordination.k8s.io'],
              resources: ['leases'],
              resourceNames: ['sandbox-extproc-idle-suspender'],
              verbs: ['get', 'watch', 'update'],
            },
          ],
        },
      });
    } catch (error) {
      if ((error as { code?: number }).code !== 409) throw error;
    }
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: `${serviceAccount}-idle-lease` },
        subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role },
      },
    });
  }

  /** Writes a kubeconfig authenticating as an existing ServiceAccount, with a TokenRequest token. */
  async kubeconfigFor(namespace: string, serviceAccount: string): Promise<string> {
    const core = this.admin.makeApiClient(CoreV1Api);
    const token = await core.createNamespacedServiceAccountToken({
      name: serviceAccount,
      namespace,
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 86_400, audiences: [] } },
    });
    const path = join(this.dir, `${namespace}-${serviceAccount}.kubeconfig`);
    writeFileSync(path, kubeconfigYaml(this.url, this.certs.caCert, { token: token.status?.token ?? '' }));
    return path;
  }

  async ensureNamespace(name: string): Promise<void> {
    const core = this.admin.makeApiClient(CoreV1Api);
    try {
      await core.createNamespace({ body: { metadata: { name } } });
    } catch (error) {
      if ((error as { code?: number }).code !== 409) throw error;
    }
  }

  async stop(): Promise<void> {
    await this.apiserver.stop(10_000);
    await this.etcd.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Installs a CRD (a fixture file, or the object) and waits (on a watch) until the API server has established it. */
  async installCrd(source: string | object): Promise<void> {
    // Through client-node's own YAML loader, which maps the schema's x-kubernetes-* keys to its model: a
    // plain parse would have the typed client drop them on the way out.
    const crd = loadYaml<V1CustomResourceDefinition>(typeof source === 'string' ? readFileSync(source, 'utf8') : JSON.stringify(source));
    const api = this.admin.makeApiClient(ApiextensionsV1Api);
    const name = crd.metadata?.name as string;
    const established = waitForObject(
      this.admin,
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
      { fieldSelector: `metadata.name=${name}` },
      (o) => (o as V1CustomResourceDefinition).status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false,
      30_000,
    );
    await api.createCustomResourceDefinition({ body: crd });
    await established;
  }
}

/**
 * Resolves with the first object on a watch of `path` that satisfies the predicate (the initial
 * ADDED events included); rejects at the deadline. A watch the API server ends early is started again.
 */
export function waitForObject(
  config: KubeConfig,
  path: string,
  query: Record<string, string>,
  predicate: (object: unknown) => boolean,
  timeoutMs: number,
  what = `an object at ${path}`,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let controller: AbortController | undefined;
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      controller?.abort();
      fn();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`${what}: not seen within ${timeoutMs} ms`))), timeoutMs);
    const start = (): void => {
      new Watch(config)
        .watch(
          path,
          query,
          (type, object) => {
            if ((type === 'ADDED' || type === 'MODIFIED') && predicate(object)) finish(() => resolve(object));
          },
          () => {
            if (!done) start();
          },
        )
        .then(
          (c) => {
            controller = c;
            if (done) c.abort();
          },
          (error: unknown) => finish(() => reject(error instanceof Error ? error : new Error(String(error)))),
        );
    };
    start();
  });
}

function kubeconfigYaml(server: string, caFile: string, user: { cert?: string; key?: string; token?: string }): string {
  const userFields = user.token !== undefined ? { token: user.token } : { 'client-certificate': user.cert, 'client-key': user.key };
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: 'user', user: userFields }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'user' } }],
    'current-context': 'test',
  });
}

/** The service's own identity, as ControlPlane.serviceIdentity('sandbox-extproc') makes it. */
export const SERVICE_USER = 'system:serviceaccount:sandbox-extproc-system:sandbox-extproc';

/** Whether an audited patch was an activity record (its fieldManager), not a resume. */
export const isActivityRecord = (event: AuditEvent): boolean => (event.requestURI ?? '').includes('fieldManager=sandbox-extproc-activity');
