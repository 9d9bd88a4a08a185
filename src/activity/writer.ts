// Sends a kind's activity patch: one JSON merge patch, tied to the object's UID and locked on the
// resourceVersion it was decided on (a write queued before the sandbox was recycled or paused must not
// re-arm it), no retries (the next activity writes again; a missed push only means the sandbox may
// pause a little early).
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { ActivityWriter } from './tracker.ts';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Who wrote an activity record, told apart from resumes in managedFields and the audit log. */
export const ACTIVITY_FIELD_MANAGER = 'sandbox-extproc-activity';

/** Writes through each route's own kind (only Kubernetes routes, which carry one, have activity timers). */
export function kubernetesActivityWriter(kubeConfig: KubeConfig): ActivityWriter {
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  return async (route, now) => {
    const kind = route.kind;
    if (kind === undefined) throw new Error(`sandbox ${route.id} has no Sandbox kind`);
    const { group, version, plural } = kind;
    const patch = kind.activityPatch(route, now);
    const metadata = { ...(patch['metadata'] as Record<string, unknown>), resourceVersion: route.resourceVersion };
    try {
      await api.patchNamespacedCustomObject(
        {
          group,
          version,
          plural,
          namespace: route.namespace,
          name: route.name,
          body: { ...patch, metadata },
          fieldManager: ACTIVITY_FIELD_MANAGER,
        },
        mergePatch,
      );
      return 'applied';
    } catch (error) {
      if ((error as { code?: unknown }).code === 409) return 'superseded';
      throw error;
    }
  };
}
