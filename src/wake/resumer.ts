// Resumes a sandbox through the Kubernetes API: one JSON merge patch (the kind's resume patch),
// retried with backoff on conflicts, throttling, server errors and network errors, until the signal
// (the wake deadline) aborts. Merge patches are idempotent, so several replicas may send one each.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Backoff, delay } from '../routes/backoff.ts';
import { describeError } from '../observability/describe-error.ts';
import type { Route } from '../routes/route.ts';
import type { SandboxKind } from '../sandbox-kinds/kind.ts';

/** Sends the resume for one sandbox; rejects with a ResumeError when it cannot. */
export interface Resumer {
  resume(route: Route, signal: AbortSignal): Promise<void>;
}

export class ResumeError extends Error {
  override readonly name = 'ResumeError';
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Attempts made when the API server cannot be reached at all: a wake then fails fast. */
const UNREACHABLE_ATTEMPTS = 3;

function httpStatus(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export class KubernetesResumer implements Resumer {
  readonly #api: CustomObjectsApi;
  readonly #kind: SandboxKind;

  constructor(kubeConfig: KubeConfig, kind: SandboxKind) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#kind = kind;
  }

  async resume(route: Route, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff(50, 2000);
    const { group, version, plural } = this.#kind;
    let unreachable = 0;
    for (;;) {
      try {
        const body = this.#kind.resumePatch(route, new Date());
        await this.#api.patchNamespacedCustomObject(
          { group, version, plural, namespace: route.namespace, name: route.name, body },
          mergePatch,
        );
        return;
      } catch (error) {
        const status = httpStatus(error);
        // Conflicts, throttling and server errors pass; other refusals (403, 404, 422) will not.
        if (status !== undefined && status !== 409 && status !== 429 && status < 500) {
          throw new ResumeError(`resume patch refused: ${describeError(error)}`, { cause: error });
        }
        if (status === undefined && ++unreachable >= UNREACHABLE_ATTEMPTS) {
          throw new ResumeError(`the Kubernetes API is unreachable: ${describeError(error)}`, { cause: error });
        }
        if (signal.aborted) throw new ResumeError(`resume patch failed until the deadline: ${describeError(error)}`, { cause: error });
        await delay(backoff.next(), signal);
      }
    }
  }
}
