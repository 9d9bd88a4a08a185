// The calls a test makes of one namespaced custom resource, as an admin: create, get, merge-patch,
// delete, and wait (on watch events) for an object a predicate accepts. Each sandbox family's test
// hands (openkruise.ts, agent-sandbox.ts) hold one per kind they use.
import { CustomObjectsApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { waitForObject } from './controlplane.ts';

export interface ResourceType {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  readonly kind: string;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

export class CustomResource<T> {
  readonly type: ResourceType;
  readonly #admin: KubeConfig;
  readonly #api: CustomObjectsApi;

  constructor(admin: KubeConfig, type: ResourceType) {
    this.type = type;
    this.#admin = admin;
    this.#api = admin.makeApiClient(CustomObjectsApi);
  }

  /** The collection's path in a namespace (for watches). */
  path(namespace: string): string {
    const { group, version, plural } = this.type;
    return `/apis/${group}/${version}/namespaces/${namespace}/${plural}`;
  }

  async create(namespace: string, metadata: Record<string, unknown>, spec: Record<string, unknown>): Promise<T> {
    const { group, version, plural, kind } = this.type;
    return (await this.#api.createNamespacedCustomObject({
      group,
      version,
      plural,
      namespace,
      body: { apiVersion: `${group}/${version}`, kind, metadata, spec },
    })) as T;
  }

  async get(namespace: string, name: string): Promise<T> {
    const { group, version, plural } = this.type;
    return (await this.#api.getNamespacedCustomObject({ group, version, plural, namespace, name })) as T;
  }

  async patch(namespace: string, name: string, body: Record<string, unknown>): Promise<T> {
    const { group, version, plural } = this.type;
    return (await this.#api.patchNamespacedCustomObject({ group, version, plural, namespace, name, body }, mergePatch)) as T;
  }

  async delete(namespace: string, name: string): Promise<void> {
    const { group, version, plural } = this.type;
    await this.#api.deleteNamespacedCustomObject({ group, version, plural, namespace, name });
  }

  /** Resolves with the object once (already, or on a later watch event) the predicate accepts it. */
  waitFor(namespace: string, name: string, predicate: (o: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    return waitForObject(
      this.#admin,
      this.path(namespace),
      { fieldSelector: `metadata.name=${name}` },
      (o) => predicate(o as T),
      timeoutMs,
      `${this.type.kind} ${namespace}/${name} ${what}`,
    ) as Promise<T>;
  }

  /** Resolves with the first object of the namespace (already there, or to come) the predicate accepts. */
  waitForAny(namespace: string, predicate: (o: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    return waitForObject(
      this.#admin,
      this.path(namespace),
      {},
      (o) => predicate(o as T),
      timeoutMs,
      `${what} in ${namespace}`,
    ) as Promise<T>;
  }
}
