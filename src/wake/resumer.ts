// Resumes a sandbox through the Kubernetes API: one JSON merge patch (the resume patch of the route's
// own kind, at the version that kind speaks, carrying the object's UID as a precondition), retried with
// backoff on conflicts, throttling, server errors and network errors, until the signal (the wake
// deadline) aborts. The patch is absolute and idempotent, so several replicas may each send one.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Backoff, delay } from '../routes/backoff.ts';
import { describeError } from '../observability/describe-error.ts';
import type { Route } from '../routes/route.ts';

/**
 * Sends the resume for one sandbox; resolves with the resourceVersion of the object as resumed (our
 * patch's, or that of the newer version another writer resumed), rejects with a ResumeError when it
 * cannot.
 */
export interface Resumer {
  resume(route: Route, signal: AbortSignal): Promise<string | undefined>;
}

/**
 * Why a resume failed. The message carries the API server's words for the log; answers to clients
 * never include it (it names namespaces, objects, service accounts and audit IDs).
 */
export type ResumeFailure = 'refused' | 'replaced' | 'unreachable' | 'deadline';

export class ResumeError extends Error {
  override readonly name = 'ResumeError';
  readonly failure: ResumeFailure;

  constructor(failure: ResumeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.failure = failure;
  }
}

/** Each patch the API server answered (or not), by outcome. */
export const PATCH_OUTCOMES = ['applied', 'refused', 'replaced', 'conflict', 'superseded', 'retried', 'unreachable'] as const;
export type PatchOutcome = (typeof PATCH_OUTCOMES)[number];

/** The watch-fed view of objects the resumer needs to resume them first-writer-wins. */
export interface ObservedRoutes {
  /** The first observation of `uid` newer than `resourceVersion`, or undefined once it is gone. */
  awaitNewer(uid: string, resourceVersion: string, signal: AbortSignal): Promise<Route | undefined>;
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Who wrote a resume, in the object's managedFields and the API server's audit log (requestURI). */
export const RESUME_FIELD_MANAGER = 'sandbox-extproc';

/** Attempts made when the API server cannot be reached at all: a wake then fails fast. */
const UNREACHABLE_ATTEMPTS = 3;

function httpStatus(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** A 422 about metadata.uid: the UID precondition failed, the name belongs to another object now. */
function uidMismatch(error: unknown): boolean {
  const body = (error as { body?: unknown }).body;
  const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
  return /"field":"metadata\.uid"/.test(text);
}

/**
 * With `observed` (the route table), each patch carries the resourceVersion it was decided on, as an
 * optimistic lock: the first writer wins, as the reference gateway's Get+Update does. A 409 means the
 * object changed since: the resumer waits for the watch to show the newer version, and stops there when
 * it is already resumed (another replica, or a person: "superseded"), or patches again from it.
 */
export class KubernetesResumer implements Resumer {
  readonly #api: CustomObjectsApi;
  readonly #onPatch: (outcome: PatchOutcome) => void;
  readonly #observed: ObservedRoutes | undefined;

  constructor(kubeConfig: KubeConfig, onPatch: (outcome: PatchOutcome) => void = () => undefined, observed?: ObservedRoutes) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#onPatch = onPatch;
    this.#observed = observed;
  }

  async resume(decided: Route, signal: AbortSignal): Promise<string | undefined> {
    let route = decided;
    const kind = route.kind;
    // Only Kubernetes routes carry a kind, and only they are ever woken (file routes have no wake policy).
    if (kind === undefined) throw new ResumeError('refused', `sandbox ${route.id} has no Sandbox kind to resume it through`);
    const backoff = new Backoff(50, 2000);
    const { group, version, plural } = kind;
    let unreachable = 0;
    let lastError: unknown;
    for (;;) {
      if (signal.aborted) {
        const last = lastError === undefined ? 'no attempt finished' : describeError(lastError);
        throw new ResumeError('deadline', `resume patch failed until the deadline: ${last}`, { cause: lastError });
      }
      try {
        const body = this.#locked(kind.resumePatch(route, new Date()), route);
        const patched = (await this.#api.patchNamespacedCustomObject(
          { group, version, plural, namespace: route.namespace, name: route.name, body, fieldManager: RESUME_FIELD_MANAGER },
          mergePatch,
        )) as { metadata?: { resourceVersion?: string } } | undefined;
        this.#onPatch('applied');
        return patched?.metadata?.resourceVersion;
      } catch (error) {
        const status = httpStatus(error);
        if (status === 422 && uidMismatch(error)) {
          this.#onPatch('replaced');
          throw new ResumeError('replaced', `the sandbox was replaced by another object of the same name: ${describeError(error)}`, {
            cause: error,
          });
        }
        if (status === 409 && this.#observed !== undefined) {
          this.#onPatch('conflict');
          lastError = error;
          const newer = await this.#observed.awaitNewer(route.uid, route.resourceVersion, signal);
          if (signal.aborted) continue;
          if (newer === undefined) {
            this.#onPatch('replaced');
            throw new ResumeError('replaced', 'the sandbox was deleted or recreated while it was being resumed', { cause: error });
          }
          if (!newer.pauseRequested) {
            this.#onPatch('superseded');
            return newer.resourceVersion;
          }
          route = newer;
          continue;
        }
        // Conflicts, throttling and server errors pass; other refusals (403, 404, 422) will not.
        if (status !== undefined && status !== 409 && status !== 429 && status < 500) {
          this.#onPatch('refused');
          throw new ResumeError('refused', `resume patch refused: ${describeError(error)}`, { cause: error });
        }
        if (status === undefined && ++unreachable >= UNREACHABLE_ATTEMPTS) {
          this.#onPatch('unreachable');
          throw new ResumeError('unreachable', `the Kubernetes API is unreachable: ${describeError(error)}`, { cause: error });
        }
        this.#onPatch(status === undefined ? 'unreachable' : 'retried');
        lastError = error;
        await delay(backoff.next(), signal);
      }
    }
  }

  /** Adds the optimistic lock (the resourceVersion decided on) when the watch can settle a conflict. */
  #locked(body: Record<string, unknown>, route: Route): Record<string, unknown> {
    if (this.#observed === undefined || route.resourceVersion === '') return body;
    const metadata = { ...(body['metadata'] as Record<string, unknown> | undefined), resourceVersion: route.resourceVersion };
    return { ...body, metadata };
  }
}
