// A watch that keeps going, for test code that plays a part of the cluster (a stand-in controller, the
// container runtime of test/support/pod-runtime.ts): it resumes from the last version it saw after any
// end (the API server ends watches now and then, and answers 429 while a new CRD's watch cache
// initialises), with backoff, and starts over from the beginning after 410 (expired). With `list`, a
// start from the beginning lists first and delivers each listed object as ADDED; without it, the
// watch's own initial ADDED events do that.
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import { Backoff, delay } from '../../src/routes/backoff.ts';

export interface KeptWatch {
  readonly path: string;
  readonly query?: Record<string, string>;
  readonly list?: () => Promise<{ items: unknown[]; resourceVersion: string | undefined }>;
  readonly onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', object: unknown) => void;
  /** A start failed (the list, or the watch request itself). */
  readonly onError?: (error: unknown) => void;
}

/** Starts the watch; resolves once the first watch request is made. Stops when the signal aborts. */
export async function keepWatching(config: KubeConfig, watch: KeptWatch, signal: AbortSignal): Promise<void> {
  const backoff = new Backoff(50, 1000);
  let resourceVersion: string | undefined;
  let current: AbortController | undefined;
  signal.addEventListener('abort', () => current?.abort(), { once: true });
  const run = async (): Promise<void> => {
    if (signal.aborted) return;
    if (resourceVersion === undefined && watch.list !== undefined) {
      const listed = await watch.list();
      for (const item of listed.items) watch.onEvent('ADDED', item);
      resourceVersion = listed.resourceVersion;
    }
    current = await new Watch(config).watch(
      watch.path,
      { ...watch.query, ...(resourceVersion === undefined ? {} : { resourceVersion, allowWatchBookmarks: 'true' }) },
      (type, object: { code?: number; metadata?: { resourceVersion?: string } }) => {
        backoff.reset();
        if (type === 'ERROR') {
          if (object.code === 410) resourceVersion = undefined;
          return;
        }
        resourceVersion = object.metadata?.resourceVersion ?? resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') watch.onEvent(type, object);
      },
      () => void delay(backoff.next(), signal).then(() => run().catch((error: unknown) => watch.onError?.(error))),
    );
    if (signal.aborted) current.abort();
  };
  await run();
}
